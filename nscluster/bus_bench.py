"""``make bench-cluster BENCH_CLUSTER_ARGS=--bus``: the message bus after a crash of a broker's node.

Per corosync timing, one namespace cluster running the profile's ``rabbitmq`` clone under our agent,
the three brokers clustered (``nscluster.messaging``, as tests/test_cluster_messaging.py builds it).
A confirmed publisher listing all three brokers streams into a quorum queue (20 messages a second)
and a consumer drains it, both in the cluster's client namespace. Then, N times: crash the node
whose broker leads the queue (power off without warning; fencing on, the node boots again after
``REBOOT_DELAY_S``), measure the seconds from the crash to the publisher's first confirmed publish
after it, wait until the node is back, its resources running and its broker a running member of the
RabbitMQ cluster again. At the end the publisher stops and the consumer gets what is left:
confirmed vs consumed, lost = confirmed but never consumed.

Not measured here: (b) the nova RPC round trip (no nova-conductor or nova-scheduler in the namespace
cluster yet: ``nscluster/nova.py`` runs nova-api only), and the reference ``ocf:heartbeat:rabbitmq-
cluster`` (docs/rabbitmq.md, "Measured", says what it would take).
"""

from __future__ import annotations

import dataclasses
import statistics
import time

from nscluster import config, health
from nscluster.cluster import Cluster, ClusterError, ClusterSpec, wait_until
from nscluster.messaging import RABBIT_DIRS, AmqpClient, RabbitInCluster, erlang_node

QUEUE = "bench-bus"
INTERVAL_S = 0.05
# Bounds with margin on a busy 2-CPU machine running three Erlang VMs.
FIRST_CONFIRM_S = 90
REJOIN_S = 300
DRAIN_S = 120


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

    def row(self) -> list[str]:
        first = self.first_confirms
        return ["ours: `ocf:openstack:rabbitmq` clone, 3 clustered brokers, quorum queue", self.label,
                str(len(first)), f"{statistics.median(first):.2f}", f"{max(first):.2f}", f"{min(first):.2f}",
                f"{statistics.median(self.fences):.2f}" if self.fences else "",
                f"{statistics.median(self.members_again):.1f}" if self.members_again else "",
                str(self.confirmed), str(self.consumed), str(self.lost), "not measured"]


HEADER = ["series", "corosync timing", "crashes", "(a) first confirm median s", "(a) max s", "(a) min s",
          "fenced after (median s)", "broker a member again after (median s)", "confirmed", "consumed",
          "confirmed lost", "(b) nova RPC round trip"]


def everyone(cluster: Cluster) -> list[str]:
    return sorted(erlang_node(name) for name in cluster.nodes)


def measure_bus(timing: str, label: str, token: int | None, coefficient: int | None, crashes: int,
                reboot_delay_s: float, progress: object | None) -> BusSeries:
    spec = ClusterSpec(token_ms=token, token_coefficient_ms=coefficient, fence_reboot_delay_s=reboot_delay_s,
                       private_dirs=("/root", *RABBIT_DIRS))
    series = BusSeries(timing, label)
    with Cluster(spec, progress=progress) as cluster:  # type: ignore[arg-type]
        rabbit = RabbitInCluster(cluster)
        rabbit.prepare()
        stack = config.Stack(site_overrides=rabbit.overrides())
        config.push(cluster, stack)
        health.wait_healthy(cluster, stack, timeout_s=REJOIN_S)
        series.formed_s = rabbit.wait_formed()
        publisher = rabbit.client("publish", QUEUE, seconds=crashes * 900 + 900, interval_s=INTERVAL_S)
        consumer: AmqpClient | None = None
        try:
            publisher.wait_confirmed(20)
            consumer = rabbit.client("consume", QUEUE)
            publisher.wait_confirmed(60)
            for number in range(1, crashes + 1):
                try:
                    crash_leader(cluster, rabbit, stack, publisher, series, number, crashes)
                except ClusterError as error:  # keep what was measured; the report says how many
                    print(f"  bus/{timing} crash {number}/{crashes} failed, series ends: {error}; publisher: "
                          f"{publisher.tail(4)}", flush=True)
                    break
            publisher.wait_confirmed(len(publisher.confirmed) + 40)
        finally:
            drain(publisher, consumer, series)
    return series


def crash_leader(cluster: Cluster, rabbit: RabbitInCluster, stack: config.Stack, publisher: AmqpClient,
                 series: BusSeries, number: int, crashes: int) -> None:
    """Crash the node holding the queue's leader; time the first confirm after it; wait until the
    node is back and its broker a running member again."""
    wait_until(lambda: bool(rabbit.queue_leader(QUEUE)), f"a leader for {QUEUE}", 60, poll_s=1)
    victim = rabbit.queue_leader(QUEUE)
    confirms = [e for e in list(publisher.events) if e.get("event") == "confirmed"]
    through = str(confirms[-1].get("broker", "")) if confirms else ""
    through_victim = through == cluster.nodes[victim].address
    before = len(publisher.confirmed)
    crashed_at = cluster.crash(victim)
    wait_until(lambda: publisher.confirmed_after(crashed_at) is not None,
               f"a confirm after the crash of {victim}", FIRST_CONFIRM_S, poll_s=0.05)
    seconds = (publisher.confirmed_after(crashed_at) or crashed_at) - crashed_at
    health.wait_fenced(cluster, victim, crashed_at)
    fenced_after = cluster.fenced(victim, since=crashed_at)[0].at - crashed_at
    health.wait_healthy(cluster, stack, timeout_s=REJOIN_S)
    wait_until(lambda: rabbit.running_nodes() == everyone(cluster),
               f"{victim}'s broker a running member again", REJOIN_S, poll_s=1)
    member_after = time.monotonic() - crashed_at
    steps = where_the_time_went(publisher, crashed_at, crashed_at + seconds)
    series.first_confirms.append(seconds)
    series.fences.append(fenced_after)
    series.members_again.append(member_after)
    print(f"  bus/{series.timing} crash {number}/{crashes}: {victim} (the queue's leader; the publisher "
          f"{'was' if through_victim else 'was not'} connected to it, {before} confirmed before): first "
          f"confirm after {seconds:.2f} s, fenced after {fenced_after:.2f} s, its broker a member again "
          f"after {member_after:.1f} s; {steps}", flush=True)


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
    print(f"  bus/{series.timing}: {series.confirmed} confirmed, {series.consumed} distinct consumed, "
          f"{series.lost} confirmed lost", flush=True)


def table(rows: list[BusSeries]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(series.row()) + " |" for series in rows if series.first_confirms]
    return "\n".join(lines)
