"""What "healthy" means for a cluster running a ``config.Stack``, and waiting for it."""

from __future__ import annotations

from collections.abc import Callable

from nscluster import config
from nscluster.cluster import Cluster, ClusterStatus

VIPS = (config.PUBLIC_VIP, config.DATABASE_VIP)


def cloned(cluster: Cluster, stack: config.Stack) -> dict[str, tuple[str, ...]]:
    """Cloned primitives and where they run: the Dummy clone and the clones the site adds on every
    node, those bound to the storage (DRBD) on the storage nodes."""
    everyone = tuple(sorted(cluster.nodes))
    clones = {config.DUMMY: everyone} if stack.dummy_clone else {}
    for name, table in stack.site_overrides.items():
        resource = table.get("resource")
        if name.startswith("clone.") and isinstance(resource, str) and table.get("enabled", True):
            bound = name.removeprefix("clone.") in config.storage_bound()
            clones[resource] = config.storage_nodes(cluster.spec, stack) if bound else everyone
    return clones


def fully_running(cluster: Cluster, stack: config.Stack) -> Callable[[ClusterStatus], bool]:
    everyone = tuple(sorted(cluster.nodes))
    clones = cloned(cluster, stack)

    def check(status: ClusterStatus) -> bool:
        return (status.has_quorum and status.online == frozenset(everyone)
                and all(len(status.where(vip)) == 1 for vip in VIPS)
                and all(status.where(clone) == nodes for clone, nodes in clones.items())
                and all(r.role == "Started" for r in status.resources if r.id.startswith("fence-")))

    return check


def wait_healthy(cluster: Cluster, stack: config.Stack, timeout_s: float = 180) -> ClusterStatus:
    """Every node powered and online, every resource running, failure history cleared.

    Boots nodes that are off, except those fenced with "reboot", which boot by themselves.
    """
    for name, node in cluster.nodes.items():
        if not node.powered and not node.boot_pending:
            cluster.start_node(name)
    cluster.wait_online(timeout_s=timeout_s)
    running = fully_running(cluster, stack)

    def healthy(status: ClusterStatus) -> bool:
        if status.failures:
            cluster.progress(f"clearing failure history: {'; '.join(map(str, status.failures))}")
            cluster.run(cluster.any_running_node(), ["crm_resource", "--cleanup"], check=False)
            return False
        return running(status)

    status = cluster.wait_status(healthy, "every resource running, no failures", timeout_s)
    settle(cluster, timeout_s)
    return status


def settle(cluster: Cluster, timeout_s: float = 180) -> None:
    """Wait until no action is pending. crm_mon lists an instance as Started while its start still
    runs; a fault injected then meets a busy transition: the next one, even the one fencing a
    crashed node, waits for it, and a monitor failure reported before the transition that scheduled
    that monitor ends is recorded but never recovered by Pacemaker 2.1.5 (the controller matches it
    to the transition's confirmed action). Faults go into an idle cluster only."""
    cluster.run(cluster.any_running_node(), ["crm_resource", "--wait", f"--timeout={int(timeout_s)}s"],
                timeout=timeout_s + 30)


def crash_and_time(cluster: Cluster, vip: str = config.PUBLIC_VIP) -> tuple[str, str, float, float]:
    """Crash the node holding ``vip``; return (victim, new holder, crash time, seconds until it answers)."""
    (holder,) = cluster.status().where(vip)
    address = cluster.spec.vip_address(VIPS.index(vip))
    crashed_at = cluster.crash(holder)
    probe = cluster.start_waiting_probe(address)
    answered_at, new_holder = cluster.finish_waiting_probe(probe)
    return holder, new_holder, crashed_at, answered_at - crashed_at


def wait_fenced(cluster: Cluster, victim: str, since: float, timeout_s: float = 90) -> None:
    cluster.wait_status(lambda _s: bool(cluster.fenced(victim, since=since)), f"{victim} fenced", timeout_s)
