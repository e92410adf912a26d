"""`make install` / `make uninstall` into a staging directory, with another provider."""

from __future__ import annotations

import os
import subprocess

from agents import registry
from tests.ocfrun import REPO


def make(target: str, destdir: str, provider: str) -> None:
    subprocess.run(["make", "-s", "-C", REPO, target, f"DESTDIR={destdir}", f"PROVIDER={provider}"],
                   check=True, capture_output=True)


def tree(root: str) -> set[str]:
    found = set()
    for directory, dirs, files in os.walk(root):
        found.update(os.path.relpath(os.path.join(directory, n), root) for n in [*dirs, *files])
    return found


def test_install_puts_agents_under_the_provider_and_uninstall_removes_exactly_that(tmp_path):
    stage = tmp_path / "stage"
    (stage / "usr/share").mkdir(parents=True)
    (stage / "usr/share/unrelated.txt").write_text("not ours")
    before = tree(str(stage))
    make("install", str(stage), "acme")
    agent_dir = stage / "usr/lib/ocf/resource.d/acme"
    assert sorted(os.listdir(agent_dir)) == registry.names()
    for name in registry.names():
        assert os.stat(agent_dir / name).st_mode & 0o777 == 0o755
    assert (stage / "usr/local/bin/crmtool").exists()
    assert (stage / "usr/share/openstack-ha/cib-templates").is_dir()
    profile = (stage / "usr/share/openstack-ha/cib-templates/openstack-3ctl.toml").read_text()
    assert "ocf:acme:drbd" in profile and "ocf:openstack:" not in profile
    launcher = (agent_dir / registry.names()[0]).read_text()
    assert "/usr/local/lib/openstack-ha" in launcher and str(stage) not in launcher
    make("uninstall", str(stage), "acme")
    assert tree(str(stage)) == before


def test_reinstall_is_idempotent(tmp_path):
    stage = str(tmp_path)
    make("install", stage, "openstack")
    first = tree(stage)
    make("install", stage, "openstack")
    assert tree(stage) == first
    make("uninstall", stage, "openstack")
    assert tree(stage) == set()
