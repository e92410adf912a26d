"""The health checks' network side: time limits on every wait, TLS, what reaches a request line.

Servers here are the tests' own, on loopback or in a private network namespace; the agents'
parameter checks run through the installed agents.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import tempfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents import dependencies, http
from agents.mysql import read_greeting
from agents.ocf.codes import OCF, OCFError
from agents.ocf.deadline import Deadline
from agents.ocf.log import Logger
from agents.service import issue_token
from harness.ocfrun import REPO, agent_env, run_agent

KEYSTONE = ["/usr/lib/ocf/resource.d/openstack/keystone"]
LOG = Logger("test", {"HA_LOGFACILITY": "none"})
# A MariaDB greeting's header announcing a 60-byte payload, then the payload.
GREETING = (60).to_bytes(3, "little") + b"\0" + b"\x0a" + b"5.5.5-test\0" + bytes(48)


class Trickler:
    """A server that sends ``data`` one byte every ``interval`` seconds to each client."""

    def __init__(self, listener: socket.socket, data: bytes, interval: float) -> None:
        self.listener = listener
        self.data = data
        self.interval = interval
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _peer = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            for byte in self.data:
                if self.stopped.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes((byte,)))
                except OSError:
                    return

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture
def trickling_tcp():
    listener = socket.create_server(("127.0.0.1", 0))
    server = Trickler(listener, GREETING, 0.3)
    yield listener.getsockname()[1]
    server.close()


def test_a_trickling_database_greeting_is_cut_at_the_cap(trickling_tcp):
    """One byte every 0.3 s: each read is quick, the whole greeting would take 19 s."""
    url = f"mysql+pymysql://u:p@127.0.0.1:{trickling_tcp}/db"
    began = time.monotonic()
    problems = dependencies.database_problems(url, Deadline(30), 1.0, LOG)
    elapsed = time.monotonic() - began
    assert elapsed < 2.5, (elapsed, problems)
    assert problems and "did not answer within 1.0 s" in problems[0], problems


def test_the_mysql_agents_greeting_is_cut_at_its_timeout(tmp_path):
    path = str(tmp_path / "mysqld.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    server = Trickler(listener, GREETING, 0.3)
    try:
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            read_greeting(path, 1.0)
        assert time.monotonic() - began < 2.5
    finally:
        server.close()


def test_a_database_that_refuses_is_named_so():
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    problems = dependencies.database_problems(f"mysql://u:p@127.0.0.1:{port}/db", Deadline(10), 2.0, LOG)
    assert problems == [f"database at 127.0.0.1:{port} refused the connection (nothing listens there)"]


def test_a_database_url_with_a_bad_port_is_a_problem_not_a_traceback():
    problems = dependencies.database_problems("mysql://u:p@db:33o6/x", Deadline(5), 1.0, LOG)
    assert problems == ["the database URL's port is not a number (host db)"]


def test_a_broker_that_refuses_or_hangs_is_named_so():
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    refused = dependencies.rabbit_problems(f"rabbit://u:p@127.0.0.1:{port}/", Deadline(10), 2.0, LOG)
    assert refused == [f"RabbitMQ at 127.0.0.1:{port} refused the connection (nothing listens there)"]
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never speaks AMQP
        port = silent.getsockname()[1]
        began = time.monotonic()
        hung = dependencies.rabbit_problems(f"rabbit://u:p@127.0.0.1:{port}/", Deadline(10), 1.0, LOG)
        assert time.monotonic() - began < 2.5
    assert hung == [f"RabbitMQ at 127.0.0.1:{port} did not answer within 1.0 s"]


def test_within_stops_waiting_at_its_timeout():
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        http.within(0.3, time.sleep, 5)
    assert time.monotonic() - began < 1.5
    assert http.within(1.0, sum, [1, 2]) == 3
    with pytest.raises(ZeroDivisionError):
        http.within(1.0, divmod, 1, 0)


DEAD_DNS_CHECK = textwrap.dedent("""
    import socket, sys, time
    sys.path.insert(0, sys.argv[1])
    from agents import dependencies, http
    from agents.ocf.deadline import Deadline
    from agents.ocf.log import Logger
    # The name server of the private resolv.conf: it reads every query and answers none.
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 53))
    log = Logger("test", {"HA_LOGFACILITY": "none"})
    for what, check in (
            ("database", lambda: dependencies.database_problems(
                "mysql://u:p@db.osha.test:3306/x", Deadline(30), 1.0, log)),
            ("broker", lambda: dependencies.rabbit_problems(
                "rabbit://u:p@mq.osha.test:5672/", Deadline(30), 1.0, log)),
            ("http", lambda: http.request(Deadline(30), "api.osha.test", 80, "/", cap=1.0))):
        began = time.monotonic()
        try:
            outcome = check()
        except http.Unreachable as exc:
            outcome = exc.reason
        print(what, round(time.monotonic() - began, 2), outcome, flush=True)
""")


def test_name_lookups_end_at_the_deadline(tmp_path):
    """A name server that never answers (glibc waits 5 s per try) holds no check past its cap.

    It runs in a private network and mount namespace whose resolv.conf names a silent server.
    """
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
    script = tmp_path / "check.py"
    script.write_text(DEAD_DNS_CHECK)
    shell = (f"ip link set lo up && mount --bind {resolv} /etc/resolv.conf && "
             f"exec /usr/bin/python3 -I {script} {REPO}")
    done = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", shell],
                          capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stdout + done.stderr
    for line in lines:
        _what, elapsed, outcome = line.split(" ", 2)
        assert float(elapsed) < 2.5, line
        assert "did not answer" in outcome, line


# --- TLS ----------------------------------------------------------------------

def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates():
    """A private CA and a certificate for 127.0.0.1 signed by it."""
    with tempfile.TemporaryDirectory(prefix="osha-tls-") as workdir:
        curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        _openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                 "-subj", "/CN=osha test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign", cwd=workdir)
        _openssl("req", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
                 cwd=workdir)
        with open(os.path.join(workdir, "san.ext"), "w", encoding="ascii") as ext:
            ext.write("subjectAltName=IP:127.0.0.1\n")
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=workdir)
        yield workdir


class TokenHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("X-Subject-Token", "tls-token")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_keystone(certificates):
    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(certificates, "server.pem"),
                            os.path.join(certificates, "server.key"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


CREDENTIALS = {"username": "admin", "password": "pw", "project_name": "admin"}


def test_https_token_with_a_certificate_the_system_trusts(https_keystone, certificates, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", os.path.join(certificates, "ca.pem"))
    assert issue_token(Deadline(10), CREDENTIALS, "127.0.0.1", https_keystone, tls=True) == "tls-token"


def test_https_refuses_a_certificate_the_system_does_not_trust(https_keystone):
    """Negative control: the same server, its CA not in the system's store."""
    with pytest.raises(OCFError) as refused:
        issue_token(Deadline(10), CREDENTIALS, "127.0.0.1", https_keystone, tls=True)
    assert "not trusted" in refused.value.reason, refused.value.reason


def test_loopback_addresses():
    for host in ("127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"):
        assert http.is_loopback(host), host
    for host in ("192.0.2.1", "::2", "keystone.example.com", "128.0.0.1", ""):
        assert not http.is_loopback(host), host


# --- what reaches a request line, a configuration file or a file name -----------------

@pytest.mark.parametrize(("name", "value"), [
    ("version_path", "/v3\r\nX-Injected: 1"),
    ("version_path", "/v3 HTTP/1.1"),
    ("version_path", "/v\u20ac"),
    ("version_path", "v3"),
    ("host", "127.0.0.1\n[DEFAULT]\ndebug = true"),
    ("host", "-oops"),
    ("config", "/etc/keystone/keystone.conf\nx"),
    ("log_file", "relative.log"),
])
def test_values_that_would_inject_are_configuration_errors(name, value):
    result = run_agent(KEYSTONE, "validate-all", agent_env({name: value}))
    assert result.rc == OCF.ERR_CONFIGURED, result
    assert len(result.exit_reasons) == 1 and f"parameter {name}" in result.exit_reasons[0], result
    assert "Traceback" not in result.stderr, result.stderr


def test_the_request_refuses_a_path_that_would_inject():
    with pytest.raises(OCFError) as refused:
        http.request(Deadline(5), "127.0.0.1", 9, "/x\r\nHost: elsewhere")
    assert refused.value.code == OCF.ERR_CONFIGURED


def test_an_overlong_resource_name_is_a_configuration_error(tmp_path):
    env = agent_env(OCF_RESOURCE_INSTANCE="k" * 250, HA_RSCTMP=str(tmp_path), HA_LOGFACILITY="none",
                    OCF_RESKEY_CRM_meta_interval="10000")
    monitor = run_agent(KEYSTONE, "monitor", env)
    assert monitor.rc == OCF.ERR_CONFIGURED, monitor
    assert "Traceback" not in monitor.stderr and "characters" in monitor.exit_reasons[0], monitor
    assert run_agent(KEYSTONE, "stop", env).rc == OCF.SUCCESS
    assert run_agent(KEYSTONE, "monitor", {**env, "OCF_RESKEY_CRM_meta_interval": "0"}).rc == OCF.NOT_RUNNING
    # Negative control: a long name that fits is an ordinary resource.
    fits = run_agent(KEYSTONE, "monitor", {**env, "OCF_RESOURCE_INSTANCE": "k" * 200})
    assert fits.rc == OCF.NOT_RUNNING, fits
