"""``make bench-cluster``: failover time after crashing the VIP holder, on a real namespace cluster.

For each corosync timing (``token: 1000`` with the default coefficient, the
project's "default timing"; ``token: 500``, ``token_coefficient: 0``; optionally
corosync 3.1's built-in ``token: 3000``) and
each VIP agent (ours, resource-agents' IPaddr2), one cluster: crash the node
holding ``public-vip`` N times and measure from the crash until a TCP connect
to the VIP (from the bridge namespace) is answered by a survivor. Fencing is
on; a fenced node boots again only after a delay, so that its return does not
disturb the failover being measured.

    python -m nscluster.bench [--crashes 10] [--agents vip,IPaddr2] [--timings default,fast,builtin]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Sequence

from nscluster import config, health
from nscluster.cluster import Cluster, ClusterSpec
from nscluster.database import SharedDatabase

AGENTS = {"vip": config.OUR_VIP, "IPaddr2": config.IPADDR2}
# "db": the database group (Filesystem on shared storage, our mysql, db-vip); the time measured is
# from the crash of the database holder until an INSERT through the database VIP commits.
DATABASE_SERIES = "db"
TIMINGS: dict[str, tuple[int | None, int | None]] = {
    "builtin": (None, None),
    "default": (1000, None),
    "fast": (500, 0),
}
TIMING_LABELS = {"builtin": "corosync 3.1 built-in (token 3000 + 650)",
                 "default": "token 1000 (+ coefficient 650)",
                 "fast": "token 500, token_coefficient 0"}
REBOOT_DELAY_S = 10.0


@dataclasses.dataclass
class Series:
    agent: str
    timing: str
    failovers: list[float] = dataclasses.field(default_factory=list)
    fences: list[float] = dataclasses.field(default_factory=list)

    def row(self) -> list[str]:
        return [self.agent, TIMING_LABELS[self.timing], str(len(self.failovers)),
                f"{statistics.median(self.failovers):.2f}", f"{max(self.failovers):.2f}",
                f"{min(self.failovers):.2f}", f"{statistics.median(self.fences):.2f}"]


HEADER = ["series", "corosync timing", "crashes", "median s", "max s", "min s", "fenced after (median s)"]


def progress_printer(prefix: str) -> tuple[float, object]:
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"  [{prefix} {time.monotonic() - started:6.1f} s] {message}", flush=True)

    return started, progress


def measure(agent: str, timing: str, crashes: int, verbose: bool) -> Series:
    token, coefficient = TIMINGS[timing]
    spec = ClusterSpec(token_ms=token, token_coefficient_ms=coefficient, fence_reboot_delay_s=REBOOT_DELAY_S)
    series = Series(agent, timing)
    _started, progress = progress_printer(f"{agent}/{timing}")
    with Cluster(spec, progress=progress if verbose else None) as cluster:  # type: ignore[arg-type]
        database = SharedDatabase(cluster) if agent == DATABASE_SERIES else None
        if database is not None:
            database.prepare(via=cluster.any_running_node())
        stack = config.Stack(vip_agent=AGENTS.get(agent, config.OUR_VIP), dummy_clone=False,
                             site_overrides=database.overrides() if database else {})
        config.push(cluster, stack)
        health.wait_healthy(cluster, stack)
        for number in range(1, crashes + 1):
            time.sleep(2.0)  # let the cluster settle after the previous round
            if database is None:
                victim, new_holder, crashed_at, seconds = health.crash_and_time(cluster)
            else:
                victim, new_holder, crashed_at, seconds = crash_database_holder(cluster, database, number)
            health.wait_fenced(cluster, victim, crashed_at)
            fenced_after = cluster.fenced(victim, since=crashed_at)[0].at - crashed_at
            series.failovers.append(seconds)
            series.fences.append(fenced_after)
            print(f"  {agent}/{timing} crash {number}/{crashes}: {victim} -> {new_holder}: answered after "
                  f"{seconds:.2f} s (fenced after {fenced_after:.2f} s)", flush=True)
            health.wait_healthy(cluster, stack)
    return series


def crash_database_holder(cluster: Cluster, database: SharedDatabase,
                          number: int) -> tuple[str, str, float, float]:
    (holder,) = cluster.status().where("mysql")
    crashed_at = cluster.crash(holder)
    committed_at = database.write(cluster.spec.vip_address(1), row_id=number)
    (new_holder,) = cluster.status().where("mysql")
    return holder, new_holder, crashed_at, committed_at - crashed_at


def table(rows: Sequence[Series]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(series.row()) + " |" for series in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nscluster.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--crashes", type=int, default=10)
    parser.add_argument("--agents", default="db,vip,IPaddr2",
                        help="db: first write through the database VIP; vip/IPaddr2: the public VIP answers")
    parser.add_argument("--timings", default="default,fast")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    results = []
    for timing in args.timings.split(","):
        for agent in args.agents.split(","):
            print(f"== {agent}, {TIMING_LABELS[timing]}: {args.crashes} crashes of the VIP holder",
                  flush=True)
            results.append(measure(agent, timing, args.crashes, args.verbose))
    print("\n### Failover after a crash (db: of the database holder, until an INSERT through db-vip "
          "commits; vip/IPaddr2: of the public VIP holder, until a TCP connect to it is accepted)\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
