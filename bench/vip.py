"""vip against ocf:heartbeat:IPaddr2: same address, same namespace, alternating runs.

The benchmark process itself enters the test namespace (setns), so neither
agent pays for ``ip netns exec``; every packet stays inside the namespace
pair built by ``harness.netns.Lab`` with a documentation address.  Both agents
run with their defaults (5 announcements 200 ms apart, sent in the
background), and a call is timed until the agent process exits.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator

from bench.core import BARE_INTERPRETER, Bench, alternate, ms, ratio, time_once

VIP = "/usr/lib/ocf/resource.d/openstack/vip"
IPADDR2 = "/usr/lib/ocf/resource.d/heartbeat/IPaddr2"
ADDRESS = "192.0.2.10"
CLONE_NEWNET = 0x40000000
MONITOR_TARGET = 0.7
METADATA_TARGET = 2.0


def agent_env(action_env: dict[str, str] | None = None) -> dict[str, str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
           "OCF_RESOURCE_INSTANCE": "bench-vip", "OCF_RESKEY_ip": ADDRESS}
    env.update(action_env or {})
    return env


@contextlib.contextmanager
def inside(netns_name: str) -> Iterator[None]:
    """Move this process into a named network namespace, and back afterwards."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns_name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the benchmark namespace failed")
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original namespace failed")
    finally:
        os.close(target)
        os.close(home)


def time_exit(argv: list[str], env: dict[str, str], expect: tuple[int, ...] = (0,)) -> float:
    """Seconds until the process exits, as Pacemaker's executor sees it.

    Output goes to /dev/null: IPaddr2 leaves its ARP sender running in the
    background with the agent's stdout, and waiting for the end of a pipe
    would time that sender instead of the agent.
    """
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode not in expect:
            errors.seek(0)
            raise RuntimeError(f"{argv} exited {done.returncode}, expected {list(expect)}: "
                               f"{errors.read().decode(errors='replace')[-600:]}")
    return elapsed


def action(agent: str, name: str, expect: tuple[int, ...] = (0,)) -> Callable[[], float]:
    env = agent_env()
    return lambda: time_exit([agent, name], env, expect)


def cycle(agent: str) -> Callable[[], float]:
    start, stop = action(agent, "start"), action(agent, "stop")
    return lambda: start() + stop()


def run(bench: Bench) -> None:
    if os.geteuid() != 0:
        print("vip benchmark skipped: network namespaces need root\n")
        return
    for path in (VIP, IPADDR2):
        if not os.access(path, os.X_OK):
            raise SystemExit(f"{path} is missing: run `make install` (and install resource-agents)")
    from harness.netns import Lab

    rounds = bench.rounds
    with Lab("vipb") as lab, inside(lab.node.name):
        time_exit([VIP, "start"], agent_env())
        monitor = alternate({"vip": action(VIP, "monitor"), "IPaddr2": action(IPADDR2, "monitor")},
                            rounds * 2)
        time_exit([VIP, "stop"], agent_env())
        metadata = alternate({"vip": action(VIP, "meta-data"), "IPaddr2": action(IPADDR2, "meta-data"),
                              "bare": lambda: time_once(BARE_INTERPRETER)}, rounds * 2)
        start_stop = alternate({"vip": cycle(VIP), "IPaddr2": cycle(IPADDR2)}, rounds)
    rows = [
        row("monitor vs IPaddr2", monitor["vip"], monitor["IPaddr2"], f"≤ {MONITOR_TARGET}", MONITOR_TARGET),
        row("meta-data vs IPaddr2", metadata["vip"], metadata["IPaddr2"], "-"),
        row("meta-data vs bare `python3 -I -S -c pass`", metadata["vip"], metadata["bare"],
            f"≤ {METADATA_TARGET}", METADATA_TARGET),
        row("start + stop vs IPaddr2", start_stop["vip"], start_stop["IPaddr2"], "-"),
    ]
    bench.table(f"vip vs IPaddr2 ({ADDRESS} on a veth in a namespace; ms, median)",
                ["action", "vip", "reference", "vip / reference", "target", "met"], rows)


def row(what: str, ours: float, theirs: float, target: str, limit: float | None = None) -> list[str]:
    met = "-" if limit is None else ("yes" if ours <= limit * theirs else "NO")
    return [what, ms(ours), ms(theirs), ratio(ours, theirs), target, met]
