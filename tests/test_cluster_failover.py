"""Crashes and resource failures on a real 3-node Pacemaker/Corosync cluster in namespaces.

Configuration: `crmtool render` of the default profile (with a site file for the
namespace addresses) pushed with cibadmin; our `vip` agent for public-vip and
db-vip, a Dummy clone on every node, one fence device per node (the harness's
broker really powers the victim off and reboots it).
"""

from __future__ import annotations

import time

import pytest

from harness.cluster_fixtures import (
    VIPS,
    addresses_on,
    cluster_fixtures,
    dc_and_holders,
    vip_address_of,
    wait_rejoined,
)
from nscluster import config, health

pytestmark = pytest.mark.cluster
SERVICE = "web"
SERVICE_PORT = 8088
# A real daemon per node, cloned, to kill -9: Python's HTTP server under resource-agents' `anything`.
STACK = config.Stack(site_overrides={
    f"primitive.{SERVICE}": {"agent": "ocf:heartbeat:anything",
                             "ops": [{"name": "monitor", "interval": "5s", "timeout": "20s"}]},
    f"primitive.{SERVICE}.params": {
        "binfile": "/usr/bin/python3",
        "cmdline_options": f"-m http.server {SERVICE_PORT} --bind 0.0.0.0 "
                           "--directory /usr/share/doc/corosync"},
    f"clone.{SERVICE}-clone": {"resource": SERVICE, "meta": {"interleave": True}},
})


def monitor_failed(status, resource, node):
    return any((f.resource, f.task, f.node) == (resource, "monitor", node) for f in status.failures)


cluster, healthy = cluster_fixtures(STACK)


def test_each_vip_answers_from_the_node_pacemaker_placed_it_on(cluster):
    status = cluster.status()
    for vip in VIPS:
        (holder,) = status.where(vip)
        assert cluster.probe(vip_address_of(cluster, vip)) == holder
        assert vip_address_of(cluster, vip) in addresses_on(cluster, holder)


def test_crash_of_the_public_vip_holder_moves_it_to_a_survivor(cluster):
    (holder,) = cluster.status().where(config.PUBLIC_VIP)
    crashed_at = cluster.crash(holder)
    probe = cluster.start_waiting_probe(vip_address_of(cluster, config.PUBLIC_VIP))
    answered_at, new_holder = cluster.finish_waiting_probe(probe)
    print(f"public-vip answered from {new_holder} {answered_at - crashed_at:.1f} s after the crash")
    assert new_holder != holder
    assert cluster.fenced(holder, since=crashed_at), "the crashed node was not fenced"
    survivors = tuple(sorted(set(cluster.nodes) - {holder}))
    cluster.wait_status(
        lambda s: all(len(s.where(v)) == 1 and set(s.where(v)) <= set(survivors) for v in VIPS)
        and set(survivors) <= set(s.where(config.DUMMY)),
        "both VIPs and the Dummy clone on the survivors", 60, via=new_holder)
    wait_rejoined(cluster, STACK, holder, crashed_at)


def test_crash_of_a_node_holding_no_vip_leaves_the_vips_in_place(cluster):
    status = cluster.status()
    _dc, holders = dc_and_holders(status)
    bystanders = sorted(set(cluster.nodes) - holders)
    if not bystanders:  # both VIPs on different nodes and the third node is the only one left
        bystanders = sorted(set(cluster.nodes) - set(status.where(config.PUBLIC_VIP)))
    victim = bystanders[0]
    public_holder = status.where(config.PUBLIC_VIP)[0]
    crashed_at = cluster.crash(victim)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert cluster.probe(vip_address_of(cluster, config.PUBLIC_VIP)) == public_holder
        time.sleep(0.5)
    health.wait_fenced(cluster, victim, crashed_at)
    assert cluster.status(via=public_holder).where(config.PUBLIC_VIP) == (public_holder,)
    wait_rejoined(cluster, STACK, victim, crashed_at)
    assert cluster.status().where(config.PUBLIC_VIP) == (public_holder,), "stickiness: the VIP stays put"


def test_crash_of_the_dc_elects_a_new_dc_and_keeps_everything_running(cluster):
    dc, _holders = dc_and_holders(cluster.status())
    survivors = tuple(sorted(set(cluster.nodes) - {dc}))
    crashed_at = cluster.crash(dc)
    status = cluster.wait_status(
        lambda s: s.dc in survivors and s.has_quorum
        and all(len(s.where(v)) == 1 and set(s.where(v)) <= set(survivors) for v in VIPS)
        and set(survivors) <= set(s.where(config.DUMMY)), "a new DC and every resource on the survivors", 90,
        via=survivors[0])
    print(f"new DC {status.dc}, resources back {time.monotonic() - crashed_at:.1f} s after the crash")
    health.wait_fenced(cluster, dc, crashed_at)
    status = cluster.status(via=survivors[0])
    assert status.dc in survivors
    assert all(set(status.where(v)) <= set(survivors) for v in VIPS)
    for vip in VIPS:
        assert cluster.probe(vip_address_of(cluster, vip)) in survivors
    wait_rejoined(cluster, STACK, dc, crashed_at)


def test_a_vip_removed_behind_pacemakers_back_is_restarted_in_place(cluster):
    (holder,) = cluster.status().where(config.PUBLIC_VIP)
    address = vip_address_of(cluster, config.PUBLIC_VIP)
    since = time.monotonic()
    cluster.run(holder, ["ip", "addr", "del", f"{address}/{cluster.spec.network.prefixlen}", "dev", "eth0"])
    status = cluster.wait_status(
        lambda s: monitor_failed(s, config.PUBLIC_VIP, holder)
        and s.where(config.PUBLIC_VIP) == (holder,)
        and address in addresses_on(cluster, holder),
        "the monitor failure recorded and the VIP restarted on the same node", 60)
    print(status.failures)
    assert cluster.probe(address) == holder
    assert not cluster.fence_events or all(e.at < since for e in cluster.fence_events)


def test_a_failed_clone_instance_is_restarted_in_place(cluster):
    victim = sorted(cluster.nodes)[-1]
    since = time.monotonic()
    # Dummy's whole state is its state file: deleting it is how Dummy "dies".
    state_files = f"Dummy-{config.DUMMY}*.state"
    cluster.run(victim, ["find", "/run", "-maxdepth", "1", "-name", state_files, "-delete"])
    cluster.wait_status(
        lambda s: monitor_failed(s, config.DUMMY, victim)
        and s.where(config.DUMMY) == tuple(sorted(cluster.nodes)),
        "the Dummy failure recorded and the instance running again on every node", 60)
    assert not cluster.fenced(victim, since=since)


def service_pid(cluster, node):
    """The pid the agent recorded, or None while there is none (stopped, or starting)."""
    found = cluster.run(node, ["find", "/run", "-maxdepth", "1", "-name", f"anything_{SERVICE}*.pid"])
    if not found.stdout.strip():
        return None
    text = cluster.run(node, ["cat", found.stdout.strip()], check=False).stdout.strip()
    return int(text) if text.isdigit() else None


def test_a_service_killed_with_sigkill_is_restarted_in_place(cluster):
    victim = sorted(cluster.nodes)[0]
    address = cluster.nodes[victim].address
    # `anything` reports started once the process exists; the server listens a moment later.
    cluster.finish_waiting_probe(cluster.start_waiting_probe(address, SERVICE_PORT, timeout_s=20))
    old_pid = service_pid(cluster, victim)
    since = time.monotonic()
    cluster.run(victim, ["kill", "-9", str(old_pid)])
    cluster.wait_status(
        lambda s: monitor_failed(s, SERVICE, victim) and victim in s.where(SERVICE)
        and service_pid(cluster, victim) not in (None, old_pid),
        "the failure recorded and a new service process on the same node", 60)
    cluster.finish_waiting_probe(cluster.start_waiting_probe(address, SERVICE_PORT, timeout_s=20))
    assert not cluster.fenced(victim, since=since)
