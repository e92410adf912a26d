"""The drbd agent (installed) against the DRBD double: roles, codes, scores, refusals, ocf-tester."""

from __future__ import annotations

import os
import subprocess

import pytest

from harness.drbd_double.agent import OUR_AGENT, Cluster
from harness.drbd_double.fixture import mounted, replicas
from harness.ocfrun import Result

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices, mknod)")
SCORE = "master-drbd_r0"


@pytest.fixture
def three():
    with replicas() as drbd:
        yield drbd, Cluster(drbd)


def test_ocf_tester_with_promote_and_demote(three):
    drbd, agent = three
    for peer in ("beta", "gamma"):
        drbd.run(peer, "drbdadm", "up", drbd.resource)
    argv = ["ocf-tester", "-v", "-n", "drbd_r0", "-o", f"drbd_resource={drbd.resource}",
            "-o", f"drbdconf={drbd.conf}", "-o", "CRM_meta_on_node=alpha", "-o", "CRM_meta_notify=true",
            OUR_AGENT]
    env = agent.env("alpha")
    env = {k: v for k, v in env.items() if not k.startswith("OCF_RESKEY_")}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "Testing: promote" in out and "Testing: demote" in out and "Promoting resource" in out
    assert not os.path.exists(drbd.device("alpha"))  # stopped at the end


def test_monitor_codes_and_promotion_scores(three):
    drbd, agent = three
    for node in ("alpha", "beta"):
        assert agent(node, "start").rc == 0
    assert agent("alpha", "monitor").rc == 190  # gamma is not connected: degraded
    assert agent.attribute("alpha", SCORE) == "1000"  # UpToDate, but a peer's disk is unknown
    drbd.run("gamma", "drbdadm", "up", drbd.resource)
    assert agent("alpha", "monitor").rc == 0
    assert agent.attribute("alpha", SCORE) == "10000"
    assert agent("alpha", "promote").rc == 0
    assert agent("alpha", "monitor", role="Promoted").rc == 8
    assert agent("beta", "monitor").rc == 0
    drbd.crash("gamma")
    assert agent("alpha", "monitor").rc == 191  # Primary, degraded
    assert agent("alpha", "demote").rc == 0
    assert agent("alpha", "stop").rc == 0
    assert agent("alpha", "monitor").rc == 7
    assert agent.attribute("alpha", SCORE) is None
    assert agent("alpha", "stop").rc == 0  # idempotent


def test_no_score_and_no_promotion_without_quorum(three):
    drbd, agent = three
    assert agent("alpha", "start").rc == 0  # alone out of three: no quorum
    assert agent("alpha", "monitor").rc == 190
    assert agent.attribute("alpha", SCORE) is None
    refused = agent("alpha", "promote")
    assert refused.rc == 1
    assert refused.exit_reasons == ["refusing to promote: this node has no quorum"]
    assert drbd.status("alpha")["role"] == "Secondary"


def test_no_score_and_no_promotion_with_an_outdated_disk(three):
    drbd, agent = three
    for node in drbd.nodes:
        assert agent(node, "start").rc == 0
    drbd.run("alpha", "drbdadm", "outdate", drbd.resource)
    assert agent("alpha", "monitor").rc == 190
    assert agent.attribute("alpha", SCORE) is None
    refused = agent("alpha", "promote")
    assert refused.rc == 1
    assert "the local disk is Outdated, not UpToDate" in refused.exit_reasons[0]
    assert agent("beta", "monitor").rc == 190  # alpha's disk is not UpToDate
    assert agent.attribute("beta", SCORE) == "1000"  # good locally, a peer is not UpToDate


def test_demote_refused_while_the_device_is_mounted(three):
    drbd, agent = three
    for node in drbd.nodes:
        assert agent(node, "start").rc == 0
    assert agent("beta", "promote").rc == 0
    assert agent("alpha", "promote").rc == 1  # beta is Primary already
    with mounted(drbd.device("beta"), os.path.join(drbd.workdir, "mnt")):
        refused = agent("beta", "demote")
        assert refused.rc == 1
        assert "Device is held open by someone" in refused.exit_reasons[0]
    assert agent("beta", "demote").rc == 0
    assert agent("beta", "monitor").rc == 0


def test_parameter_and_configuration_errors(three):
    drbd, agent = three
    agent.params.pop("drbd_resource")
    missing = agent("alpha", "start")
    assert missing.rc == 6
    agent.params.update(drbd_resource="nosuch")
    assert agent("alpha", "start").rc == 5  # not defined for this node: try elsewhere
    assert agent("alpha", "monitor", interval="0").rc == 7
    agent.params.update(drbd_resource=drbd.resource, split_brain_policy="discard-node")
    assert agent("alpha", "validate-all").rc == 6
    agent.params.update(split_brain_policy="discard-everything")
    assert agent("alpha", "validate-all").rc == 6
    agent.params.update(split_brain_policy="disconnect", drbdconf="/nonexistent/drbd.conf")
    assert agent("alpha", "monitor", interval="0").rc == 7  # probe: not here
    assert agent("alpha", "stop").rc == 0


MISREAD_VALUES = (
    {"drbd_resource": "all"},  # drbdadm down all: every resource of the node
    {"drbd_resource": "ALL"},
    {"drbd_resource": "--force"},  # an option to drbdadm and drbdsetup
    {"drbd_resource": "-c/etc/drbd.conf"},
    {"split_brain_policy": "discard-node", "split_brain_victim": "--discard-my-data"},
    {"split_brain_policy": "discard-node", "split_brain_victim": "all"},
    {"preserve_dir": "relative/preserved"},
    {"preserve_dir": "/var/lib/../../tmp"},
    {"drbdconf": "-d"},
)


def test_parameter_values_other_programs_would_misread_are_refused(three):
    drbd, agent = three
    for node in drbd.nodes:
        assert agent(node, "start").rc == 0
    good = dict(agent.params)
    agent.params.update(split_brain_policy="discard-node", split_brain_victim="beta")
    assert agent("alpha", "validate-all").rc == 0  # negative control: sound values pass
    for values in MISREAD_VALUES:
        agent.params = {**good, **values}
        result = agent("alpha", "validate-all")
        assert result.rc == 6, (values, result.rc, result.stderr)
        assert len(result.exit_reasons) == 1 and "Traceback" not in result.stderr, values
        assert agent("alpha", "stop").rc == 0, values
        if "drbd_resource" in values:  # no resource name stop could trust: it took nothing down
            assert all(drbd.status(node) for node in drbd.nodes), values
        agent.params = dict(good)
        assert agent("alpha", "start").rc == 0


def test_post_start_notification_reconnects_peers(three):
    drbd, agent = three
    for node in drbd.nodes:
        assert agent(node, "start").rc == 0
    drbd.run("alpha", "drbdadm", "disconnect", drbd.resource)
    assert agent("alpha", "notify", notify_type="pre", notify_operation="start").rc == 0
    assert drbd.status("alpha")["connections"][0]["connection-state"] == "StandAlone"
    assert agent("alpha", "notify", notify_type="post", notify_operation="start",
                 notify_start_uname="beta").rc == 0
    states = [c["connection-state"] for c in drbd.status("alpha")["connections"]]
    assert states == ["Connected", "Connected"]


def test_post_promote_notification_leaves_peers_pacemaker_lost_alone(three):
    drbd, agent = three
    for node in drbd.nodes:
        assert agent(node, "start").rc == 0
    drbd.run("alpha", "drbdadm", "disconnect", drbd.resource)
    # beta and gamma are gone as far as Pacemaker knows: no reconnection attempt towards them
    assert agent("alpha", "notify", notify_type="post", notify_operation="promote",
                 notify_promote_uname="alpha", notify_active_uname="alpha").rc == 0
    states = [c["connection-state"] for c in drbd.status("alpha")["connections"]]
    assert states == ["StandAlone", "StandAlone"]
    assert agent("alpha", "notify", notify_type="post", notify_operation="promote",
                 notify_promote_uname="alpha", notify_active_uname="alpha beta gamma").rc == 0
    states = [c["connection-state"] for c in drbd.status("alpha")["connections"]]
    assert states == ["Connected", "Connected"]


def test_a_hung_drbd_command_is_cut_off_by_the_time_budget(three):
    import fcntl
    import time

    drbd, agent = three
    assert agent("alpha", "start").rc == 0
    # Holding the double's state lock makes every drbdsetup call block, like a stuck kernel.
    with open(os.path.join(drbd.state, drbd.resource, "lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        began = time.monotonic()
        hung = agent("alpha", "monitor", timeout="3000")
        took = time.monotonic() - began
    assert hung.rc == 1
    assert hung.exit_reasons == ["timed out waiting for drbdsetup"]
    assert took < 10
    assert agent("alpha", "monitor").rc == 190


def test_probe_of_a_resource_that_is_down(three):
    _drbd, agent = three
    assert agent("alpha", "monitor", interval="0").rc == 7
    assert agent.attribute("alpha", SCORE) is None


def run_without_module(agent, node, action, interval="0"):
    env = agent.env(node, interval=interval)
    env["DRBD_DOUBLE_NO_MODULE"] = "1"
    done = subprocess.run([OUR_AGENT, action], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def test_a_node_without_the_kernel_module_is_probed_not_running_and_stops_cleanly(three):
    """drbdsetup exits 20 there: a probe error would ban the node, a failed stop would fence it."""
    _drbd, agent = three
    probe = run_without_module(agent, "alpha", "monitor")
    assert probe.rc == 7, probe.stderr
    assert probe.exit_reasons == []
    assert run_without_module(agent, "alpha", "stop").rc == 0
    refused = run_without_module(agent, "alpha", "start")
    assert refused.rc == 5  # node-local: Pacemaker starts the replica elsewhere, never fences
    assert refused.exit_reasons == ["the DRBD kernel module is not available on this node"]
    assert agent.attribute("alpha", SCORE) is None
