"""Runs last: the session's passwords never showed up where they must not."""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.services


def test_passwords_never_in_argv(stack):
    watcher = stack.watcher
    assert watcher.is_alive() and watcher.scans > 10
    assert watcher.hits == []


def test_passwords_never_in_our_logs(stack, workdir):
    checked = 0
    for root, _dirs, files in os.walk(workdir):
        for name in files:
            if not name.endswith((".log", ".conf")):
                continue
            with open(os.path.join(root, name), "rb") as handle:
                data = handle.read()
            checked += 1
            for secret in stack.secrets:
                assert secret.encode() not in data, f"{secret[:4]}... found in {name}"
    assert checked >= 3


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
