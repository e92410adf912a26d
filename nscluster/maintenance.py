"""Routine maintenance and instance faults under a token stream: what the cluster tests and
``make bench-cluster`` both run (the tests bound the failures, the bench compares profiles).

Every function streams token requests through the public VIP (one every ``interval_s``, each on its
own connection, failed after 5 s without an answer; ``nscluster/tokenclient.py`` in the bridge
namespace) while it acts on the cluster, and returns every answer with what it did and when.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import time
from collections.abc import Sequence

from nscluster import config, health
from nscluster.cluster import Cluster, ClusterError, ClusterStatus
from nscluster.openstack import RESOURCE, KeystoneInCluster

STREAM_SECONDS = 900  # the client's own limit; it is stopped when the maintenance ends
QUIET_S = 2.0  # answers before the first step and after the last
# What a user waits for a token before giving up: a token issued later is "late" (the client itself
# waits up to 30 s and reports how long it took).
PATIENCE_S = 5.0
DATABASE = "mysql"


@dataclasses.dataclass
class Streamed:
    """The token stream's answers, and the steps taken meanwhile (monotonic time, what)."""

    answers: list[dict[str, object]]
    steps: list[tuple[float, str]]
    vip_moves: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    recovered_s: float | None = None
    # (start, end) of the rounds that moved the database (monotonic time)
    database_moves: list[tuple[float, float]] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, object]]:
        """No token: an error, another status, or no answer within the client's 30 s."""
        return [answer for answer in self.answers if not answer["ok"]]

    @property
    def late(self) -> list[dict[str, object]]:
        """A token, but after the user's patience."""
        return [answer for answer in self.answers if answer["ok"] and float(str(answer["s"])) > PATIENCE_S]

    def during_database_moves(self, answers: list[dict[str, object]]) -> list[dict[str, object]]:
        """Those of ``answers`` under way while a round moved the database."""
        def overlaps(answer: dict[str, object]) -> bool:
            began = float(str(answer["t"]))
            ended = began + float(str(answer.get("s") or 0))
            return any(began <= end and ended >= start for start, end in self.database_moves)

        return [answer for answer in answers if overlaps(answer)]

    def summary(self) -> str:
        took = sorted(float(str(a["s"])) for a in self.answers if a["ok"])
        start = float(str(self.answers[0]["t"])) if self.answers else 0.0
        latency = (f"answered in median {statistics.median(took):.2f} s, p99 {percentile(took, 0.99):.2f} s, "
                   f"max {took[-1]:.2f} s" if took else "none answered")
        failures = [(round(float(str(a["t"])) - start, 1), a["status"], str(a["error"])[:50])
                    for a in self.failed]
        steps = [(round(at - start, 1), what) for at, what in self.steps]
        late = [(round(float(str(a["t"])) - start, 1), a["s"]) for a in self.late]
        return (f"{len(self.answers)} token requests, {len(self.failed)} failed, {len(self.late)} late (over "
                f"{PATIENCE_S:.0f} s: (s after start, took) {late}), {latency}; public VIP moved "
                f"{self.vip_moves}; failures (s after start, status, error): {failures}; "
                f"steps (s after start): {steps}")


def percentile(ordered: Sequence[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def stop_stream(client: subprocess.Popen[str]) -> list[dict[str, object]]:
    if client.poll() is None:
        client.terminate()
    out, err = client.communicate(timeout=30)
    answers = [json.loads(line) for line in out.splitlines() if line.strip()]
    if not answers:
        raise ClusterError(f"the token client answered nothing: {err.strip()[-300:]}")
    return sorted(answers, key=lambda answer: float(answer["t"]))


def rolling_standby(cluster: Cluster, stack: config.Stack, keystone: KeystoneInCluster,
                    interval_s: float = 0.5, serving: Sequence[str] = (RESOURCE,)) -> Streamed:
    """``pcs node standby`` then ``unstandby`` of each node in turn; ``serving``: the clones that must
    be off a node in standby and back on it after."""
    everyone = tuple(sorted(cluster.nodes))
    running = health.fully_running(cluster, stack)
    steps: list[tuple[float, str]] = []
    moves: list[tuple[str, str]] = []
    database_moves: list[tuple[float, float]] = []
    client = keystone.start_token_stream(STREAM_SECONDS, interval_s)
    try:
        time.sleep(QUIET_S)
        for node in everyone:
            status = cluster.status()
            (holder,) = status.where(config.PUBLIC_VIP)
            moves_database = node in status.where(DATABASE)
            began = time.monotonic()
            steps.append((began, f"standby {node}" + (" (the database's holder)" if moves_database else "")))
            cluster.run(node, ["pcs", "node", "standby", node])
            others = tuple(name for name in everyone if name != node)
            cluster.wait_status(drained(others, serving), f"{node} in standby, {', '.join(serving)} and the "
                                "public VIP on the others", 120)
            (new_holder,) = cluster.status().where(config.PUBLIC_VIP)
            if new_holder != holder:
                moves.append((holder, new_holder))
            steps.append((time.monotonic(), f"unstandby {node}"))
            cluster.run(node, ["pcs", "node", "unstandby", node])
            cluster.wait_status(running, f"{node} back, everything running", 120)
            health.settle(cluster)  # the next standby does not overlap this node's service starts
            steps.append((time.monotonic(), f"{node} settled"))
            if moves_database:
                database_moves.append((began, time.monotonic()))
        time.sleep(QUIET_S)
    finally:
        answers = stop_stream(client)
    return Streamed(answers, steps, moves, database_moves=database_moves)


def drained(others: tuple[str, ...], serving: Sequence[str]):  # type: ignore[no-untyped-def]
    def check(status: ClusterStatus) -> bool:
        vip = status.where(config.PUBLIC_VIP)
        return all(status.where(name) == others for name in serving) and len(vip) == 1 and vip[0] in others

    return check


def signal_keystone(cluster: Cluster, keystone: KeystoneInCluster, victim: str, signal_name: str,
                    interval_s: float = 0.5) -> Streamed:
    """``kill -KILL`` of keystone's leader, or ``kill -STOP`` of the leader and its workers (hung), on
    ``victim``; until Pacemaker runs a new instance there, and a few seconds more."""
    before = keystone.identity(victim)
    if before is None:
        raise ClusterError(f"no keystone recorded on {victim}")
    pids = [before[0], *keystone.workers_of(victim, before[0])] if signal_name == "STOP" else [before[0]]
    client = keystone.start_token_stream(STREAM_SECONDS, interval_s)
    try:
        time.sleep(QUIET_S)
        since = time.monotonic()
        keystone.signal(victim, pids, signal_name)
        steps = [(since, f"SIG{signal_name} of keystone on {victim}")]

        def recovered(status: ClusterStatus) -> bool:
            now = keystone.identity(victim)
            return now is not None and now != before and victim in status.where(RESOURCE)

        cluster.wait_status(recovered, f"keystone on {victim} restarted in place", 150)
        recovered_s = time.monotonic() - since
        steps.append((time.monotonic(), "restarted in place"))
        time.sleep(2 * QUIET_S)
    finally:
        answers = stop_stream(client)
    return Streamed(answers, steps, recovered_s=recovered_s)


def direct_and_fronted_latency(keystone: KeystoneInCluster, node_address: str, seconds: float = 30,
                               interval_s: float = 0.25) -> tuple[Streamed, Streamed]:
    """Token requests straight to one keystone, then through the public VIP, one after the other."""
    direct = Streamed(stop_stream_after(keystone.start_token_stream(seconds, interval_s, host=node_address)),
                      [])
    fronted = Streamed(stop_stream_after(keystone.start_token_stream(seconds, interval_s)), [])
    return direct, fronted


def stop_stream_after(client: subprocess.Popen[str]) -> list[dict[str, object]]:
    client.wait(timeout=STREAM_SECONDS)
    return stop_stream(client)
