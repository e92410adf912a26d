"""The session's passwords never show up where they must not.

The argv watcher and the scan of logs and configuration files run over the whole package: the
``workdir`` fixture checks them at its teardown, after the last test, whatever the order. These
tests prove that the checks catch a leak, and check the rendered CIB.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.services.conftest import files_holding, secrets_leaked

pytestmark = pytest.mark.services


def test_the_argv_watcher_catches_a_password_on_a_command_line(stack):
    secret = stack.secrets[0]
    before = len(stack.watcher.hits)
    leaker = subprocess.Popen(["/bin/sh", "-c", "sleep 30", "sh", secret], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while len(stack.watcher.hits) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(stack.watcher.hits) > before, "a password in argv went unseen"
    finally:
        leaker.kill()
        leaker.wait()
        del stack.watcher.hits[before:]
    assert stack.watcher.is_alive()


def test_the_file_scan_catches_a_password_in_a_log(stack, tmp_path):
    (tmp_path / "clean.log").write_text("nothing here\n")
    (tmp_path / "service.log").write_text(f"connecting with {stack.secrets[-1]}\n")
    assert files_holding(str(tmp_path), stack.secrets) == [str(tmp_path / "service.log")]
    assert f"file: {tmp_path / 'service.log'}" in secrets_leaked(stack, str(tmp_path))


def test_passwords_never_in_the_rendered_cib(stack, workdir):
    site = os.path.join(workdir, "site.toml")
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "site.toml"),
              encoding="utf-8") as handle:
        text = handle.read()
    text += "".join(f'\n[primitive.{name}.params]\ncredentials = "{stack.credentials}"\n'
                    for name in ("keystone", "glance-api", "nova-api"))
    with open(site, "w", encoding="utf-8") as handle:
        handle.write(text)
    done = subprocess.run(["/usr/local/bin/crmtool", "render", site], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(stack.credentials) == 3
    for secret in stack.secrets:
        assert secret not in done.stdout and secret not in done.stderr
