"""Netsplit of one node on a real 3-node cluster: the isolated node stops its resources on its own
(no quorum), the majority keeps serving and fences it, the node reboots and rejoins cleanly.

The fence device is made slow (the fence agent's ``delay``, set in the site file) so that
what the isolated node does by itself can be observed before it is fenced.
"""

from __future__ import annotations

import time

import pytest

from harness.cluster_fixtures import VIPS, addresses_on, cluster_fixtures, dc_and_holders, vip_address_of
from nscluster import config, health
from nscluster.cluster import ClusterError

pytestmark = pytest.mark.cluster
FENCE_DELAY_S = 15
STACK = config.Stack(fence_delay_s=FENCE_DELAY_S)


def vip_still_on(cluster, node, address):
    """Whether a powered node still holds the address (a fenced node holds nothing)."""
    try:
        return cluster.nodes[node].powered and address in addresses_on(cluster, node)
    except ClusterError:
        return False  # powered off by the fence between the two checks


cluster, healthy = cluster_fixtures(STACK)


def test_isolated_node_stops_its_resources_and_the_majority_keeps_serving(cluster):
    status = cluster.status()
    _dc, holders = dc_and_holders(status)
    victim = sorted(set(cluster.nodes) - holders)[0]
    majority = tuple(sorted(set(cluster.nodes) - {victim}))
    placement = {vip: status.where(vip) for vip in VIPS}

    isolated_at = time.monotonic()
    cluster.isolate(victim)
    cluster.wait_status(lambda s: not s.has_quorum and victim not in s.where(config.DUMMY),
                        f"{victim} without quorum and its Dummy instance stopped", FENCE_DELAY_S - 1,
                        via=victim)
    print(f"{victim} stopped its resources {time.monotonic() - isolated_at:.1f} s after the split")
    assert not cluster.fenced(victim, since=isolated_at), "it must stop on its own, before any fencing"

    # Until it is fenced, the majority lists the isolated node's resources as on an unclean node.
    majority_view = cluster.wait_status(
        lambda s: s.has_quorum and s.online == frozenset(majority)
        and set(majority) <= set(s.where(config.DUMMY)),
        "the majority partition with quorum", 30, via=majority[0])
    assert {vip: majority_view.where(vip) for vip in VIPS} == placement, "the VIPs did not move"
    for vip in VIPS:
        assert cluster.probe(vip_address_of(cluster, vip)) == placement[vip][0]

    health.wait_fenced(cluster, victim, isolated_at, timeout_s=FENCE_DELAY_S + 60)
    fence = cluster.fenced(victim, since=isolated_at)[0]
    assert fence.at - isolated_at >= FENCE_DELAY_S
    health.wait_healthy(cluster, STACK)
    assert {vip: cluster.status().where(vip) for vip in VIPS} == placement


def test_isolated_vip_holder_drops_the_vip_before_the_majority_takes_it_over(cluster):
    (victim,) = cluster.status().where(config.PUBLIC_VIP)
    address = vip_address_of(cluster, config.PUBLIC_VIP)
    majority = sorted(set(cluster.nodes) - {victim})
    isolated_at = time.monotonic()
    cluster.isolate(victim)

    dropped_at = None
    while time.monotonic() - isolated_at < FENCE_DELAY_S + 60:
        on_victim = vip_still_on(cluster, victim, address)
        on_majority = [node for node in majority if address in addresses_on(cluster, node)]
        assert not (on_victim and on_majority), f"the VIP is on {victim} and on {on_majority} at once"
        if not on_victim and dropped_at is None:
            dropped_at = time.monotonic()
        if on_majority:
            break
        time.sleep(0.3)
    assert dropped_at is not None and dropped_at - isolated_at < FENCE_DELAY_S, \
        "the isolated node kept the VIP until it was fenced"
    assert cluster.fenced(victim, since=isolated_at), "the majority took the VIP over without fencing"
    new_holder = cluster.probe(address, timeout_s=5)
    assert new_holder in majority
    print(f"{victim} dropped the VIP {dropped_at - isolated_at:.1f} s after the split; "
          f"{new_holder} serves it")
    health.wait_healthy(cluster, STACK)
