"""``make demo``: a three-controller cluster on this machine, a crash, and the failover, measured.

Brings up three Pacemaker/Corosync nodes in namespaces, pushes the
configuration as an operator does (``crmtool render site.toml | cibadmin
--replace --scope configuration --xml-pipe``), shows ``crm_mon -1``, crashes the
node that holds the public VIP, shows how long the VIP took to answer again
from a survivor and that the crashed node was fenced, lets it reboot and
rejoin, then removes everything. Every client runs inside the cluster's
namespaces.

The database (DRBD, MariaDB) and the API services are not in the demo yet:
it shows the virtual IPs (our ``vip`` agent), fencing and a Dummy clone.
"""

from __future__ import annotations

import os
import sys
import time

from nscluster import config, health
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
    for path in ("/usr/lib/ocf/resource.d/openstack/vip", config.CRMTOOL):
        if not os.path.exists(path):
            problems.append(f"{path} is missing: run `make install`")
    return problems


def demo(cluster: Cluster, stack: config.Stack) -> None:
    step("1. Three controllers, each its own network/mount/uts/ipc/pid namespaces")
    cluster.create()

    step("2. The configuration: crmtool render of the default profile + a site file, pushed with cibadmin")
    say(f"site file: {config.write_site(cluster, stack)}")
    config.push(cluster, stack)
    status = health.wait_healthy(cluster, stack)
    say("every resource is running")
    show(cluster, status.dc or cluster.any_running_node(), ["crm_mon", "-1", "-r"])

    step("3. A client (in the bridge namespace) reaches the public VIP")
    address = cluster.spec.vip_address(0)
    (holder,) = status.where(config.PUBLIC_VIP)
    say(f"public VIP {address} answers from {cluster.probe(address)} (Pacemaker placed it on {holder})")

    step(f"4. Crash {holder}, the node holding the public VIP (power cut: PID 1 killed, link down)")
    victim, new_holder, crashed_at, seconds = health.crash_and_time(cluster)
    say(f"public VIP answers again from {new_holder}: {seconds:.1f} s after the crash")
    health.wait_fenced(cluster, victim, crashed_at)
    fence = cluster.fenced(victim, since=crashed_at)[0]
    say(f"{victim} was fenced ({fence.action}) {fence.at - crashed_at:.1f} s after the crash")
    show(cluster, new_holder, ["crm_mon", "-1", "-r"])

    step(f"5. {victim} reboots after {cluster.spec.fence_reboot_delay_s:.0f} s and rejoins")
    status = health.wait_healthy(cluster, stack)
    say(f"all three nodes online again; public VIP stays on {status.where(config.PUBLIC_VIP)[0]} "
        "(resource-stickiness)")
    show(cluster, new_holder, ["stonith_admin", "--history", "*"])

    step("Summary")
    say(f"failover of the public VIP after a crash of its holder: {seconds:.1f} s "
        f"(corosync token {cluster.spec.token_ms} ms)")
    say("not shown yet: the database (DRBD + MariaDB) and the API services under the cluster")


def main() -> int:
    problems = preflight()
    if problems:
        for problem in problems:
            print(f"demo: {problem}", file=sys.stderr)
        return 1
    cluster = Cluster(ClusterSpec(fence_reboot_delay_s=5.0), progress=say)
    try:
        demo(cluster, config.Stack())
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
