"""LINBIT's own agent (ocf:linbit:drbd, unchanged) against the DRBD double.

If the double's command lines, output formats or exit codes drifted from DRBD 9,
LINBIT's agent would misjudge the state (it parses ``events2 --now``, keys off
``drbdadm`` exit codes and waits for the device node to appear).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from harness.drbd_double.fixture import BIN, replicas
from harness.drbd_double.pacemaker import make_cib, node_attribute

LINBIT = "/usr/lib/ocf/resource.d/linbit/drbd"
META = {"clone_node_max": "1", "master_node_max": "1", "master_max": "1", "clone_max": "3", "notify": "true"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices, mknod, namespaces)")


@pytest.fixture
def three():
    with replicas() as drbd:
        for peer in ("beta", "gamma"):  # alpha's peers are up, so alpha has quorum
            drbd.run(peer, "drbdadm", "up", drbd.resource)
        drbd.cib = make_cib(os.path.join(drbd.workdir, "cib.xml"), drbd.nodes)
        yield drbd


def as_alpha(drbd, argv, extra_env=None):
    """Run as node alpha: own UTS name (LINBIT uses uname -n) and a /proc/drbd (LINBIT tests it)."""
    env = drbd.env("alpha")
    env.pop("DRBD_DOUBLE_NODE")
    env.update(CIB_file=drbd.cib, TMPDIR=drbd.workdir, **(extra_env or {}))
    return subprocess.run(["unshare", "--mount", "--uts", "--propagation", "private", "--",
                           os.path.join(BIN, "with-proc-drbd"), "alpha", *argv],
                          env=env, capture_output=True, text=True, timeout=240, check=False)


def linbit(drbd, action, extra_env=None):
    env = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "drbd_r0", "OCF_RESKEY_drbd_resource": "r0",
           "OCF_RESKEY_drbdconf": drbd.conf, "OCF_RESKEY_CRM_meta_interval": "10000"}
    env.update({f"OCF_RESKEY_CRM_meta_{k}": v for k, v in META.items()})
    env.update(extra_env or {})
    return as_alpha(drbd, [LINBIT, action], env).returncode


def test_linbit_agent_passes_ocf_tester_against_the_double(three):
    argv = ["ocf-tester", "-v", "-n", "drbd_r0", "-o", "drbd_resource=r0", "-o", f"drbdconf={three.conf}"]
    for key, value in META.items():
        argv += ["-o", f"CRM_meta_{key}={value}"]
    result = as_alpha(three, [*argv, LINBIT])
    out = result.stdout + result.stderr
    for step in ("Testing: start", "Testing: promote", "Testing: demote", "Promoting resource",
                 "Testing: promotion of promoted resource", "Demoting resource", "Testing: stop",
                 "Testing: starting a started resource", "Testing: stopping a stopped resource"):
        assert step in out
    # The single failure is LINBIT's meta-data (validate-all has no timeout), see the next test.
    assert "failed 1 tests" in out, out[-3000:]
    assert "does not conform to ra-api-1.dtd" in out
    assert "Your agent" not in out.replace("Your agent produces meta-data which does not conform", "")


def test_linbit_metadata_fails_the_dtd_on_its_own():
    meta = subprocess.run([LINBIT, "meta-data"], capture_output=True, text=True, check=True).stdout
    lint = subprocess.run(["xmllint", "--noout", "--valid", "-"], input=meta, capture_output=True, text=True,
                          cwd="/usr/share/resource-agents", check=False)
    assert lint.returncode != 0
    assert 'name="validate-all"' in lint.stderr


def test_linbit_agent_promotes_and_the_primary_device_is_writable(three):
    assert linbit(three, "start") == 0
    assert linbit(three, "monitor") == 0
    assert node_attribute(three.cib, "alpha", "master-drbd_r0") == "10000"
    assert linbit(three, "promote") == 0
    assert linbit(three, "monitor") == 8
    assert three.status("beta")["connections"][0]["peer-role"] == "Primary"
    with open(three.device("alpha"), "r+b") as device:  # a Primary's device opens read-write
        device.read(4096)
    assert linbit(three, "demote") == 0
    assert linbit(three, "monitor") == 0
    with pytest.raises(OSError):  # a Secondary's device refuses to open
        open(three.device("alpha"), "rb").close()
    assert linbit(three, "stop") == 0
    assert linbit(three, "monitor") == 7
    assert not os.path.exists(three.device("alpha"))


def test_linbit_agent_refuses_promotion_without_quorum(three):
    assert linbit(three, "start") == 0
    three.crash("beta")
    three.crash("gamma")
    assert linbit(three, "monitor") == 0
    assert node_attribute(three.cib, "alpha", "master-drbd_r0") is None  # no quorum, no score
    assert linbit(three, "stop") == 0


def test_without_the_kernel_module_linbit_answers_as_on_a_real_node(three):
    """FIELD-NOTES: on a machine without the module LINBIT's agent probes 5 and stops 0."""
    no_module = {"DRBD_DOUBLE_NO_MODULE": "1"}
    probe = {**no_module, "OCF_RESKEY_CRM_meta_interval": "0"}
    assert as_alpha(three, ["drbdsetup", "status", "r0"], no_module).returncode == 20
    assert linbit(three, "monitor", probe) == 5
    assert linbit(three, "stop", no_module) == 0
