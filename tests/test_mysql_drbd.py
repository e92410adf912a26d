"""The ``mysql`` agent on a DRBD device (the DRBD double): a Secondary's device is refused."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile

import pytest

from harness.drbd_double.fixture import replicas
from harness.mariadb import MariaDB, kill_all_on, mariadbd_pids_on
from harness.ocfrun import agent_env, run_agent

AGENT = "/usr/lib/ocf/resource.d/openstack/mysql"
PORT = 33075

pytestmark = [pytest.mark.services,
              pytest.mark.skipif(os.geteuid() != 0, reason="loop devices and mariadbd need root")]


def checksums(directory: str) -> dict[str, str]:
    sums = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                sums[os.path.relpath(path, directory)] = hashlib.sha256(handle.read()).hexdigest()
    return sums


def mount(device: str, mountpoint: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", "-t", "ext4", device, mountpoint], capture_output=True, text=True,
                          check=False)


def test_start_on_a_secondary_device_is_refused_and_touches_nothing():
    assert os.access(AGENT, os.X_OK), f"{AGENT} is not installed: run `make install` first"
    workdir = tempfile.mkdtemp(prefix="ocf-mysql-drbd-")
    os.chmod(workdir, 0o755)  # noqa: S103 - the server user must reach it
    mountpoint = os.path.join(workdir, "mnt")
    os.makedirs(mountpoint)
    db = MariaDB(mountpoint, os.path.join(workdir, "run"), PORT)
    try:
        with replicas(["alpha", "beta"], size_mb=160, mkfs=True, base_dir=workdir) as drbd:
            try:
                drbd.up_all()
                drbd.run("alpha", "drbdadm", "primary", drbd.resource)
                assert mount(drbd.device("alpha"), mountpoint).returncode == 0
                db.install()
                before = checksums(db.datadir)
                subprocess.run(["umount", mountpoint], check=True)
                drbd.run("alpha", "drbdadm", "secondary", drbd.resource)

                def start(node: str):
                    env = agent_env(db.agent_params(device=drbd.device(node)),
                                    HA_RSCTMP=os.path.join(workdir, f"rsctmp-{node}"))
                    return run_agent([AGENT], "start", env, timeout=150), env

                for node in ("beta", "alpha"):  # both Secondary now
                    assert mount(drbd.device(node), mountpoint).returncode != 0, "a Secondary was mounted"
                    result, _env = start(node)
                    assert result.rc == 1, result.stderr
                    reason = result.exit_reasons[0]
                    assert f"not on {drbd.device(node)}" in reason and "mounted" in reason, reason
                    assert mariadbd_pids_on(db.datadir) == []
                    assert os.listdir(mountpoint) == []

                drbd.run("alpha", "drbdadm", "primary", drbd.resource)
                assert mount(drbd.device("alpha"), mountpoint).returncode == 0
                assert checksums(db.datadir) == before  # the refused starts touched no data
                result, env = start("alpha")
                assert result.rc == 0, result.stderr
                assert run_agent([AGENT], "monitor", {**env, "OCF_CHECK_LEVEL": "10"}).rc == 0
                assert run_agent([AGENT], "stop", env).rc == 0
            finally:
                db.stop()
                kill_all_on(db.datadir)
                subprocess.run(["umount", mountpoint], capture_output=True, check=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
