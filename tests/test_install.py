"""`make install` / `make uninstall` into a staging directory, with another provider."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from agents import registry
from harness.ocfrun import REPO


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


def test_modes_do_not_follow_the_callers_umask():
    """Pacemaker asks for meta-data as nobody: an install under umask 077 must still serve it."""
    base = tempfile.mkdtemp(prefix="install-umask-")
    try:
        os.chmod(base, 0o755)  # noqa: S103 (nobody must reach the installed agent)
        dirs = {"OCF_ROOT": f"{base}/ocf", "LIBDIR": f"{base}/lib", "BINDIR": f"{base}/bin",
                "DATADIR": f"{base}/share"}
        subprocess.run(["bash", "-c", 'umask 077 && exec "$@"', "-", "make", "-s", "-C", REPO, "install",
                        "PROVIDER=acme", *(f"{k}={v}" for k, v in dirs.items())],
                       check=True, capture_output=True)
        for directory, subdirs, files in os.walk(base):
            for name in subdirs:
                assert os.stat(os.path.join(directory, name)).st_mode & 0o777 == 0o755, name
            for name in files:
                assert os.stat(os.path.join(directory, name)).st_mode & 0o777 in (0o644, 0o755), name
        agent = f"{base}/ocf/resource.d/acme/{registry.names()[0]}"
        done = subprocess.run(["runuser", "-u", "nobody", "--", "env", "-i", agent, "meta-data"],
                              capture_output=True, text=True, check=False, cwd="/")
        assert done.returncode == 0, done.stderr
        assert "<resource-agent" in done.stdout
    finally:
        shutil.rmtree(base)


def test_uninstall_removes_nothing_outside_what_it_installs(tmp_path):
    stage = tmp_path / "stage"
    make("install", str(stage), "openstack")
    etc = stage / "etc"
    etc.mkdir()
    victims = [etc / name for name in ("absolute", "dotdot", "through-link")]
    for victim in victims:
        victim.write_text("not ours")
    other_tool = stage / "usr/local/bin/other-tool"
    other_tool.write_text("not ours either")
    lib = stage / "usr/local/lib/openstack-ha"
    (lib / "agents-link").symlink_to(etc)
    with open(lib / "installed-files", "a", encoding="utf-8") as manifest:
        manifest.write("\n".join([
            "/etc/absolute",  # outside every place the installer writes to
            "/usr/local/lib/openstack-ha/../../../../etc/dotdot",
            "/usr/local/lib/openstack-ha/agents-link/through-link",
            "/usr/local/bin/other-tool",
            "/etc/",
        ]) + "\n")
    done = subprocess.run(["make", "-s", "-C", REPO, "uninstall", f"DESTDIR={stage}"], capture_output=True,
                          text=True, check=True)
    assert "not removing" in done.stderr
    for victim in victims:
        assert victim.read_text() == "not ours"
    assert other_tool.exists()
    assert not (stage / "usr/lib/ocf/resource.d/openstack").exists()
    assert not (lib / "agents").exists()
