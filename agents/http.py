"""A minimal HTTP/1.0 client for health checks, on a bare socket (TLS when asked).

``http.client`` pulls in the e-mail package (about 15 ms of imports), more
than a whole depth-10 monitor may cost.  A health check needs one request,
one response, ``Connection: close`` and a hard time limit: that is all this
module does.  Every call is bounded by the caller's deadline, so a frozen
server makes the check fail in time instead of hanging.  It uses the C
module ``_socket`` directly: ``socket.py`` costs another 4 ms of imports
(selectors, its enums) on a path that must stay close to the interpreter's
own start-up time.  TLS (``ssl``) and name lookups (a thread) are imported
only by the calls that need them.

A name lookup has no timeout of its own (``getaddrinfo`` may wait for a
dead DNS server for many seconds): literal addresses are never looked up,
names are resolved in a thread that the caller stops waiting for at its
deadline.
"""

from __future__ import annotations

import _socket

from agents.ocf.codes import OCF, DeadlineExceeded, OCFError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    from agents.ocf.deadline import Deadline

    T = TypeVar("T")

MAX_RESPONSE = 1 << 20
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - mapped to loopback
LOOPBACK_NAMES = frozenset(("localhost", "localhost.localdomain", "ip6-localhost"))
AddrInfo = tuple[int, int, int, str, tuple[str, int]]


class Response:
    __slots__ = ("body", "cookies", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes,
                 cookies: list[str] | None = None) -> None:
        self.status = status
        self.headers = headers  # lower-case names; a repeated header keeps its last value
        self.body = body
        self.cookies = cookies or []  # ``name=value`` of every Set-Cookie, in order

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
            body: bytes = b"", headers: dict[str, str] | None = None, cap: float | None = None,
            tls: bool = False, content_type: str = "application/json") -> Response:
    """One request, one response; raises Unreachable or DeadlineExceeded, never hangs.

    With ``tls`` the server's certificate must be valid for ``host`` in the system's CA store.
    """
    address = client_address(host)
    timeout = deadline.timeout(cap)
    if timeout <= 0:
        raise DeadlineExceeded(f"before asking {address}:{port}{path}")
    try:
        check_path(path)
    except ValueError as exc:
        raise OCFError(OCF.ERR_CONFIGURED, str(exc)) from None
    lines = [f"{method} {path} HTTP/1.0", f"Host: {_host_header(address, port)}", "Connection: close",
             "Accept: application/json", "User-Agent: openstack-ha-agent"]
    if body or method == "POST":
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    try:
        conn = connect(deadline, address, port, cap)
        if tls:
            conn = _wrap(conn, address, deadline.timeout(cap))
        try:
            conn.sendall(raw)
            data = _read_all(conn, deadline, cap)
        finally:
            conn.close()
    except TimeoutError:
        raise Unreachable(f"{address}:{port} did not answer {method} {path} in time") from None
    except ConnectionRefusedError:
        raise Unreachable(f"{address}:{port} refused the connection") from None
    except OSError as exc:
        verify = getattr(exc, "verify_message", None)
        if verify:
            raise Unreachable(f"certificate of {address}:{port} not trusted: {verify}") from None
        raise Unreachable(f"cannot reach {address}:{port}: {exc.strerror or exc}") from None
    return _parse(data, f"{address}:{port}{path}")


def connect(deadline: Deadline, host: str, port: int, cap: float | None = None) -> _socket.socket:
    """A TCP connection to ``host:port`` (a wildcard means loopback), name lookup included,
    within the deadline (and ``cap``); raises OSError, TimeoutError when time runs out.
    """
    return _connect(_addresses(client_address(host), port, deadline, cap), deadline, cap)


def _connect(addresses: list[AddrInfo], deadline: Deadline, cap: float | None) -> _socket.socket:
    """A connected TCP socket to the first address that answers."""
    error: OSError = OSError("no address")
    for family, kind, proto, _name, target in addresses:
        timeout = deadline.timeout(cap)
        if timeout <= 0:
            raise TimeoutError
        conn = _socket.socket(family, kind, proto)
        try:
            conn.settimeout(timeout)
            conn.connect(target)
            return conn
        except OSError as exc:
            conn.close()
            error = exc
    raise error


def _wrap(conn: _socket.socket, server_name: str, timeout: float) -> _socket.socket:
    """TLS over ``conn``, verified against the system's CA store, with the handshake in ``timeout``."""
    import socket
    import ssl

    context = ssl.create_default_context()
    plain = socket.socket(fileno=conn.detach())
    plain.settimeout(max(timeout, 0.001))
    try:
        return context.wrap_socket(plain, server_hostname=server_name)
    except BaseException:
        plain.close()
        raise


def _addresses(address: str, port: int, deadline: Deadline, cap: float | None = None) -> list[AddrInfo]:
    """A literal address as is (getaddrinfo's first call costs milliseconds), else resolved in time."""
    literal = literal_family(address)
    if literal is not None:
        return [(literal, _socket.SOCK_STREAM, 0, "", (address, port))]
    found = within(deadline.timeout(cap), _socket.getaddrinfo, address, port, 0, _socket.SOCK_STREAM)
    return found  # type: ignore[return-value]  # TCP entries: (host, port[, flow, scope])


def resolve(host: str, port: int, deadline: Deadline, cap: float | None = None) -> list[AddrInfo]:
    """``host`` (a literal, or a name looked up within the deadline) as socket addresses.

    Raises TimeoutError when the lookup takes too long, OSError when it fails.
    """
    return _addresses(client_address(host), port, deadline, cap)


def literal_family(address: str) -> int | None:
    """AF_INET or AF_INET6 for a literal IP address, None for a name."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, address)
        except OSError:
            continue
        return family
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback (traffic to it never leaves the node)."""
    address = host.strip("[]").lower()
    if address in LOOPBACK_NAMES:
        return True
    family = literal_family(address)
    if family == _socket.AF_INET:
        return address.split(".")[0] == "127"
    if family == _socket.AF_INET6:
        packed = _socket.inet_pton(family, address)
        return packed == bytes(15) + b"\x01" or (packed[:12] == bytes(10) + b"\xff\xff" and packed[12] == 127)
    return False


def within(timeout: float, call: Callable[..., T], *args: object) -> T:
    """``call(*args)`` in a daemon thread; TimeoutError when it has not returned in ``timeout``.

    For calls that have no time limit of their own (a name lookup, a client library's close).
    A call that overruns is left behind: the agent's process ends soon after and takes it along.
    """
    import threading

    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(max(timeout, 0.0))
    if failure:
        raise failure[0]
    if not outcome:
        raise TimeoutError
    return outcome[0]


def check_path(path: str) -> None:
    """A request target: absolute, printable ASCII, no space (nothing can be injected in the request)."""
    if not path.startswith("/") or not all("!" <= ch <= "~" for ch in path):
        raise ValueError(f"{path!r} is not a URL path (it must start with / and hold printable "
                         "ASCII characters other than space only)")


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
    cookies: list[str] = []
    for line in lines[1:]:
        name, _colon, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
        if name.strip().lower() == "set-cookie":
            cookies.append(value.split(";", 1)[0].strip())
    return Response(int(parts[1]), headers, body, cookies)
