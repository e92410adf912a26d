"""A confirmed publisher and a consumer of a quorum queue, run in the cluster's client namespace.

Started by the harness (``nscluster.messaging.start_client``) through ``Cluster.client_argv`` as
``/usr/bin/python3 -I -S amqpclient.py NETNS_INODE MODE QUEUE HOSTS PORT [SECONDS INTERVAL]``, the
account as one JSON line on standard input (``{"user": ..., "password": ...}``: never in argv).
Standard library and Debian's python3-amqp only (the system interpreter, no project path).

Modes (one JSON object per line on standard output, ``t`` is ``time.monotonic()``, which the
harness shares):

* ``publish``: for SECONDS, a message every INTERVAL seconds (body: its id, 1, 2, ...), persistent,
  into the durable quorum queue QUEUE with publisher confirms, through the first of HOSTS (a
  comma-separated list) that answers; a confirm not back within CONFIRM_S, or a failed connection,
  drops the connection and the client goes on with the next broker of HOSTS.
  ``{"event": "confirmed", "id": N, "t": T, "broker": H}`` for each confirmed message.
* ``publish-classic``: the same into a classic, non-durable queue with transient messages (the
  negative control: confirmed messages a broker's crash loses).
* ``consume``: until SIGTERM, every message of QUEUE, acknowledged after it is reported
  (``{"event": "consumed", "id": N, "t": T}``); redeliveries are reported again.

Other events: ``connected`` (broker), ``nacked`` (a message the broker refused: a quorum queue
without a leader yet), ``lost`` (why), ``done``.
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
CONFIRM_S = 3.0
HEARTBEAT_S = 2
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


def connect(hosts: list[str], port: int, account: dict[str, str], start: int,
            heartbeat: int = 0) -> tuple[amqp.Connection, str]:
    """The first broker of ``hosts`` (from index ``start``, round robin) that lets us in."""
    last = ""
    for step in range(len(hosts)):
        host = hosts[(start + step) % len(hosts)]
        conn = amqp.Connection(f"{host}:{port}", userid=account["user"], password=account["password"],
                               connect_timeout=CONNECT_S, read_timeout=CONFIRM_S, write_timeout=CONFIRM_S,
                               heartbeat=heartbeat, confirm_publish=False)
        try:
            conn.connect()
        except (OSError, amqp.exceptions.AMQPError) as exc:
            last = f"{host}: {type(exc).__name__}"
            close(conn)
            continue
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


def publish(hosts: list[str], port: int, account: dict[str, str], queue: str, seconds: float,
            interval: float, classic: bool) -> None:
    end = time.monotonic() + seconds
    sent = confirmed = 0
    turn = 0
    conn: amqp.Connection | None = None
    channel = None
    host = ""
    while not STOP["requested"] and time.monotonic() < end:
        if conn is None:
            try:
                within(CONNECT_S * len(hosts) + CONFIRM_S)
                conn, host = connect(hosts, port, account, turn)
                channel = conn.channel()
                channel.confirm_select()
                declare(channel, queue, classic)
                within(0)
            except (OSError, ConnectionError, amqp.exceptions.AMQPError) as exc:
                within(0)
                emit("lost", why=f"connect: {type(exc).__name__}")
                if conn is not None:
                    close(conn)
                conn = None
                turn += 1
                time.sleep(RETRY_S)
                continue
        sent += 1
        message = amqp.Message(str(sent), delivery_mode=1 if classic else 2)
        try:
            within(CONFIRM_S)
            channel.basic_publish_confirm(message, exchange="", routing_key=queue)  # type: ignore[union-attr]
            within(0)
        except amqp.exceptions.MessageNacked:  # not an AMQPError: the broker refused it, the channel lives on
            within(0)
            emit("nacked", id=sent, broker=host)
            time.sleep(interval)
            continue
        except (OSError, amqp.exceptions.AMQPError) as exc:
            within(0)
            emit("lost", why=f"publish {sent} through {host}: {type(exc).__name__}", broker=host)
            close(conn)
            conn = None
            turn = hosts.index(host) + 1
            continue
        confirmed += 1
        emit("confirmed", id=sent, broker=host)
        time.sleep(interval)
    if conn is not None:
        close(conn)
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
            within(CONFIRM_S * 2)
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
