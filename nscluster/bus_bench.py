"""``make bench-cluster BENCH_CLUSTER_ARGS=--bus``: the message bus after a crash of a broker's node.

Per corosync timing, one namespace cluster running the profile's ``rabbitmq`` clone under our agent,
the three brokers clustered (``nscluster.messaging``, as tests/test_cluster_messaging.py builds it).
A confirmed publisher listing all three brokers streams into a quorum queue (20 messages a second)
and a consumer drains it, both in the cluster's client namespace. Then, N times: crash the node
whose broker leads the queue (power off without warning; fencing on, the node boots again after
``REBOOT_DELAY_S``), measure the seconds from the crash to the confirm of the first message the
publisher sent after it (a confirm in flight at the crash is not one: ``published_after_confirmed``),
wait until the node is back, its resources running and its broker a running member of the
RabbitMQ cluster again. At the end the publisher stops and the consumer gets what is left:
confirmed vs consumed, lost = confirmed but never consumed.

The reference series (``--reference``, or ``--series ours,reference``): the same cluster, client,
crashes and counts with the profile's broker clone under resource-agents' ``ocf:heartbeat:rabbitmq-
cluster`` (``nscluster/messaging_reference.py`` says what it needs). For both series each crash also
records whether the crashed node's data directory survived (its inode and a marker file written
before the crash) and the quorum queue's members once the node is back. A series that cannot form
its cluster, or a crash after which no confirm comes, ends its row with the reason.

With ``--rpc`` the cluster also runs what nova's RPC path needs (the profile's database, keystone,
nova-api, and nova-conductor and nova-scheduler on every node, as tests/test_cluster_openstack.py
builds them; placement beside the cluster, ``nscluster/nova.py``), and a second client in the client
namespace calls oslo.messaging's ``oslo_rpc_server_ping`` on the ``conductor`` and ``scheduler``
topics every ``PING_INTERVAL_S`` (``nscluster/rpcclient.py``, the services' heartbeat settings). Each
crash then takes a node that does not hold the database, after RabbitMQ's leadership transfer moved
the bench queue's and both RPC queues' leaders there, and also measures (b): the seconds from the
crash until a ping sent after it has been answered on both topics.

    python -m nscluster.bus_bench [--reference | --series ours,reference] [--crashes 10]
                                  [--timings default,fast] [--rpc] [--verbose]

(``make bench-cluster BENCH_CLUSTER_ARGS='--bus ...'`` runs this module.)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from nscluster import config, database, health, openstack
from nscluster.broker_protocol import REQUEST_DIR
from nscluster.cluster import Cluster, ClusterError, ClusterSpec, wait_until
from nscluster.messaging import RABBIT_DIRS, AmqpClient, RabbitInCluster, erlang_node
from nscluster.messaging_reference import ReferenceRabbitInCluster
from nscluster.nova import (
    NOVA_DIRS,
    RPC_TOPICS,
    NovaInCluster,
    PlacementBesideCluster,
    lead_queues_from,
    pongs,
)

QUEUE = "bench-bus"
INTERVAL_S = 0.05
# Bounds with margin on a busy 2-CPU machine running three Erlang VMs.
# The first confirm after a crash: 2-14 s measured for ours; the bound leaves a series that only
# recovers once the crashed node is back (a quorum queue without a majority) the time to show it.
FIRST_CONFIRM_S = 300
REJOIN_S = 300
DRAIN_S = 120
SERIES = {"ours": "ours: `ocf:openstack:rabbitmq` clone, 3 clustered brokers, quorum queue",
          "reference": "reference: `ocf:heartbeat:rabbitmq-cluster` clone (ordered, notify), 3 clustered "
                       "brokers, quorum queue"}
PING_INTERVAL_S = 0.25
PING_TIMEOUT_S = 10.0
KEYSTONE_WORKERS = 2  # nothing asks for tokens during the crashes but the monitors


@dataclasses.dataclass
class BusSeries:
    timing: str
    label: str
    first_confirms: list[float] = dataclasses.field(default_factory=list)
    fences: list[float] = dataclasses.field(default_factory=list)
    members_again: list[float] = dataclasses.field(default_factory=list)
    confirmed: int = 0
    consumed: int = 0
    lost: int = 0
    formed_s: float = 0.0
    kind: str = "ours"
    crashes: int = 0  # asked for
    wiped: list[bool] = dataclasses.field(default_factory=list)  # per crash: the victim's data replaced
    queue_members: list[int] = dataclasses.field(default_factory=list)  # before the first crash, then
    # after each once the victim is back
    failure: str = ""  # why the series ended early (empty: it did not)
    left: int | None = None  # messages the queue still held after the drain, when some were missing
    rpc: bool = False  # nova's RPC path measured too
    round_trips: list[float] = dataclasses.field(default_factory=list)  # (b) per crash

    def row(self) -> list[str]:
        first = self.first_confirms
        measured = [f"{statistics.median(first):.2f}", f"{max(first):.2f}", f"{min(first):.2f}"] if first \
            else ["none", "", ""]
        data = ""
        if self.wiped:
            data = (f"replaced (wiped) {sum(self.wiped)} of {len(self.wiped)}" if any(self.wiped)
                    else f"kept {len(self.wiped)} of {len(self.wiped)}")
        counted = self.confirmed or self.consumed
        held = f" (the queue held {self.left} after the drain)" if self.left is not None else ""
        lost = f"{self.lost}{held}"
        counts = [str(self.confirmed), str(self.consumed), lost] if counted else ["", "", ""]
        return [SERIES[self.kind], self.label, f"{len(first)} of {self.crashes}", *measured,
                f"{statistics.median(self.fences):.2f}" if self.fences else "",
                f"{statistics.median(self.members_again):.1f}" if self.members_again else "",
                data, " → ".join(map(str, self.queue_members)), *counts, self.failure or "",
                *self.rpc_cells()]

    def rpc_cells(self) -> list[str]:
        trips = self.round_trips
        if not self.rpc:
            return ["not measured", ""]
        if not trips:
            return ["none", ""]
        return [f"{statistics.median(trips):.2f} ({len(trips)})", f"{max(trips):.2f}"]


HEADER = ["series", "corosync timing", "crashes measured", "(a) first confirm median s", "(a) max s",
          "(a) min s", "fenced after (median s)", "broker a member again after (median s)",
          "crashed node's data", "quorum queue members (at first, after each crash)", "confirmed", "consumed",
          "confirmed lost", "ended early", "(b) nova RPC round trip median s (crashes)", "(b) max s"]


def everyone(cluster: Cluster) -> list[str]:
    return sorted(erlang_node(name) for name in cluster.nodes)


@contextlib.contextmanager
def built(spec: ClusterSpec, progress: object | None) -> Iterator[Cluster]:
    """A namespace cluster, torn down at the end; NSCLUSTER_KEEP_LOGS=DIR keeps its nodes' logs there."""
    cluster = Cluster(spec, progress=progress)  # type: ignore[arg-type]
    with cluster:
        try:
            yield cluster
        finally:
            keep = os.environ.get("NSCLUSTER_KEEP_LOGS")
            if keep:
                shutil.copytree(spec.state_dir, Path(keep) / spec.run_id, dirs_exist_ok=True, symlinks=True,
                                ignore=shutil.ignore_patterns(REQUEST_DIR, "*.img"))


@dataclasses.dataclass
class NovaPath:
    """nova's RPC path beside the bus (``--rpc``): its services and the pinging client."""
    compute: NovaInCluster
    placement: PlacementBesideCluster
    pinger: AmqpClient | None = None

    def answered(self, topic: str, sent_after: float) -> list[float]:
        """Answer times of the pings to ``topic`` sent after ``sent_after``."""
        return pongs(self.pinger, topic, sent_after) if self.pinger is not None else []

    def stop(self) -> None:
        if self.pinger is not None:
            self.pinger.stop()
        self.placement.stop()


def bus_only(cluster: Cluster, rabbit: RabbitInCluster) -> config.Stack:
    """The brokers' clone alone, pushed and running."""
    rabbit.prepare()
    stack = config.Stack(site_overrides=rabbit.overrides())
    config.push(cluster, stack)
    health.wait_healthy(cluster, stack, timeout_s=REJOIN_S)
    return stack


def with_nova(cluster: Cluster, rabbit: RabbitInCluster, made: dict[str, NovaPath]) -> config.Stack:
    """The database, keystone, the brokers, placement (beside the cluster) and nova-api pushed and
    running; then nova-conductor and nova-scheduler once the brokers formed (as the tests build them).
    ``made["nova"]`` is set as soon as placement exists, for the caller to stop it."""
    db = database.Database(cluster)
    db.prepare(via=cluster.any_running_node())
    keystone = openstack.KeystoneInCluster(cluster, db_port=database.PORT, workers=KEYSTONE_WORKERS)
    placement = PlacementBesideCluster(cluster, keystone)
    compute = NovaInCluster(cluster, db_port=database.PORT, keystone=keystone, rabbit=rabbit,
                            placement=placement)
    made["nova"] = NovaPath(compute, placement)
    tables: dict[str, dict[str, object]] = db.overrides()
    stack = openstack.stack_with_keystone(cluster, tables, keystone, database.SOCKET, rabbit, placement,
                                          compute)
    config.push(cluster, stack)
    health.wait_healthy(cluster, stack, timeout_s=REJOIN_S)
    rabbit.wait_formed()
    stack = dataclasses.replace(stack, site_overrides={**stack.site_overrides, **compute.rpc_overrides()})
    config.push(cluster, stack)
    health.wait_healthy(cluster, stack, timeout_s=REJOIN_S)
    return stack


def cluster_spec(token: int | None, coefficient: int | None, reboot_delay_s: float, rpc: bool) -> ClusterSpec:
    fields: dict[str, object] = {"private_dirs": ("/root", *RABBIT_DIRS)}
    if rpc:
        fields = database.spec_fields(private_dirs=(*openstack.PRIVATE_DIRS, *NOVA_DIRS, *RABBIT_DIRS))
    return ClusterSpec(token_ms=token, token_coefficient_ms=coefficient,
                       fence_reboot_delay_s=reboot_delay_s, **fields)  # type: ignore[arg-type]


def measure_bus(timing: str, label: str, token: int | None, coefficient: int | None, crashes: int,
                reboot_delay_s: float, progress: object | None, kind: str = "ours",
                rpc: bool = False) -> BusSeries:
    """One cluster, ``crashes`` crashes of the leader's node; ``kind``: ours or the reference agent;
    ``rpc``: nova's RPC path too. Raises ClusterError when the cluster or its brokers never formed."""
    spec = cluster_spec(token, coefficient, reboot_delay_s, rpc)
    series = BusSeries(timing, label, kind=kind, crashes=crashes, rpc=rpc)
    name = f"bus/{kind}/{timing}"
    made: dict[str, NovaPath] = {}
    with built(spec, progress) as cluster:
        rabbit = ReferenceRabbitInCluster(cluster) if kind == "reference" else RabbitInCluster(cluster)
        try:
            stack = with_nova(cluster, rabbit, made) if rpc else bus_only(cluster, rabbit)
            series.formed_s = rabbit.wait_formed()
            print(f"  {name}: brokers formed one cluster {series.formed_s:.1f} s after the healthy cluster"
                  + (f" (start failures on the way: {'; '.join(rabbit.formation_failures)})"
                     if rabbit.formation_failures else ""), flush=True)
            nova = made.get("nova")
            if nova is not None:
                nova.pinger = nova.compute.ping_client(
                    seconds=crashes * 900 + 900, interval_s=PING_INTERVAL_S, call_timeout_s=PING_TIMEOUT_S)
                began = time.monotonic()
                wait_until(lambda: all(nova.answered(topic, began) for topic in RPC_TOPICS.values()),
                           "a pong from conductor and scheduler before the first crash", 120, poll_s=0.5)
            crash_series(cluster, rabbit, stack, series, nova)
        finally:
            if "nova" in made:
                made["nova"].stop()
    return series


def crash_series(cluster: Cluster, rabbit: RabbitInCluster, stack: config.Stack, series: BusSeries,
                 nova: NovaPath | None) -> None:
    """The publisher and consumer, the crashes, the drain and the count."""
    name = f"bus/{series.kind}/{series.timing}"
    crashes = series.crashes
    publisher = rabbit.client("publish", QUEUE, seconds=crashes * 900 + 900, interval_s=INTERVAL_S)
    consumer: AmqpClient | None = None
    try:
        publisher.wait_confirmed(20)
        consumer = rabbit.client("consume", QUEUE)
        publisher.wait_confirmed(60)
        members = rabbit.queue_members(QUEUE)
        series.queue_members.append(len(members))
        print(f"  {name}: quorum queue members {members}", flush=True)
        for number in range(1, crashes + 1):
            try:
                crash_leader(cluster, rabbit, stack, publisher, series, number, crashes, consumer, nova)
            except ClusterError as error:  # keep what was measured; the row says why it ended
                series.failure = f"crash {number}: {error}"
                print(f"  {name} crash {number}/{crashes} failed, series ends: {error}; publisher: "
                      f"{publisher.tail(4)}", flush=True)
                break
        try:
            publisher.wait_confirmed(len(publisher.confirmed) + 40)
        except ClusterError as error:
            series.failure = "; ".join(filter(None, (series.failure, f"at the end: {error}")))
    finally:
        drain(publisher, consumer, series)
        if series.lost:  # missing from the consumer: still in the queue, or gone?
            with contextlib.suppress(ClusterError):
                series.left = rabbit.queue_info(QUEUE).get("messages")
            print(f"  {name}: the queue holds {series.left} messages after the drain", flush=True)


def choose_victim(cluster: Cluster, rabbit: RabbitInCluster, nova: NovaPath | None) -> str:
    """The node to crash: the bench queue's leader; with nova, a node without the database, after the
    leaders of the bench queue and both RPC queues were moved there."""
    wait_until(lambda: bool(rabbit.queue_leader(QUEUE)), f"a leader for {QUEUE}", 60, poll_s=1)
    leader = rabbit.queue_leader(QUEUE)
    if nova is None:
        return leader
    (db_holder,) = cluster.status().where("mysql")
    victim = leader if leader != db_holder else sorted(set(cluster.nodes) - {db_holder})[0]
    lead_queues_from(rabbit, victim, (QUEUE, *RPC_TOPICS.values()))
    return victim


def round_trip_after(nova: NovaPath, crashed_at: float) -> float:
    """Seconds from the crash until a ping sent after it was answered on every RPC topic."""
    wait_until(lambda: all(nova.answered(topic, crashed_at) for topic in RPC_TOPICS.values()),
               "a nova RPC round trip (conductor and scheduler) after the crash", FIRST_CONFIRM_S, poll_s=0.1)
    return max(nova.answered(topic, crashed_at)[0] for topic in RPC_TOPICS.values()) - crashed_at


def crash_leader(cluster: Cluster, rabbit: RabbitInCluster, stack: config.Stack, publisher: AmqpClient,
                 series: BusSeries, number: int, crashes: int,
                 consumer: AmqpClient | None = None, nova: NovaPath | None = None) -> None:
    """Crash the node holding the queue's leader; time the first confirm after it (and with nova the
    first RPC round trip); wait until the node is back and its broker a running member again."""
    victim = choose_victim(cluster, rabbit, nova)
    confirms = [e for e in list(publisher.events) if e.get("event") == "confirmed"]
    through = str(confirms[-1].get("broker", "")) if confirms else ""
    through_victim = through == cluster.nodes[victim].address
    members_before = rabbit.queue_members(QUEUE, via=victim)
    mark = rabbit.data_mark(victim)
    before = len(publisher.confirmed)
    crashed_at = cluster.crash(victim)
    wait_until(lambda: published_after_confirmed(publisher, crashed_at) is not None,
               f"a confirm after the crash of {victim} (queue members before it: {len(members_before)})",
               FIRST_CONFIRM_S, poll_s=0.05)
    seconds = (published_after_confirmed(publisher, crashed_at) or crashed_at) - crashed_at
    in_flight = (publisher.confirmed_after(crashed_at) or crashed_at) - crashed_at
    series.first_confirms.append(seconds)
    rpc = ""
    if nova is not None:
        round_trip = round_trip_after(nova, crashed_at)
        series.round_trips.append(round_trip)
        firsts = {topic: nova.answered(topic, crashed_at)[0] - crashed_at for topic in RPC_TOPICS.values()}
        rpc = "; nova RPC round trip after " + ", ".join(f"{t} {v:.2f} s" for t, v in firsts.items())
    health.wait_fenced(cluster, victim, crashed_at)
    fenced_after = cluster.fenced(victim, since=crashed_at)[0].at - crashed_at
    series.fences.append(fenced_after)
    health.wait_healthy(cluster, stack, timeout_s=REJOIN_S)
    wait_until(lambda: rabbit.running_nodes() == everyone(cluster),
               f"{victim}'s broker a running member again", REJOIN_S, poll_s=1)
    member_after = time.monotonic() - crashed_at
    series.members_again.append(member_after)
    wiped = rabbit.data_replaced(victim, mark)
    series.wiped.append(wiped)
    members = rabbit.queue_members(QUEUE)
    series.queue_members.append(len(members))
    # Confirmed before the crash and still not consumed now (the consumer keeps the queue near empty).
    before_crash = {int(e["id"]) for e in list(publisher.events)  # type: ignore[call-overload]
                    if e.get("event") == "confirmed" and float(e["t"]) < crashed_at}  # type: ignore[arg-type]
    missing = len(before_crash - consumer.consumed) if consumer is not None else 0
    steps = where_the_time_went(publisher, crashed_at, crashed_at + seconds)
    print(f"  bus/{series.kind}/{series.timing} crash {number}/{crashes}: {victim} (the queue's leader; the "
          f"publisher {'was' if through_victim else 'was not'} connected to it, {before} confirmed before; "
          f"queue members {len(members_before)}): first confirm after {seconds:.2f} s, fenced after "
          f"{fenced_after:.2f} s, its broker a member again after {member_after:.1f} s, its data "
          f"{'replaced (wiped)' if wiped else 'kept'}, queue members now {members}; {steps}"
          + (f"; a confirm in flight at the crash came back after {in_flight:.2f} s" if in_flight < seconds
             else "") + f"; confirmed before the crash and not consumed by now: {missing}{rpc}", flush=True)


def published_after_confirmed(publisher: AmqpClient, since: float) -> float | None:
    """When the first message published after ``since`` was confirmed (None: not yet).

    The publisher sends one message at a time with increasing ids, the next once the last is answered
    (confirmed, refused or given up): with L the last id answered by ``since``, L + 1 may have been
    sent before it (its confirm says nothing about the crash; counting it gave 0.00 s), L + 2 and on
    were sent after. (If L + 1 was in fact sent after, this is one message, ~0.05 s, late.)"""
    events = list(publisher.events)
    answered = [int(e["id"]) for e in events  # type: ignore[call-overload]
                if e.get("event") in ("confirmed", "nacked") and float(e["t"]) <= since]  # type: ignore[arg-type]
    last = max(answered, default=0)
    times = [float(e["t"]) for e in events  # type: ignore[arg-type]
             if e.get("event") == "confirmed" and int(e["id"]) >= last + 2  # type: ignore[call-overload]
             and float(e["t"]) > since]  # type: ignore[arg-type]
    return min(times) if times else None


def where_the_time_went(publisher: AmqpClient, since: float, until: float) -> str:
    """The publisher's events between the crash and its first confirm after it, timed from the crash."""
    events = [e for e in list(publisher.events)
              if e.get("event") in ("lost", "connected", "nacked") and since < float(e["t"]) <= until]  # type: ignore[arg-type]
    parts = [f"{e['event']} {float(e['t']) - since:.2f} s"  # type: ignore[arg-type]
             + (f" ({e['broker']})" if e.get("event") == "connected" else "") for e in events
             if e.get("event") != "nacked"]
    nacked = [float(e["t"]) - since for e in events if e.get("event") == "nacked"]  # type: ignore[arg-type]
    if nacked:
        parts.append(f"{len(nacked)} nacked ({nacked[0]:.2f}-{nacked[-1]:.2f} s)")
    return "publisher: " + (", ".join(parts) or "no event before the confirm")


def drain(publisher: AmqpClient, consumer: AmqpClient | None, series: BusSeries) -> None:
    """Stop the publisher; let the consumer take every confirmed id (or DRAIN_S pass); count."""
    publisher.stop()
    confirmed = publisher.confirmed
    if consumer is not None:
        end = time.monotonic() + DRAIN_S
        while not confirmed <= consumer.consumed and time.monotonic() < end:  # what is missing is counted
            time.sleep(0.5)
        consumer.stop()
    consumed = consumer.consumed if consumer is not None else set()
    series.confirmed, series.consumed = len(confirmed), len(consumed)
    series.lost = len(confirmed - consumed)
    print(f"  bus/{series.kind}/{series.timing}: {series.confirmed} confirmed, {series.consumed} distinct "
          f"consumed, {series.lost} confirmed lost", flush=True)


def table(rows: list[BusSeries]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in series.row()) + " |" for series in rows
              if series.first_confirms or series.failure]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from nscluster.bench import REBOOT_DELAY_S, TIMING_LABELS, TIMINGS, progress_printer

    parser = argparse.ArgumentParser(prog="python -m nscluster.bus_bench",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bus", action="store_true", help="accepted as make bench-cluster passes it")
    parser.add_argument("--reference", action="store_true",
                        help="also the reference series, ocf:heartbeat:rabbitmq-cluster "
                             "(= --series ours,reference)")
    parser.add_argument("--series", default="", help="comma-separated: ours, reference (default: ours)")
    parser.add_argument("--crashes", type=int, default=10)
    parser.add_argument("--timings", default="default,fast")
    parser.add_argument("--rpc", action="store_true",
                        help="also nova's RPC round trip: database, keystone, nova-api, nova-conductor and "
                             "nova-scheduler in the cluster, crashes of a node without the database")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    kinds = [k for k in args.series.split(",") if k] or ["ours", *(["reference"] if args.reference else [])]
    unknown = [k for k in kinds if k not in SERIES]
    if unknown:
        parser.error(f"unknown series {', '.join(unknown)} (known: {', '.join(SERIES)})")
    results = []
    for timing in args.timings.split(","):
        token, coefficient = TIMINGS[timing]
        for kind in kinds:
            print(f"== the message bus, {kind}, {TIMING_LABELS[timing]}: {args.crashes} crashes of the queue "
                  "leader's node", flush=True)
            _started, progress = progress_printer(f"bus/{kind}/{timing}")
            errors = []
            for attempt in (1, 2):  # a cluster whose brokers never formed is built once more
                try:
                    results.append(measure_bus(timing, TIMING_LABELS[timing], token, coefficient,
                                               args.crashes, REBOOT_DELAY_S,
                                               progress if args.verbose else None, kind, args.rpc))
                    break
                except ClusterError as error:
                    errors.append(str(error))
                    print(f"  bus/{kind}/{timing} failed (cluster {attempt} of 2): {error}", flush=True)
            else:
                results.append(BusSeries(timing, TIMING_LABELS[timing], kind=kind, crashes=args.crashes,
                                         rpc=args.rpc,
                                         failure="no cluster measured (2 built): " + " / ".join(errors)))
    print("\n### The message bus after a crash of the node holding the quorum queue's leader (a confirmed "
          "publisher listing all three brokers, 20 messages a second, and a consumer)\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
