"""``make bench-cluster``: failover after crashing the database or VIP holder, on a real namespace cluster.

For each corosync timing (``token: 1000`` with the default coefficient, the
project's "default timing"; ``token: 500``, ``token_coefficient: 0``; optionally
corosync 3.1's built-in ``token: 3000``) and each series, one cluster, crashed
N times:

- ``db``: the profile's database (three DRBD replicas on the test double,
  ``ocf:openstack:drbd`` promotable clone, ``ocf:heartbeat:Filesystem``, our
  ``mysql``, our ``vip``) and keystone's clone behind the public VIP; crash the
  database holder and measure until an INSERT through the database VIP commits
  and until keystone issues a token through the public VIP (both clients start
  at the crash);
- ``db-shell``: the reference, the same DRBD clone and Filesystem with
  resource-agents' shell agents for the rest (``ocf:heartbeat:mysql``,
  ``ocf:heartbeat:IPaddr2``), with the same keystone, measured the same way;
- ``vip`` / ``IPaddr2``: crash the node holding ``public-vip`` and measure until
  a TCP connect to it is answered by a survivor.

Clients run in the bridge namespace only. Fencing is on; a fenced node boots
again only after a delay, so that its return does not disturb the failover
being measured.

    python -m nscluster.bench [--crashes 10] [--agents db,db-shell,vip,IPaddr2]
                              [--timings default,fast,token1000,builtin]
    python -m nscluster.bench --front [--rounds 2]
    python -m nscluster.bench --bus ...   (nscluster.bus_bench's options)

``--front``: the API front, today's profile (the public VIP on a keystone) against the HAProxy
profile, same machine, same run: failed token requests (one every 0.5 s) per rolling standby of the
three nodes and per ``kill -9`` of keystone on the VIP's holder, the first token after a crash of the
VIP's holder, and what the proxy adds per token request (median, p99) against keystone directly.

``--bus``: the message bus (``nscluster/bus_bench.py``): crash of the node holding a quorum queue's
leader → the first confirmed publish of a client listing all three brokers; messages lost.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Sequence

from nscluster import config, haproxy, health, maintenance, openstack
from nscluster import database as db_stack
from nscluster.cluster import Cluster, ClusterError, ClusterSpec, run_cmd

# Series: the VIP agent of both VIPs, and for the database series the mysql agent of the db group.
AGENTS = {"vip": config.OUR_VIP, "IPaddr2": config.IPADDR2, "db": config.OUR_VIP, "db-shell": config.IPADDR2}
DATABASE_SERIES = {"db": db_stack.OUR_MYSQL, "db-shell": db_stack.SHELL_MYSQL}
TIMINGS: dict[str, tuple[int | None, int | None]] = {
    "builtin": (None, None),
    "default": (1000, None),
    "token1000": (1000, 0),
    "fast": (500, 0),
}
TIMING_LABELS = {"builtin": "corosync 3.1 built-in (token 3000 + 650)",
                 "default": "token 1000 (+ coefficient 650)",
                 "token1000": "token 1000, token_coefficient 0",
                 "fast": "token 500, token_coefficient 0"}
SERIES_LABELS = {
    "db": "`db`, ours: drbd → Filesystem → openstack:mysql → openstack:vip, first committed write",
    "db-shell": "`db-shell`, reference: drbd → Filesystem → heartbeat:mysql → IPaddr2, first committed write",
    "vip": "`ocf:openstack:vip` answers",
    "IPaddr2": "`ocf:heartbeat:IPaddr2` answers",
}
REBOOT_DELAY_S = 10.0
WRITE_RATE_S = 5.0  # one client streaming commits through the database VIP, before the crashes
WRITE_RATE_FIRST_ID = 1_000_000


@dataclasses.dataclass
class Series:
    agent: str
    timing: str
    failovers: list[float] = dataclasses.field(default_factory=list)
    fences: list[float] = dataclasses.field(default_factory=list)
    tokens: list[float] = dataclasses.field(default_factory=list)
    write_rate: float | None = None

    def row(self) -> list[str]:
        tokens = self.tokens
        token = [f"{statistics.median(tokens):.2f}", f"{max(tokens):.2f}"] if tokens else ["", ""]
        return [SERIES_LABELS[self.agent], TIMING_LABELS[self.timing], str(len(self.failovers)),
                f"{statistics.median(self.failovers):.2f}", f"{max(self.failovers):.2f}",
                f"{min(self.failovers):.2f}", *token, f"{statistics.median(self.fences):.2f}",
                "" if self.write_rate is None else f"{self.write_rate:.0f}"]


HEADER = ["series", "corosync timing", "crashes", "median s", "max s", "min s", "token median s",
          "token max s", "fenced after (median s)", "commits/s"]


def progress_printer(prefix: str) -> tuple[float, object]:
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"  [{prefix} {time.monotonic() - started:6.1f} s] {message}", flush=True)

    return started, progress


def measure(agent: str, timing: str, crashes: int, verbose: bool) -> Series:
    token, coefficient = TIMINGS[timing]
    mysql_agent = DATABASE_SERIES.get(agent)
    extra = db_stack.spec_fields(private_dirs=openstack.PRIVATE_DIRS) if mysql_agent else {}
    spec = ClusterSpec(token_ms=token, token_coefficient_ms=coefficient, fence_reboot_delay_s=REBOOT_DELAY_S,
                       **extra)  # type: ignore[arg-type]
    series = Series(agent, timing)
    _started, progress = progress_printer(f"{agent}/{timing}")
    with Cluster(spec, progress=progress if verbose else None) as cluster:  # type: ignore[arg-type]
        database = db_stack.Database(cluster) if mysql_agent else None
        keystone = None
        stack = config.Stack(vip_agent=AGENTS[agent], dummy_clone=False)
        if database is not None and mysql_agent is not None:
            database.prepare(via=cluster.any_running_node())
            keystone = openstack.KeystoneInCluster(cluster, db_port=db_stack.PORT)
            stack = openstack.stack_with_keystone(cluster, database.overrides(mysql_agent), keystone,
                                                  db_stack.SOCKET, base=stack)
        config.push(cluster, stack)
        health.wait_healthy(cluster, stack)
        if database is not None:
            series.write_rate = write_rate(cluster, database)
        for number in range(1, crashes + 1):
            try:
                crash_once(cluster, database, keystone, series, number, crashes)
                health.wait_healthy(cluster, stack)
            except ClusterError as error:  # keep what was measured; the report says how many
                print(f"  {agent}/{timing} crash {number}/{crashes} failed, series ends: {error}", flush=True)
                break
    return series


def write_rate(cluster: Cluster, database: db_stack.Database) -> float:
    """Commits per second of one client inserting rows through the database VIP, one commit each."""
    argv = database.writer_argv("stream", cluster.spec.vip_address(1), WRITE_RATE_S, WRITE_RATE_FIRST_ID)
    return len(run_cmd(argv, timeout=WRITE_RATE_S + 60).stdout.split()) / WRITE_RATE_S


def crash_once(cluster: Cluster, database: db_stack.Database | None,
               keystone: openstack.KeystoneInCluster | None, series: Series, number: int,
               crashes: int) -> None:
    time.sleep(2.0)  # let the cluster settle after the previous round
    token = ""
    if database is None or keystone is None:
        victim, new_holder, crashed_at, seconds = health.crash_and_time(cluster)
    else:
        victim, new_holder, crashed_at, seconds, token_s = crash_database_holder(cluster, database, keystone,
                                                                                 number)
        series.tokens.append(token_s)
        token = f", keystone token after {token_s:.2f} s"
    health.wait_fenced(cluster, victim, crashed_at)
    fenced_after = cluster.fenced(victim, since=crashed_at)[0].at - crashed_at
    series.failovers.append(seconds)
    series.fences.append(fenced_after)
    print(f"  {series.agent}/{series.timing} crash {number}/{crashes}: {victim} -> {new_holder}: "
          f"answered after {seconds:.2f} s{token} (fenced after {fenced_after:.2f} s)", flush=True)


def crash_database_holder(cluster: Cluster, database: db_stack.Database,
                          keystone: openstack.KeystoneInCluster,
                          number: int) -> tuple[str, str, float, float, float]:
    """Crash the database holder; (victim, new holder, crash time, seconds to the first commit through
    the database VIP, seconds to the first keystone token through the public VIP)."""
    (holder,) = cluster.status().where("mysql")
    crashed_at = cluster.crash(holder)
    token_client = keystone.start_waiting_token()
    try:
        committed_at = database.write(cluster.spec.vip_address(1), row_id=number)
        token_at = openstack.finish_waiting_token(token_client)
    finally:
        if token_client.poll() is None:
            token_client.kill()
            token_client.wait()
    placed = cluster.wait_status(lambda status: len(status.where("mysql")) == 1, "mysql placed")
    (new_holder,) = placed.where("mysql")
    return holder, new_holder, crashed_at, committed_at - crashed_at, token_at - crashed_at


def table(rows: Sequence[Series]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(series.row()) + " |" for series in rows]
    return "\n".join(lines)


FRONTS = {"vip-on-keystone": "public VIP on a keystone (openstack-3ctl)",
          "haproxy": "HAProxy on every node (openstack-3ctl-haproxy)"}
FRONT_HEADER = ["front", "rolling standby: failed / requests", "kill -9 keystone: failed / requests",
                "VIP holder crash → first token s", "token median s (direct → through the VIP)",
                "token p99 s (direct → through the VIP)"]


def measure_front(front: str, rounds: int, verbose: bool) -> list[str]:
    """One cluster with the database and keystone behind ``front``; the row of FRONT_HEADER."""
    spec = ClusterSpec(fence_reboot_delay_s=REBOOT_DELAY_S,
                       **db_stack.spec_fields(private_dirs=(*openstack.PRIVATE_DIRS,
                                                            *haproxy.PRIVATE_DIRS)))  # type: ignore[arg-type]
    _started, progress = progress_printer(front)
    standby, killed, tokens, direct, fronted = [], [], [], [], []
    with Cluster(spec, progress=progress if verbose else None) as cluster:  # type: ignore[arg-type]
        database = db_stack.Database(cluster)
        database.prepare(via=cluster.any_running_node())
        keystone = openstack.KeystoneInCluster(cluster, db_port=db_stack.PORT, workers=4)
        stack = openstack.stack_with_keystone(cluster, database.overrides(), keystone, db_stack.SOCKET)
        serving: tuple[str, ...] = (openstack.RESOURCE,)
        if front == "haproxy":
            stack = haproxy.fronted(cluster, stack)
            serving = (openstack.RESOURCE, haproxy.RESOURCE)
        config.push(cluster, stack)
        health.wait_healthy(cluster, stack)
        for number in range(1, rounds + 1):
            standby.append(maintenance.rolling_standby(cluster, stack, keystone, serving=serving))
            health.wait_healthy(cluster, stack)
            (holder,) = cluster.status().where(config.PUBLIC_VIP)
            killed.append(maintenance.signal_keystone(cluster, keystone, holder, "KILL"))
            health.wait_healthy(cluster, stack)
            (victim,) = cluster.status().where(config.PUBLIC_VIP)
            tokens.append(openstack.seconds_to_token_after_crash(cluster, keystone, victim))
            health.wait_healthy(cluster, stack)
            pair = maintenance.direct_and_fronted_latency(keystone, cluster.nodes[victim].address)
            direct.append(pair[0])
            fronted.append(pair[1])
            print(f"  {front} round {number}/{rounds}: standby {standby[-1].summary()}; kill -9 "
                  f"{killed[-1].summary()}; first token after a crash of the VIP's holder {tokens[-1]:.2f} s",
                  flush=True)
    return [FRONTS[front], failed_of(standby), failed_of(killed), f"{statistics.median(tokens):.2f}",
            latency(direct, fronted, 0.5), latency(direct, fronted, 0.99)]


def failed_of(runs: Sequence[maintenance.Streamed]) -> str:
    return ", ".join(f"{len(run.failed)} / {len(run.answers)}" for run in runs)


def latency(direct: Sequence[maintenance.Streamed], fronted: Sequence[maintenance.Streamed],
            fraction: float) -> str:
    def of(runs: Sequence[maintenance.Streamed]) -> float:
        took = sorted(float(str(a["s"])) for run in runs for a in run.answers if a["ok"])
        return maintenance.percentile(took, fraction) if took else float("nan")

    return f"{of(direct):.3f} → {of(fronted):.3f}"


def front_main(rounds: int, verbose: bool) -> int:
    rows = []
    for front, label in FRONTS.items():
        print(f"== {label}: {rounds} rounds", flush=True)
        try:
            rows.append(measure_front(front, rounds, verbose))
        except ClusterError as error:
            print(f"  {front} failed: {error}", flush=True)
    print("\n### The API front in routine maintenance and faults (token requests every 0.5 s through the "
          "public VIP)\n")
    lines = ["| " + " | ".join(FRONT_HEADER) + " |", "|" + "---|" * len(FRONT_HEADER)]
    print("\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--bus" in argv:  # the message bus's bench has options of its own
        from nscluster import bus_bench

        return bus_bench.main(argv)
    parser = argparse.ArgumentParser(prog="python -m nscluster.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--crashes", type=int, default=10)
    parser.add_argument("--agents", default="db,db-shell,vip,IPaddr2",
                        help="db (ours) / db-shell (resource-agents' mysql + IPaddr2): first write through "
                             "the database VIP after a crash of its holder; vip/IPaddr2: the public VIP "
                             "answers")
    parser.add_argument("--timings", default="default,fast")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--front", action="store_true", help="compare the API fronts (see above)")
    parser.add_argument("--rounds", type=int, default=2, help="--front: rounds of each measurement")
    args = parser.parse_args(argv)
    if args.front:
        return front_main(args.rounds, args.verbose)
    results = []
    for timing in args.timings.split(","):
        for agent in args.agents.split(","):
            print(f"== {SERIES_LABELS[agent]}, {TIMING_LABELS[timing]}: {args.crashes} crashes", flush=True)
            try:
                series = measure(agent, timing, args.crashes, args.verbose)
            except ClusterError as error:
                print(f"  {agent}/{timing} failed: {error}", flush=True)
                continue
            if series.failovers:
                results.append(series)
    print("\n### Failover after a crash (db: of the database holder, until an INSERT through db-vip "
          "commits and until keystone issues a token through the public VIP; vip/IPaddr2: of the public "
          "VIP holder, until a TCP connect to it is accepted)\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
