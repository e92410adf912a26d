"""A confirmed publisher and a consumer of a quorum queue, run in the cluster's client namespace.

Started by the harness (``nscluster.messaging.start_client``) through ``Cluster.client_argv`` as
``/usr/bin/python3 -I -S amqpclient.py NETNS_INODE MODE QUEUE HOSTS PORT [SECONDS INTERVAL]``, the
account as one JSON line on standard input (``{"user": ..., "password": ...}``: never in argv).
Standard library and Debian's python3-amqp only (the system interpreter, no project path).

Modes (one JSON object per line on standard output, ``t`` is ``time.monotonic()``, which the
harness shares):

* ``publish``: for SECONDS, a message every INTERVAL seconds (body: its id, 1, 2, ...), persistent,
  into the durable quorum queue QUEUE with publisher confirms, through the first of HOSTS (a
  comma-separated list) that answers. A broker silent for two HEARTBEAT_S (AMQP heartbeats) or a
  failed connection: the client goes on with the next broker of HOSTS, those it could not reach
  within FAILED_RECENTLY_S tried last, as a client that lists all brokers should. A broker that
  is alive is given CONFIRM_S to answer (a quorum queue electing a new leader answers the
  publishes under way once it has one). A publish nacked, or not answered by then: the next
  message goes through a new channel (RabbitMQ 3.10 goes on refusing on a channel whose quorum
  queue client still points at the dead leader: measured up to 17 s after the new leader).
  ``{"event": "confirmed", "id": N, "t": T, "broker": H}`` for each confirmed message.
* ``publish-classic``: the same into a classic, non-durable queue with transient messages (the
  negative control: confirmed messages a broker's crash loses).
* ``consume``: until SIGTERM, every message of QUEUE, acknowledged after it is reported
  (``{"event": "consumed", "id": N, "t": T}``); redeliveries are reported again.

Other events: ``connected`` (broker), ``nacked`` (a message the broker refused: a quorum queue
without a leader yet), ``unanswered`` (a message not confirmed within CONFIRM_S by a live
broker; it may still arrive), ``lost`` (why), ``done``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

sys.path.append("/usr/lib/python3/dist-packages")

import amqp  # type: ignore[import-untyped]  # Debian's python3-amqp, after the path above

CONNECT_S = 2.0
DECLARE_S = 10.0  # a queue declare right after connecting (the broker answered a moment ago)
CONFIRM_S = 15.0  # a publish a live broker has not answered by then: the next message on a new channel
HEARTBEAT_S = 2
FAILED_RECENTLY_S = 10.0
SILENT_S = 1.5 * HEARTBEAT_S  # RabbitMQ sends a heartbeat every half of the negotiated timeout
PREFETCH = 200
RETRY_S = 0.2
STOP = {"requested": False}


class Late(TimeoutError):
    """An AMQP step that did not finish within its budget (raised by the alarm)."""


def ring(_signum: int, _frame: object) -> None:
    raise Late


def within(seconds: float) -> None:
    """Arm the alarm: the step under way raises Late after ``seconds`` (0 disarms). py-amqp's own
    timeouts restart with every frame, and a broker's heartbeats keep arriving while a queue waits
    for a leader: only a wall-clock budget bounds a step."""
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.5 if seconds else 0)  # again and again: py-amqp
    # may swallow one (it retries some reads that time out)


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


def stop(_signum: int, _frame: object) -> None:
    STOP["requested"] = True


FAILED_AT: dict[str, float] = {}  # broker -> when a connection to it last failed


def connect(hosts: list[str], port: int, account: dict[str, str], start: int,
            heartbeat: int = HEARTBEAT_S) -> tuple[amqp.Connection, str]:
    """The first broker of ``hosts`` (from index ``start``, round robin) that lets us in; those that
    failed within FAILED_RECENTLY_S are tried last."""
    last = ""
    ordered = [hosts[(start + step) % len(hosts)] for step in range(len(hosts))]
    recent = time.monotonic() - FAILED_RECENTLY_S
    for host in sorted(ordered, key=lambda h: FAILED_AT.get(h, 0.0) > recent):
        conn = amqp.Connection(f"{host}:{port}", userid=account["user"], password=account["password"],
                               connect_timeout=CONNECT_S, read_timeout=DECLARE_S, write_timeout=DECLARE_S,
                               heartbeat=heartbeat, confirm_publish=False)
        try:
            conn.connect()
        except (OSError, amqp.exceptions.AMQPError) as exc:
            FAILED_AT[host] = time.monotonic()
            last = f"{host}: {type(exc).__name__}"
            close(conn)
            continue
        FAILED_AT.pop(host, None)
        emit("connected", broker=host)
        return conn, host
    raise ConnectionError(last or "no broker")


def close(conn: amqp.Connection) -> None:
    try:
        conn.collect()
    except Exception:  # noqa: BLE001, S110 - whatever state the dead connection is in
        pass


def declare(channel: amqp.Channel, queue: str, classic: bool) -> None:
    if classic:
        channel.queue_declare(queue, durable=False, auto_delete=False)
    else:
        channel.queue_declare(queue, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})


class Confirms:
    """The broker's answers on a channel in confirm mode: delivery tag -> acked (True) or nacked."""

    def __init__(self, channel: amqp.Channel) -> None:
        self.answers: dict[int, bool] = {}
        self.published = 0  # the channel's last delivery tag
        channel.events["basic_ack"].add(lambda tag, multiple: self.answer(tag, multiple, True))
        channel.events["basic_nack"].add(lambda tag, multiple: self.answer(tag, multiple, False))

    def answer(self, tag: int, multiple: bool, acked: bool) -> None:
        for answered in range(1, tag + 1) if multiple else (tag,):
            self.answers.setdefault(answered, acked)

    def publish(self, conn: amqp.Connection, channel: amqp.Channel, message: amqp.Message,
                queue: str) -> bool | None:
        """Publish and wait for the answer while the broker is alive (its heartbeats), at most
        CONFIRM_S: True when confirmed, False when nacked, None when not answered; raises an AMQP
        or socket error (the broker went silent: ConnectionForced)."""
        channel.basic_publish(message, exchange="", routing_key=queue)
        self.published += 1
        tag = self.published
        give_up = time.monotonic() + CONFIRM_S
        while tag not in self.answers:
            try:
                conn.drain_events(timeout=0.2)
            except TimeoutError:
                pass
            conn.heartbeat_tick()  # records when the broker last sent anything
            if time.monotonic() - conn.last_heartbeat_received > SILENT_S:
                raise ConnectionError("the broker went silent")
            if time.monotonic() > give_up:
                return None
        return self.answers.pop(tag)


class Publisher:
    """One publisher's connection, channel in confirm mode and queue; the broker it goes through."""

    def __init__(self, hosts: list[str], port: int, account: dict[str, str], queue: str,
                 classic: bool) -> None:
        self.hosts, self.port, self.account, self.queue, self.classic = hosts, port, account, queue, classic
        self.conn: amqp.Connection | None = None
        self.channel: amqp.Channel | None = None
        self.confirms: Confirms | None = None
        self.host = ""
        self.turn = 0

    def open(self) -> bool:
        """Connect to the next broker that lets us in and declare the queue; False when none did."""
        try:
            within(CONNECT_S * len(self.hosts) + DECLARE_S)
            self.conn, self.host = connect(self.hosts, self.port, self.account, self.turn)
            self.new_channel()
            declare(self.channel, self.queue, self.classic)
            within(0)
        except (OSError, ConnectionError, amqp.exceptions.AMQPError) as exc:
            within(0)
            emit("lost", why=f"connect: {type(exc).__name__}")
            self.drop()
            self.turn += 1
            return False
        return True

    def new_channel(self) -> None:
        self.channel = self.conn.channel()  # type: ignore[union-attr]
        self.channel.confirm_select()
        self.confirms = Confirms(self.channel)

    def send(self, number: int) -> str:
        """Publish message ``number``: "confirmed", "nacked", "unanswered" (the broker alive), or
        "lost" (the next send connects to the next broker)."""
        message = amqp.Message(str(number), delivery_mode=1 if self.classic else 2)
        try:
            within(CONFIRM_S + CONNECT_S)  # the wait's own bound comes first; this one if a read hangs
            acked = self.confirms.publish(self.conn, self.channel, message, self.queue)  # type: ignore[union-attr]
            within(0)
        except (OSError, amqp.exceptions.AMQPError) as exc:
            within(0)
            emit("lost", why=f"publish {number} through {self.host}: {type(exc).__name__}", broker=self.host)
            self.drop()
            self.turn = self.hosts.index(self.host) + 1
            return "lost"
        return {True: "confirmed", False: "nacked", None: "unanswered"}[acked]

    def replace_channel(self) -> None:
        """After a nack or no answer: the next publish goes through a new channel."""
        try:
            within(DECLARE_S)
            self.channel.close()  # type: ignore[union-attr]
            self.new_channel()
            within(0)
        except (OSError, amqp.exceptions.AMQPError) as exc:
            within(0)
            emit("lost", why=f"new channel on {self.host}: {type(exc).__name__}", broker=self.host)
            self.drop()

    def drop(self) -> None:
        if self.conn is not None:
            close(self.conn)
        self.conn = self.channel = self.confirms = None


def publish(hosts: list[str], port: int, account: dict[str, str], queue: str, seconds: float,
            interval: float, classic: bool) -> None:
    end = time.monotonic() + seconds
    sent = confirmed = 0
    publisher = Publisher(hosts, port, account, queue, classic)
    while not STOP["requested"] and time.monotonic() < end:
        if publisher.conn is None and not publisher.open():
            time.sleep(RETRY_S)
            continue
        sent += 1
        outcome = publisher.send(sent)
        if outcome == "lost":
            continue
        emit(outcome, id=sent, broker=publisher.host)
        if outcome == "confirmed":
            confirmed += 1
        else:  # refused or not answered: a quorum queue without a leader, or a channel still routed to it
            publisher.replace_channel()
        time.sleep(interval)
    publisher.drop()
    emit("done", sent=sent, confirmed=confirmed)


def consume(hosts: list[str], port: int, account: dict[str, str], queue: str, classic: bool) -> None:
    turn = 0
    received = 0
    while not STOP["requested"]:
        try:
            within(CONNECT_S * len(hosts))
            conn, host = connect(hosts, port, account, turn, heartbeat=HEARTBEAT_S)
            within(0)
        except (OSError, ConnectionError, amqp.exceptions.AMQPError) as exc:
            within(0)
            emit("lost", why=f"connect: {type(exc).__name__}")
            turn += 1
            time.sleep(RETRY_S)
            continue
        try:
            within(DECLARE_S)
            channel = conn.channel()
            declare(channel, queue, classic)
            channel.basic_qos(0, PREFETCH, False)

            def deliver(message: amqp.Message, channel: amqp.Channel = channel) -> None:
                nonlocal received
                received += 1
                body = message.body.decode() if isinstance(message.body, bytes) else str(message.body)
                emit("consumed", id=int(body))
                channel.basic_ack(message.delivery_tag)

            channel.basic_consume(queue, callback=deliver, no_ack=False)
            within(0)
            while not STOP["requested"]:
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
                conn.heartbeat_tick()
        except (OSError, amqp.exceptions.AMQPError) as exc:
            within(0)
            emit("lost", why=f"consume through {host}: {type(exc).__name__}", broker=host)
            turn = hosts.index(host) + 1
        close(conn)
    emit("done", consumed=received)


def main(argv: list[str]) -> int:
    inode, mode, queue, hosts, port = argv[:5]
    if os.stat("/proc/self/ns/net").st_ino != int(inode):
        print("refusing to run outside the cluster's client namespace", file=sys.stderr)
        return 2
    account = json.loads(sys.stdin.readline())
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGALRM, ring)
    brokers = hosts.split(",")
    if mode in ("publish", "publish-classic"):
        publish(brokers, int(port), account, queue, float(argv[5]), float(argv[6]), mode == "publish-classic")
    elif mode in ("consume", "consume-classic"):
        consume(brokers, int(port), account, queue, mode == "consume-classic")
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
