"""A minimal HTTP/1.0 client for health checks, on a bare socket.

``http.client`` pulls in the e-mail package (about 15 ms of imports), more
than a whole depth-10 monitor may cost.  A health check needs one request,
one response, ``Connection: close`` and a hard time limit: that is all this
module does.  Every call is bounded by the caller's deadline, so a frozen
server makes the check fail in time instead of hanging.  It uses the C
module ``_socket`` directly: ``socket.py`` costs another 4 ms of imports
(selectors, its enums) on a path that must stay close to the interpreter's
own start-up time.
"""

from __future__ import annotations

import _socket

from agents.ocf.codes import OCF, DeadlineExceeded, OCFError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agents.ocf.deadline import Deadline

MAX_RESPONSE = 1 << 20
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - mapped to loopback


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> object:
        import json

        return json.loads(self.body.decode("utf-8", "replace") or "null")


class Unreachable(OCFError):
    """Nothing answered: connection refused, reset or timed out."""

    def __init__(self, reason: str) -> None:
        super().__init__(OCF.ERR_GENERIC, reason)


def client_address(host: str) -> str:
    """Where to connect to reach a server bound to ``host`` (a wildcard means loopback)."""
    return WILDCARDS.get(host, host.strip("[]"))


def request(deadline: Deadline, host: str, port: int, path: str, *, method: str = "GET",
            body: bytes = b"", headers: dict[str, str] | None = None, cap: float | None = None) -> Response:
    """One request, one response; raises Unreachable or DeadlineExceeded, never hangs."""
    address = client_address(host)
    timeout = deadline.timeout(cap)
    if timeout <= 0:
        raise DeadlineExceeded(f"before asking {address}:{port}{path}")
    lines = [f"{method} {path} HTTP/1.0", f"Host: {_host_header(address, port)}", "Connection: close",
             "Accept: application/json", "User-Agent: openstack-ha-agent"]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    try:
        conn = _connect(address, port, timeout)
        try:
            conn.sendall(raw)
            data = _read_all(conn, deadline, cap)
        finally:
            conn.close()
    except TimeoutError:
        raise Unreachable(f"{address}:{port} did not answer {method} {path} in time") from None
    except OSError as exc:
        raise Unreachable(f"cannot reach {address}:{port}: {exc.strerror or exc}") from None
    return _parse(data, f"{address}:{port}{path}")


def _connect(address: str, port: int, timeout: float) -> _socket.socket:
    """A connected TCP socket; names are resolved, the first address that answers wins."""
    error: OSError = OSError(f"no address for {address}")
    for family, kind, proto, _name, target in _addresses(address, port):
        conn = _socket.socket(family, kind, proto)
        try:
            conn.settimeout(timeout)
            conn.connect(target)
            return conn
        except OSError as exc:
            conn.close()
            error = exc
    raise error


def _addresses(address: str, port: int) -> list[tuple[int, int, int, str, tuple[str, int]]]:
    """A literal address as is (getaddrinfo's first call costs milliseconds), else resolved."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, address)
        except OSError:
            continue
        return [(family, _socket.SOCK_STREAM, 0, "", (address, port))]
    return _socket.getaddrinfo(address, port, 0, _socket.SOCK_STREAM)  # type: ignore[return-value]


def _host_header(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _read_all(conn: _socket.socket, deadline: Deadline, cap: float | None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline.timeout(cap)
        if left <= 0:
            raise TimeoutError
        conn.settimeout(left)
        chunk = conn.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE:
            return b"".join(chunks)


def _parse(data: bytes, where: str) -> Response:
    head, _sep, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise Unreachable(f"{where} answered something that is not HTTP: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _colon, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(int(parts[1]), headers, body)
