"""Checks of what an API service depends on: its database and its message broker.

They read the service's own configuration (``[database] connection``,
``transport_url``), are bounded by a time cap, and answer a list of
problems; an empty list means healthy.  The caller reports problems as
degraded, not as a failure of the API.

The database check needs no credentials: a MySQL/MariaDB server greets
every new connection with a handshake packet (or an error packet when it
refuses clients), which tells a frozen or overloaded server from a healthy
one; the whole greeting must arrive within the cap.  The broker check is a
real AMQP login with pika, run in a thread the caller stops waiting for at
the cap: pika's own timeouts bound its connect and handshake, not a name
lookup nor its close, which waits for a broker that froze after the login.
Names are looked up within the cap too (``agents.http.resolve``).  Every
problem says whether the dependency refused (it is down: nothing listens)
or did not answer in time (it hangs, or the network does).
"""

from __future__ import annotations

import os
import socket
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agents.ocf.deadline import Deadline
    from agents.ocf.log import Logger

DEFAULT_PORTS = {"mysql": 3306, "mariadb": 3306, "postgresql": 5432, "rabbit": 5672}


def database_problems(url: str, deadline: Deadline, cap: float, log: Logger) -> list[str]:
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url)
    if parts.password:
        log.add_secret(unquote(parts.password))
        log.add_secret(parts.password)
    kind = parts.scheme.split("+")[0]
    if kind == "sqlite":
        return _sqlite_problems(parts.path)
    unix_socket = parse_qs(parts.query).get("unix_socket", [""])[0]
    try:
        port = parts.port or DEFAULT_PORTS.get(kind, 3306)
    except ValueError:
        return [f"the database URL's port is not a number (host {parts.hostname})"]
    where = unix_socket or f"{parts.hostname}:{port}"
    return _server_problems(kind, unix_socket, parts.hostname or "localhost", port, where,
                            deadline, min(cap, deadline.remaining()))


def _server_problems(kind: str, unix_socket: str, host: str, port: int, where: str, deadline: Deadline,
                     timeout: float) -> list[str]:
    until = time.monotonic() + timeout
    try:
        conn = _connect(unix_socket, host, port, deadline, until)
        with conn:
            if kind in ("mysql", "mariadb"):
                return _mysql_greeting(conn, where, until)
    except TimeoutError:
        return [f"database at {where} did not answer within {timeout:.1f} s"]
    except ConnectionRefusedError:
        return [f"database at {where} refused the connection (nothing listens there)"]
    except OSError as exc:
        return [f"database at {where} is unreachable: {exc.strerror or exc}"]
    return []


def _sqlite_problems(url_path: str) -> list[str]:
    path = url_path[1:] if url_path.startswith("//") else url_path.lstrip("/")
    if path and not os.path.exists("/" + path.lstrip("/")):
        return [f"sqlite database {path} does not exist"]
    return []


def _connect(unix_socket: str, host: str, port: int, deadline: Deadline, until: float) -> socket.socket:
    """A socket connected by the monotonic time ``until``, the name lookup included."""
    from agents.http import resolve

    if unix_socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: str | tuple[str, int] = unix_socket
    else:
        family, kind, proto, _name, target = resolve(host, port, deadline, until - time.monotonic())[0]
        conn = socket.socket(family, kind, proto)
    try:
        left = until - time.monotonic()
        if left <= 0:
            raise TimeoutError
        conn.settimeout(left)
        conn.connect(target)
    except BaseException:
        conn.close()
        raise
    return conn


def _mysql_greeting(conn: socket.socket, where: str, until: float) -> list[str]:
    from agents.mysql import ERR_PACKET, read_packet

    try:
        payload = read_packet(conn, until)
    except ConnectionResetError:
        return [f"database at {where} closed the connection without a greeting"]
    if payload[:1] == bytes((ERR_PACKET,)):
        message = payload[3:].decode("utf-8", "replace").lstrip("#").strip()
        return [f"database at {where} refuses connections: {message[:120]}"]
    return []


def rabbit_problems(url: str, deadline: Deadline, cap: float, log: Logger) -> list[str]:
    """Healthy when any broker of the transport URL accepts a login."""
    import logging

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
        problem = _rabbit_login(user, password, host, port, vhost, timeout)
        if not problem:
            return []
        problems.append(f"RabbitMQ at {host}:{port} {problem}")
    return problems


def _rabbit_login(user: str, password: str, host: str, port: int, vhost: str, timeout: float) -> str:
    """An AMQP login and close within ``timeout``; what went wrong, or an empty string."""
    import pika
    import pika.exceptions

    from agents.http import within

    def login() -> None:
        params = pika.ConnectionParameters(
            host=host, port=port, virtual_host=vhost, credentials=pika.PlainCredentials(user, password),
            socket_timeout=timeout, stack_timeout=timeout, blocked_connection_timeout=timeout,
            connection_attempts=1, retry_delay=0)
        pika.BlockingConnection(params).close()

    try:
        within(timeout, login)
    except TimeoutError:
        return f"did not answer within {timeout:.1f} s"
    except (pika.exceptions.AMQPError, OSError) as exc:
        text = repr(exc)
        if "ConnectionRefusedError" in text:
            return "refused the connection (nothing listens there)"
        if "Timeout" in text or "timed out" in text:
            return f"did not answer within {timeout:.1f} s"
        return f"failed: {type(exc).__name__}"
    return ""


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
