"""keystone with memcached, neutron-server and the dashboard on a real 3-node cluster: the profile's
clones under our agents, served through the public VIP, and still served after a node's crash.

keystone's ``[cache]`` lists every node's memcached (``nscluster.apitier.keystone_cache_section``);
neutron-server runs without a broker (``NeutronInCluster``: its API needs none); the dashboard logs
in through keystone at the public VIP (its depth-20 monitor). Clients run only in the bridge
namespace. One cluster for the module; the crash comes last and the crashed node stays off (no
reboot), so that its memcached is down for certain while keystone is asked for tokens.
"""

from __future__ import annotations

import time

import pytest

from agents.dashboard import LoginPage
from harness.cluster_fixtures import assert_no_password_anywhere, start_cluster_on_database
from nscluster import config, database, health
from nscluster.apitier import (
    DASHBOARD,
    DASHBOARD_DIRS,
    MEMCACHED,
    MEMCACHED_DIRS,
    NEUTRON,
    NEUTRON_DIRS,
    NEUTRON_PORT,
    CachedKeystone,
    DashboardInCluster,
    MemcachedInCluster,
    NeutronInCluster,
)
from nscluster.openstack import PRIVATE_DIRS, RESOURCE, stack_with_keystone

pytestmark = pytest.mark.cluster
SERVICES = (RESOURCE, MEMCACHED, NEUTRON, DASHBOARD)


@pytest.fixture(scope="module")
def tier(request):
    made = {}

    def build(cluster, db):
        made["keystone"] = keystone = CachedKeystone(cluster, db_port=database.PORT)
        made["memcached"] = memcached = MemcachedInCluster(cluster)
        made["neutron"] = neutron = NeutronInCluster(cluster, db_port=database.PORT, keystone=keystone)
        made["dashboard"] = dashboard = DashboardInCluster(cluster, keystone=keystone)
        made["stack"] = stack_with_keystone(cluster, db.overrides(), keystone, database.SOCKET, memcached,
                                            neutron, dashboard)
        return made["stack"]

    private = (*PRIVATE_DIRS, *MEMCACHED_DIRS, *NEUTRON_DIRS, *DASHBOARD_DIRS)
    began = time.monotonic()
    made["cluster"] = start_cluster_on_database(request, build, private, fence_reboot_delay_s=None)
    print(f"cluster with keystone, memcached, neutron-server and the dashboard ready in "
          f"{time.monotonic() - began:.1f} s")
    return made


@pytest.fixture(autouse=True)
def healthy(tier):
    health.wait_healthy(tier["cluster"], tier["stack"])


def gets(memcached, nodes):
    return {node: int(memcached.stats(node)["cmd_get"]) for node in nodes}


def test_every_service_runs_on_every_node_and_answers_through_the_public_vip(tier):
    cluster, keystone, memcached = tier["cluster"], tier["keystone"], tier["memcached"]
    everyone = tuple(sorted(cluster.nodes))
    status = cluster.status()
    for resource in SERVICES:
        assert status.where(resource) == everyone, (resource, status.where(resource))
    before = gets(memcached, everyone)
    keystone.token(timeout_s=60)
    answer = keystone.authorized_get(NEUTRON_PORT, "/v2.0/networks")
    assert (answer["with"], answer["without"]) == (200, 401), answer
    assert answer["document"]["networks"] == []
    page = tier["dashboard"].login_page()
    assert LoginPage.read(page.encode()).form is not None, page[:300]
    # keystone's [cache] is in use: the tokens just issued read through the memcached clone.
    after = gets(memcached, everyone)
    print(f"memcached gets per node during a token and a neutron listing: "
          f"{ {node: after[node] - before[node] for node in everyone} }")
    assert sum(after.values()) > sum(before.values())


def test_no_password_in_any_command_line_the_cib_or_a_log(tier):
    cluster = tier["cluster"]
    passwords = [*tier["keystone"].passwords, *tier["neutron"].passwords, *tier["dashboard"].passwords]
    assert_no_password_anywhere(cluster, passwords)


def test_after_a_crash_every_service_is_served_through_the_public_vip(tier):
    """The public VIP's holder crashes: keystone issues tokens with that node's memcached down
    (the survivors' memcached serve its cache), neutron lists networks with a token, the dashboard's
    login page answers, all through the public VIP."""
    cluster, keystone, memcached = tier["cluster"], tier["keystone"], tier["memcached"]
    (victim,) = cluster.status().where(config.PUBLIC_VIP)
    survivors = tuple(sorted(set(cluster.nodes) - {victim}))
    before = gets(memcached, survivors)
    crashed_at = cluster.crash(victim)
    token_at = keystone.token(timeout_s=90)
    answer = keystone.authorized_get(NEUTRON_PORT, "/v2.0/networks", timeout_s=90)
    assert (answer["with"], answer["without"]) == (200, 401), answer
    neutron_at = answer["t"]
    page = tier["dashboard"].login_page(timeout_s=90)
    dashboard_at = time.monotonic()
    assert LoginPage.read(page.encode()).form is not None, page[:300]
    for _ in range(3):
        keystone.token(timeout_s=30)
    status = cluster.status()
    after = gets(memcached, survivors)
    print(f"crash of {victim} (the public VIP's holder; database on {status.where('mysql')}): first token "
          f"after {token_at - crashed_at:.1f} s, networks listed after {neutron_at - crashed_at:.1f} s, "
          f"the login page after {dashboard_at - crashed_at:.1f} s; public VIP now on "
          f"{status.where(config.PUBLIC_VIP)}; memcached gets on the survivors "
          f"{ {node: after[node] - before[node] for node in survivors} }")
    assert not cluster.nodes[victim].powered
    assert victim not in status.where(MEMCACHED)
    assert status.where(config.PUBLIC_VIP)[0] in survivors
    for resource in SERVICES:
        assert set(survivors) <= set(status.where(resource)), (resource, status.where(resource))
    assert sum(after.values()) > sum(before.values()), "keystone did not use the surviving memcached"
