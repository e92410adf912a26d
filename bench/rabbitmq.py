"""rabbitmq against ocf:heartbeat:rabbitmq-cluster, alternating runs in one invocation.

Monitor: both agents check the same running broker (started by ours). The reference runs as
Pacemaker's executor runs it, in a private mount namespace whose ``/etc/rabbitmq`` names our
broker and whose ``/var/lib/rabbitmq`` holds its Erlang cookie (``harness.rabbitmq_reference``);
its Pacemaker tools work on a CIB file in which this node is online. Its monitor, whatever the
depth, is three ``rabbitmqctl`` calls (an Erlang VM booted by each, through Debian's ``su``
wrapper), one ``cibadmin -Q`` and two ``crm_attribute`` writes. The ``nsenter`` that enters the
namespace is timed alone and subtracted. Our depth 20 runs two Erlang CLI tools
(``rabbitmqctl cluster_status``, ``rabbitmq-diagnostics check_if_node_is_quorum_critical``)
beside its confirmed round trip: about one VM boot. Floors: the bare interpreter our agents run
on, one ``rabbitmqctl eval -q ok.``.

Start and stop: ours (on its broker), the reference (on a broker of its own, in its namespace,
bootstrapping alone: no other node in the CIB) and the broker alone (Debian's server script in the
reference's namespace, as user rabbitmq, with no agent: from spawn until the AMQP handshake
answers, polled every 10 ms; SIGTERM until the VM has exited). After each start, the message
published into a durable quorum queue before the previous stop is looked for.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from bench.core import BARE_INTERPRETER, Bench, alternate, ms, ratio, time_once
from harness.rabbitmq import AGENT, MONITOR_USER, RabbitResource, stop_epmd, write_secrets
from harness.rabbitmq_reference import AGENT as REFERENCE
from harness.rabbitmq_reference import ReferenceSite
from harness.stack import HOST

TYPE_CHECKING = False
if TYPE_CHECKING:
    from harness.ocfrun import TimedResult

    Cycle = tuple[Callable[[], float], Callable[[], float]]

PORT = 28800  # ours; distribution on PORT + 1
REFERENCE_PORT = 28810  # the reference's own broker; distribution on + 1
EPMD_PORT = 28849
MONITOR_TARGET = 0.1
MONITOR_ROUNDS = 9  # at most: the reference's monitor takes seconds
START_STOP_ROUNDS = 3
QUEUE = "bench-kept"
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def amqp_answers(port: int) -> bool:
    """The AMQP protocol header answered by ``Connection.Start`` (what our start waits for)."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as conn:
            conn.sendall(AMQP_HEADER)
            return conn.recv(11)[7:11] == b"\x00\x0a\x00\x0a"
    except OSError:
        return False


def connection(port: int):  # type: ignore[no-untyped-def]
    import pika

    return pika.BlockingConnection(pika.ConnectionParameters(
        host=HOST, port=port, credentials=pika.PlainCredentials(*MONITOR_USER), socket_timeout=10,
        stack_timeout=10, blocked_connection_timeout=10, connection_attempts=1, heartbeat=0))


def take_and_leave(port: int) -> int:
    """The messages found in the durable quorum queue QUEUE (consumed), then one more published, confirmed."""
    import pika

    conn = connection(port)
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        found = 0
        while channel.basic_get(QUEUE, auto_ack=True)[0] is not None:
            found += 1
        channel.basic_publish("", QUEUE, b"kept?", pika.BasicProperties(delivery_mode=2), mandatory=True)
        return found
    finally:
        conn.close()


class BrokerAlone:
    """Debian's server script in the reference's namespace with no agent: the floor of both starts."""

    def __init__(self, site: ReferenceSite) -> None:
        self.site = site
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        began = time.perf_counter()
        self.process = subprocess.Popen(self.site.server_argv(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        while not amqp_answers(self.site.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server alone exited {self.process.returncode}")
            if time.perf_counter() - began > 120:
                raise RuntimeError("rabbitmq-server alone did not answer AMQP within 120 s")
            time.sleep(0.01)
        return time.perf_counter() - began

    def stop(self) -> float:
        if self.process is None:
            raise RuntimeError("the broker alone was not started")
        began = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)
        self.process = None
        return time.perf_counter() - began


def checked(action: Callable[[], TimedResult], what: str) -> Callable[[], float]:
    """A timed agent action that must succeed (rc 0): its wall time."""
    def once() -> float:
        result = action()
        if result.rc != 0:
            raise RuntimeError(f"{what} failed: {result}")
        return result.elapsed
    return once


def run(bench: Bench) -> None:
    if os.geteuid() != 0:
        print("rabbitmq: skipped (the broker runs as user rabbitmq; namespaces need root)\n")
        return
    for path in (AGENT, REFERENCE):
        if not os.access(path, os.X_OK):
            raise SystemExit(f"{path} is missing: run `make install` (and install resource-agents)")
    workdir = tempfile.mkdtemp(prefix="osha-bench-rabbitmq-")
    os.chmod(workdir, 0o755)  # noqa: S103 - like /var/lib: user rabbitmq reaches its directories below
    _cookie_file, _credentials, cookie = write_secrets(workdir)
    ours = RabbitResource(workdir, PORT, EPMD_PORT, instance="bench-rabbitmq")
    watcher = ReferenceSite(workdir, ours.nodename, PORT, EPMD_PORT, cookie, instance="rabbitmq-watch")
    own = ReferenceSite(workdir, f"rabbit-{REFERENCE_PORT}@localhost", REFERENCE_PORT, EPMD_PORT, cookie,
                        instance="rabbitmq-ref")
    try:
        watcher.create()
        own.create()
        measure(bench, ours, watcher, own)
    finally:
        try:
            ours.ensure_stopped()
        finally:
            if own.broker_pids():
                own("stop")
            own.close()
            watcher.close()
            stop_epmd(EPMD_PORT)
            shutil.rmtree(workdir, ignore_errors=True)


def measure(bench: Bench, ours: RabbitResource, watcher: ReferenceSite, own: ReferenceSite) -> None:
    started = ours("start")
    if started.rc != 0:
        raise RuntimeError(f"our broker did not start: {started}")
    primed = watcher("monitor")  # the first writes the node's attribute, as a cluster's first monitor does
    if primed.rc != 0:
        raise RuntimeError(f"rabbitmq-cluster's monitor of our broker failed: {primed}")

    def monitor(depth: int) -> float:
        return time_once([AGENT, "monitor"], ours.env(depth), expect=(0,))

    times = alternate({
        "bare": lambda: time_once(BARE_INTERPRETER),
        "nsenter": lambda: time_once(watcher.wrap(["/bin/true"]), expect=(0,)),
        "ctl": lambda: time_once(watcher.ctl_argv("eval", "-q", "ok."), expect=(0,)),
        "reference": lambda: time_once(watcher.agent_argv("monitor"), watcher.env(40), expect=(0,)),
        "depth0": lambda: monitor(0),
        "depth10": lambda: monitor(10),
        "depth20": lambda: monitor(20),
    }, min(bench.rounds, MONITOR_ROUNDS))
    wrapper = times["nsenter"]
    theirs, ctl = times["reference"] - wrapper, times["ctl"] - wrapper
    target = f"≤ {MONITOR_TARGET:.2f} ×"
    rows = [[label, ms(times[key]), ms(theirs), ratio(times[key], theirs), goal]
            for key, label, goal in (("depth0", "depth 0 (VM alive, not frozen, AMQP listening)", target),
                                     ("depth10", "depth 10 (+ AMQP handshake)", ""),
                                     ("depth20", "depth 20 (+ confirmed publish and get on a quorum queue; "
                                      "cluster health: 2 CLI tools beside it)", ""))]
    rows += [["floor: one `rabbitmqctl eval -q ok.` as root (an Erlang VM)", "", ms(ctl), ratio(ctl, theirs),
              ""],
             ["floor: bare interpreter", ms(times["bare"]), "", ratio(times["bare"], theirs), ""]]
    bench.table(f"rabbitmq monitor vs ocf:heartbeat:rabbitmq-cluster (same running broker; its one monitor: "
                f"3 rabbitmqctl, cibadmin, 2 crm_attribute on a CIB file; ms, medians of "
                f"{min(bench.rounds, MONITOR_ROUNDS)})",
                ["check", "openstack:rabbitmq", "heartbeat:rabbitmq-cluster", "ratio", "target"], rows)

    found: dict[str, list[int]] = {"ours": [], "reference": []}
    take_and_leave(ours.port)  # ours looks for it after its first stop and start
    cycle_of = start_stop_cycles(ours, own, found)
    stopped = ours("stop")
    if stopped.rc != 0:
        raise RuntimeError(f"our broker did not stop: {stopped}")
    samples = alternate_cycles(cycle_of, min(bench.rounds, START_STOP_ROUNDS))
    rows = []
    for index, label in ((0, "start (until AMQP answers / the agent returns)"),
                         (1, "stop (until the VM is gone / the agent returns)")):
        floor = statistics.median(samples["alone"][index])
        our, their = statistics.median(samples["ours"][index]), statistics.median(samples["reference"][index])
        rows.append([label, f"{floor:.2f}", f"{our:.2f}", f"{our - floor:+.2f}", f"{their:.2f}",
                     f"{their - floor:+.2f}"])
    kept = {name: f"{sum(1 for count in counts if count == 1)}/{len(counts)}"
            for name, counts in found.items()}
    rows.append(["restarts that kept the confirmed message of a durable quorum queue", "", kept["ours"], "",
                 kept["reference"], ""])
    bench.table(f"rabbitmq start/stop wall time vs the broker alone (s, medians of "
                f"{min(bench.rounds, START_STOP_ROUNDS)})",
                ["action", "broker alone", "openstack:rabbitmq", "over broker", "heartbeat:rabbitmq-cluster",
                 "over broker"], rows)


def start_stop_cycles(ours: RabbitResource, own: ReferenceSite,
                      found: dict[str, list[int]]) -> dict[str, Cycle]:
    """(start, stop) per side; after each agent's start, the kept message is counted (untimed)."""
    alone = BrokerAlone(own)
    first = [True]  # the reference's first start: nothing was published before it

    def start_ours() -> float:
        elapsed = checked(lambda: ours("start"), "our start")()
        found["ours"].append(take_and_leave(ours.port))
        return elapsed

    def start_reference() -> float:
        elapsed = checked(lambda: own("start"), "rabbitmq-cluster's start")()
        count = take_and_leave(own.port)
        if first:
            first.clear()
        else:
            found["reference"].append(count)
        return elapsed

    return {"alone": (alone.start, alone.stop),
            "ours": (start_ours, checked(lambda: ours("stop"), "our stop")),
            "reference": (start_reference, checked(lambda: own("stop"), "rabbitmq-cluster's stop"))}


def alternate_cycles(cycles: dict[str, Cycle], rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cycles}
    for _ in range(rounds):
        for name, (start, stop) in cycles.items():
            samples[name][0].append(start())
            samples[name][1].append(stop())
    return samples
