"""What the rabbitmq agent reads from the CIB's status: which peers' instances are neither active nor
being started (Pacemaker holds their starts back behind this one), in the records Pacemaker 2.1
writes (``record-pending``: an operation under way has ``op-status`` -1 and ``rc-code`` 193)."""

from __future__ import annotations

from agents.rabbitmq import ACTIVE, IDLE, STARTING, instance_states

RESOURCE = "rabbitmq"


def op(operation: str, status: str, rc: str, interval: str = "0", suffix: str = "last_0") -> str:
    return (f'<lrm_rsc_op id="{RESOURCE}_{suffix}" operation_key="{RESOURCE}_{operation}_{interval}" '
            f'operation="{operation}" call-id="-1" rc-code="{rc}" op-status="{status}" '
            f'interval="{interval}"/>')


def node(uname: str, *ops: str, resource: str = RESOURCE) -> str:
    return (f'<node_state id="{uname}" uname="{uname}" in_ccm="true" crmd="online"><lrm id="{uname}">'
            f'<lrm_resources><lrm_resource id="{resource}" type="rabbitmq" class="ocf" provider="openstack">'
            f'{"".join(ops)}</lrm_resource></lrm_resources></lrm></node_state>')


def test_each_record_tells_idle_starting_or_active():
    status = "<status>" + "".join([
        node("probed-stopped", op("monitor", "0", "7")),
        node("starting", op("start", "-1", "193")),
        node("started", op("start", "0", "0"), op("monitor", "0", "0", "10000", "monitor_10000")),
        node("start-failed", op("start", "0", "1"), op("start", "0", "1", suffix="last_failure_0")),
        node("stopped", op("stop", "0", "0")),
        node("stopping", op("stop", "-1", "193")),
        node("probed-running", op("monitor", "0", "0")),
        node("start-timed-out", op("start", "2", "1")),
        node("promoting", op("promote", "-1", "193")),
        node("other-resource-only", op("start", "-1", "193"), resource="memcached"),
        '<node_state id="9" uname="never-seen"/>',
    ]) + "</status>"
    assert instance_states(status, RESOURCE) == {
        "probed-stopped": IDLE, "starting": STARTING, "started": ACTIVE, "start-failed": IDLE,
        "stopped": IDLE, "stopping": IDLE, "probed-running": ACTIVE, "start-timed-out": ACTIVE,
        "promoting": ACTIVE, "other-resource-only": IDLE, "never-seen": IDLE}


def test_a_recurring_monitor_never_counts_as_a_probe():
    status = f"<status>{node('n1', op('monitor', '0', '7', '10000'))}</status>"
    assert instance_states(status, RESOURCE) == {"n1": ACTIVE}


def test_not_the_status_xml():
    assert instance_states("", RESOURCE) is None
    assert instance_states("Could not connect to the CIB", RESOURCE) is None
