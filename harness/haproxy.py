"""Our installed haproxy agent, run the way Pacemaker's executor runs it, with real backends (tests, bench).

* ``HAProxyResource``: one resource instance, its state under ``workdir`` (``HA_RSCTMP``), its
  configuration file and master log there too.
* ``write_config``: an HAProxy configuration (workers as user haproxy) with one HTTP frontend
  and the given backends, health-checked every 100 ms so that a stopped server is seen as down
  at once.
* ``Backend``: a small HTTP server on a loopback port, in a thread of the test, answering each
  request with its own name (after ``delay_s``: a slowed-down instance).
* ``Stream``: a client sending requests through the proxy, each on a new connection, for as long as
  it runs (bounded in count and time), counting failures.
"""

from __future__ import annotations

import http.client
import http.server
import os
import threading
import time

from harness.ocfrun import InstalledResource
from harness.stack import AGENT_DIR, HOST

AGENT = os.path.join(AGENT_DIR, "haproxy")
HAPROXY = "/usr/sbin/haproxy"
CHECK_INTERVAL_MS = 100


def write_config(path: str, port: int, backends: dict[str, list[tuple[str, int]]],
                 default: str | None = None, extra: str = "") -> None:
    """Write an HAProxy configuration (mode 0644): frontend ``fe`` on HOST:port, then ``backends``."""
    lines = ["global", "    user haproxy", "    group haproxy", "    maxconn 256", "",
             "defaults", "    mode http", "    timeout connect 2s", "    timeout client 10s",
             "    timeout server 10s", "    option http-server-close", "",
             "frontend fe", f"    bind {HOST}:{port}"]
    if default or backends:
        lines.append(f"    default_backend {default or next(iter(backends))}")
    for name, servers in backends.items():
        lines += ["", f"backend {name}"]
        lines += [f"    server {server} {HOST}:{server_port} check inter {CHECK_INTERVAL_MS}ms fall 1 rise 1"
                  for server, server_port in servers]
    text = "\n".join(lines) + "\n" + extra
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o644)


class HAProxyResource(InstalledResource):
    AGENT = AGENT
    NAME = "haproxy"

    def __init__(self, workdir: str, instance: str = "haproxy-test", **params: str) -> None:
        super().__init__(workdir, instance)
        self.params = {"config": os.path.join(workdir, "haproxy.cfg"),
                       "log_file": os.path.join(workdir, f"{instance}.log"), **params}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        time.sleep(self.server.delay_s)  # type: ignore[attr-defined]
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that left before its answer (a health check given up) is no news


class Backend:
    """An HTTP server on host:port answering every GET with ``name``, ``delay_s`` after it came."""

    def __init__(self, name: str, port: int, host: str = HOST, delay_s: float = 0.0) -> None:
        self.name = name
        self.port = port
        self.host = host
        self.delay_s = delay_s
        self.server: _Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> Backend:
        server = _Server((self.host, self.port), _Handler)
        server.daemon_threads = True
        server.name = self.name  # type: ignore[attr-defined]
        server.delay_s = self.delay_s  # type: ignore[attr-defined]
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.thread is not None:
            self.thread.join(5)
            self.thread = None


def get(port: int, timeout: float = 5.0, host: str = HOST) -> str:
    """One GET through the proxy on a new connection: the body (the backend's name)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        return body
    finally:
        conn.close()


class Stream(threading.Thread):
    """GETs through the proxy one after the other until stopped (at most ``limit`` of them or
    ``max_s`` seconds), each on a new connection; counts answers and failures."""

    def __init__(self, port: int, limit: int = 20000, max_s: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.limit = limit
        self.max_s = max_s
        self.answers: dict[str, int] = {}
        self.failures: list[str] = []
        self.halt = threading.Event()

    @property
    def requests(self) -> int:
        return sum(self.answers.values()) + len(self.failures)

    def run(self) -> None:
        until = time.monotonic() + self.max_s
        while not self.halt.is_set() and self.requests < self.limit and time.monotonic() < until:
            try:
                body = get(self.port)
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                self.halt.wait(0.01)  # a refused connection returns at once: do not spin
                continue
            self.answers[body] = self.answers.get(body, 0) + 1

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
