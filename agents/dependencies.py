"""Checks of what an API service depends on: its database and its message broker.

They read the service's own configuration (``[database] connection``,
``transport_url``), are bounded by a time cap, and answer a list of
problems; an empty list means healthy.  The caller reports problems as
degraded, not as a failure of the API.

The database check needs no credentials: a MySQL/MariaDB server greets
every new connection with a handshake packet (or an error packet when it
refuses clients), which tells a frozen or overloaded server from a healthy
one.  The broker check is a real AMQP login with pika, bounded by
``socket_timeout``/``stack_timeout`` (a frozen broker otherwise keeps pika
waiting 15 s).
"""

from __future__ import annotations

import os
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agents.ocf.deadline import Deadline
    from agents.ocf.log import Logger

DEFAULT_PORTS = {"mysql": 3306, "mariadb": 3306, "postgresql": 5432, "rabbit": 5672}
MYSQL_ERROR_PACKET = 0xFF


def database_problems(url: str, deadline: Deadline, cap: float, log: Logger) -> list[str]:
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url)
    if parts.password:
        log.add_secret(unquote(parts.password))
        log.add_secret(parts.password)
    kind = parts.scheme.split("+")[0]
    if kind == "sqlite":
        path = parts.path[1:] if parts.path.startswith("//") else parts.path.lstrip("/")
        if path and not os.path.exists("/" + path.lstrip("/")):
            return [f"sqlite database {path} does not exist"]
        return []
    unix_socket = parse_qs(parts.query).get("unix_socket", [""])[0]
    port = parts.port or DEFAULT_PORTS.get(kind, 3306)
    where = unix_socket or f"{parts.hostname}:{port}"
    timeout = min(cap, deadline.remaining())
    try:
        if unix_socket:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(timeout)
            conn.connect(unix_socket)
        else:
            conn = socket.create_connection((parts.hostname or "localhost", port), timeout=timeout)
        with conn:
            if kind in ("mysql", "mariadb"):
                return _mysql_greeting(conn, where)
    except TimeoutError:
        return [f"database at {where} did not answer within {timeout:.1f} s"]
    except OSError as exc:
        return [f"database at {where} is unreachable: {exc.strerror or exc}"]
    return []


def _mysql_greeting(conn: socket.socket, where: str) -> list[str]:
    data = b""
    while len(data) < 5:
        chunk = conn.recv(512)
        if not chunk:
            return [f"database at {where} closed the connection without a greeting"]
        data += chunk
    if data[4] == MYSQL_ERROR_PACKET:
        message = data[7:].decode("utf-8", "replace").strip()
        return [f"database at {where} refuses connections: {message[:120]}"]
    return []


def rabbit_problems(url: str, deadline: Deadline, cap: float, log: Logger) -> list[str]:
    """Healthy when any broker of the transport URL accepts a login."""
    import logging

    import pika
    import pika.exceptions

    logging.getLogger("pika").addHandler(logging.NullHandler())
    logging.getLogger("pika").propagate = False
    brokers, vhost = parse_transport_url(url)
    problems = []
    for user, password, host, port in brokers:
        log.add_secret(password)
        timeout = min(cap, deadline.remaining())
        if timeout <= 0:
            problems.append(f"no time left to check RabbitMQ at {host}:{port}")
            break
        params = pika.ConnectionParameters(
            host=host, port=port, virtual_host=vhost, credentials=pika.PlainCredentials(user, password),
            socket_timeout=timeout, stack_timeout=timeout, blocked_connection_timeout=timeout,
            connection_attempts=1, retry_delay=0)
        try:
            pika.BlockingConnection(params).close()
            return []
        except (pika.exceptions.AMQPError, OSError) as exc:
            problems.append(f"RabbitMQ at {host}:{port}: {type(exc).__name__}")
    return problems


def parse_transport_url(url: str) -> tuple[list[tuple[str, str, str, int]], str]:
    """``rabbit://user:pass@host:port,user:pass@host2:port/vhost`` → brokers and vhost."""
    from urllib.parse import unquote

    _scheme, _sep, rest = url.partition("://")
    rest = rest.split("?", 1)[0]
    at = rest.rfind("@")
    slash = rest.find("/", at + 1)
    hosts, vhost = (rest, "") if slash < 0 else (rest[:slash], rest[slash + 1:])
    brokers = []
    for entry in hosts.split(","):
        userinfo, _at, hostport = entry.rpartition("@")
        user, _colon, password = userinfo.partition(":")
        host, port = _split_hostport(hostport)
        brokers.append((unquote(user) or "guest", unquote(password) or "guest", host, port))
    return brokers, unquote(vhost) or "/"


def _split_hostport(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _bracket, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _colon, port = text.partition(":")
    return host or "localhost", int(port) if port.isdigit() else DEFAULT_PORTS["rabbit"]
