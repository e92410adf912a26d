"""``make demo``: a three-controller cluster on this machine, a crash, and the failover, measured.

Brings up three Pacemaker/Corosync nodes in namespaces, prepares the database
on three DRBD replicas (the DRBD 9 test double: the kernel module cannot load
here), applies the configuration as an operator does (``crmtool apply site.toml``,
a patch with an epoch compare-and-swap that keeps what the cluster wrote: the profile's promotable
``drbd`` clone, Filesystem on the Primary, ``mysql``, the VIPs), prepares
keystone on that database and adds the profile's keystone clone behind the
public VIP, with memcached (keystone's cache), neutron-server and the dashboard on every
node, shows ``crm_mon -1``, gets a keystone token, a neutron network listing and the
dashboard's login page through the public VIP and writes a row through the database VIP,
crashes the node that holds the DRBD Primary and the database, shows how long until
a write through the database VIP commits again on the newly promoted replica and until
keystone issues a token again, that the row is still there and that the crashed node was fenced, lets it
reboot, rejoin and resync as a Secondary, then removes everything. Every client
runs inside the cluster's namespaces.

``--haproxy`` runs the HAProxy profile instead: HAProxy on every node in front of the keystones
(each on its node's own address), ``haproxy.cfg`` written by ``crmtool haproxy`` from the same site,
the public VIP on a running HAProxy (keystone alone: no memcached, neutron-server or dashboard).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from nscluster import apitier, config, database, haproxy, health, openstack
from nscluster.cluster import Cluster, ClusterError, ClusterSpec

STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {message}", flush=True)


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def show(cluster: Cluster, node: str, argv: list[str]) -> None:
    print(f"$ {' '.join(argv)}   # on {node}", flush=True)
    print(cluster.run(node, argv).stdout.rstrip(), flush=True)


def preflight() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root (network, mount and PID namespaces)")
    agents = [f"/usr/lib/ocf/resource.d/openstack/{name}"
              for name in ("vip", "drbd", "mysql", "keystone", "memcached", "neutron-server", "dashboard")]
    for path in (*agents, config.CRMTOOL):
        if not os.path.exists(path):
            problems.append(f"{path} is missing: run `make install`")
    return problems


def configure(cluster: Cluster, db: database.Database, keystone: openstack.KeystoneInCluster,
              fronted: bool, tier: tuple[openstack.Prepared, ...] = ()) -> config.Stack:
    """Step 2: the site over the profile, applied with ``crmtool apply``; the stack it runs."""
    step("2. The configuration: the default profile + a site file, applied with crmtool apply")
    say("first the database (the drbd clone, then Filesystem, mysql and db-vip on the Primary)")
    stack = openstack.stack_with_keystone(cluster, db.overrides(), keystone, database.SOCKET, *tier)
    if fronted:
        stack = haproxy.fronted(cluster, stack)
        config.generate(cluster, stack)
        say(f"then keystone's clone on every node (each on its own address), HAProxy on every node in "
            f"front of them ({haproxy.CONFIG} written by `crmtool haproxy site.toml` on each node) and the "
            "public VIP where HAProxy runs")
    else:
        say("then keystone's clone on every node and the public VIP where keystone runs, memcached "
            "(keystone's cache), neutron-server and the dashboard on every node")
    site = config.write_site(cluster, stack)
    say(f"site file: {site}")
    # apply, not render | cibadmin --replace: the replace would drop dc-version and cluster-name
    applied = cluster.run(cluster.any_running_node(), [config.CRMTOOL, "apply", str(site)]).stdout
    say(f"crmtool apply: {applied.strip()}")
    return stack


def demo(cluster: Cluster, fronted: bool) -> None:
    step("1. Three controllers, each its own network/mount/uts/ipc/pid namespaces")
    cluster.create()
    db = database.Database(cluster)
    db.prepare(via=cluster.any_running_node())
    say(f"DRBD resource {database.DRBD_RESOURCE}: three UpToDate replicas (DRBD 9 test double, "
        f"{db.drbd_conf}) holding a MariaDB datadir")

    # keystone alone behind HAProxy; otherwise with its cache, neutron-server and the dashboard
    kind = openstack.KeystoneInCluster if fronted else apitier.CachedKeystone
    keystone = kind(cluster, db_port=database.PORT)
    dashboard = None if fronted else apitier.DashboardInCluster(cluster, keystone=keystone)
    tier: tuple[openstack.Prepared, ...] = () if dashboard is None else (
        apitier.MemcachedInCluster(cluster), apitier.NeutronInCluster(cluster, db_port=database.PORT,
                                                                      keystone=keystone), dashboard)
    stack = configure(cluster, db, keystone, fronted, tier)
    status = health.wait_healthy(cluster, stack)
    say("every resource is running")
    say(f"DRBD roles: {db.drbd_roles()}")
    show(cluster, status.dc or cluster.any_running_node(), ["crm_mon", "-1", "-r"])

    step("3. Clients (in the bridge namespace) use the VIPs")
    public, db_vip = cluster.spec.vip_address(0), cluster.spec.vip_address(1)
    keystone.token(timeout_s=30)
    say(f"keystone issued a token through the public VIP {public} (port {openstack.PORT})")
    if dashboard is not None:
        running = {name: len(status.where(name)) for name in (apitier.MEMCACHED, apitier.NEUTRON,
                                                               apitier.DASHBOARD)}
        listed = keystone.authorized_get(apitier.NEUTRON_PORT, "/v2.0/networks", timeout_s=30)["with"]
        dashboard.login_page(timeout_s=30)
        say(f"nodes running {', '.join(f'{name}: {count}' for name, count in running.items())}; through "
            f"the public VIP neutron lists networks with a token ({listed}, port {apitier.NEUTRON_PORT}) "
            f"and the dashboard's login page answers (port {apitier.DASHBOARD_PORT})")
    db.write(db_vip, row_id=1, timeout_s=30)
    say(f"row 1 committed through the database VIP {db_vip}")

    (holder,) = status.where("mysql")
    step(f"4. Crash {holder}, the DRBD Primary holding the database (power cut: PID 1 killed, link down)")
    crashed_at = cluster.crash(holder)
    token_client = keystone.start_waiting_token()
    committed_at = db.write(db_vip, row_id=2)
    token_at = openstack.finish_waiting_token(token_client)
    (new_holder,) = cluster.status().where("mysql")
    say(f"a write through the database VIP commits again on {new_holder}: "
        f"{committed_at - crashed_at:.1f} s after the crash")
    say(f"keystone issues a token through the public VIP again: {token_at - crashed_at:.1f} s "
        "after the crash")
    say(f"DRBD roles: {db.drbd_roles()}")
    health.wait_fenced(cluster, holder, crashed_at)
    fence = cluster.fenced(holder, since=crashed_at)[0]
    say(f"{holder} was fenced ({fence.action}) {fence.at - crashed_at:.1f} s after the crash")
    say(f"rows in the table: {db.ids(db_vip)} (row 1 survived the crash)")
    show(cluster, new_holder, ["crm_mon", "-1", "-r"])

    step(f"5. {holder} reboots after {cluster.spec.fence_reboot_delay_s:.0f} s and rejoins")
    status = health.wait_healthy(cluster, stack)
    say(f"all three nodes online again; the database stays on {status.where('mysql')[0]} "
        "(resource-stickiness)")
    say(f"DRBD roles: {db.drbd_roles()} ({holder} resynced from the new Primary)")
    show(cluster, new_holder, ["stonith_admin", "--history", "*"])

    step("Summary")
    say(f"crash of the database holder -> first committed write through the database VIP: "
        f"{committed_at - crashed_at:.1f} s, keystone token through the public VIP: "
        f"{token_at - crashed_at:.1f} s (corosync token {cluster.spec.token_ms} ms)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--haproxy", action="store_true",
                        help="HAProxy in front of the APIs (the HAProxy profile)")
    args = parser.parse_args(argv)
    problems = preflight()
    if problems:
        for problem in problems:
            print(f"demo: {problem}", file=sys.stderr)
        return 1
    fields = database.spec_fields(private_dirs=(*openstack.PRIVATE_DIRS, *haproxy.PRIVATE_DIRS,
                                                *apitier.MEMCACHED_DIRS, *apitier.NEUTRON_DIRS,
                                                *apitier.DASHBOARD_DIRS))
    cluster = Cluster(ClusterSpec(fence_reboot_delay_s=5.0, **fields),  # type: ignore[arg-type]
                      progress=say)
    try:
        demo(cluster, args.haproxy)
    except (ClusterError, OSError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        step("6. Teardown: nodes, namespaces, fence agent, state files")
        cluster.teardown()
        say("nothing left behind")
    return 0


if __name__ == "__main__":
    sys.exit(main())
