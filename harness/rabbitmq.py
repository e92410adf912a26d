"""Our installed rabbitmq agent, run the way Pacemaker's executor runs it (tests, bench).

One ``RabbitResource`` is one resource instance with its own node name, ports, state under
``workdir`` (``HA_RSCTMP``) and its own directories there (``base-<instance>`` for HOME and data,
``config-<instance>``, ``logs-<instance>``: made by the agent at the first start). The Erlang
cookie and the monitor's credentials are root-only files in ``workdir`` (``write_secrets``).
epmd, which the first broker starts and which outlives it, listens on a port of the test's own:
``stop_epmd`` ends it.

Pacemaker's view for the agent without a Pacemaker: a resource with ``pacemaker_node`` set is run
with ``OCF_RESKEY_CRM_meta_on_node`` (its node's name, what ``%h`` in ``nodename`` stands for), and
with ``crm_nodes`` set, ``pacemaker_stub/crm_node`` first on its PATH, a test double that prints the
membership file ``write_membership`` writes, in ``crm_node -l``'s format (``ID NAME STATE``).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess

from harness.ocfrun import InstalledResource
from harness.stack import AGENT_DIR, HOST

TYPE_CHECKING = False
if TYPE_CHECKING:
    import pika

AGENT = os.path.join(AGENT_DIR, "rabbitmq")
MONITOR_USER = ("guest", "guest")  # RabbitMQ's default account: accepted from loopback only
STUB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pacemaker_stub")
CLI_DIR = "/usr/lib/rabbitmq/bin"


def write_membership(path: str, nodes: dict[str, bool]) -> None:
    """The membership the crm_node stub prints: Pacemaker node name -> online (member) or lost."""
    lines = [f"{number} {name} {'member' if online else 'lost'}\n"
             for number, (name, online) in enumerate(nodes.items(), start=1)]
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    os.replace(tmp, path)


def write_secrets(workdir: str) -> tuple[str, str, str]:
    """``(cookie_file, credentials_file, cookie)``: root-only files in ``workdir``."""
    cookie = secrets.token_hex(20)
    cookie_file = os.path.join(workdir, "rabbitmq.cookie")
    credentials = os.path.join(workdir, "rabbitmq-monitor.ini")
    for path, text in ((cookie_file, cookie + "\n"),
                       (credentials, f"[credentials]\nusername = {MONITOR_USER[0]}\n"
                                     f"password = {MONITOR_USER[1]}\n")):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
    return cookie_file, credentials, cookie


class RabbitResource(InstalledResource):
    """One broker as a resource instance; ``leader()`` is the pid of its Erlang VM."""

    AGENT = AGENT
    NAME = "rabbitmq"
    TIMEOUT_S = 60

    def __init__(self, workdir: str, port: int, epmd_port: int, instance: str = "", pacemaker_node: str = "",
                 crm_nodes: str = "", **params: str) -> None:
        super().__init__(workdir, instance or f"rabbitmq-{port}")
        self.pacemaker_node = pacemaker_node  # CRM_meta_on_node
        self.crm_nodes = crm_nodes  # the membership file of the crm_node stub
        node = f"rabbit-{port}@localhost"
        self.params = {
            "nodename": node, "host": HOST, "port": str(port), "dist_port": str(port + 1),
            "epmd_port": str(epmd_port), "cookie_file": os.path.join(workdir, "rabbitmq.cookie"),
            "credentials": os.path.join(workdir, "rabbitmq-monitor.ini"),
            "base_dir": os.path.join(workdir, f"base-{self.instance}"),
            "config_dir": os.path.join(workdir, f"config-{self.instance}"),
            "log_dir": os.path.join(workdir, f"logs-{self.instance}"), **params}

    def env(self, depth: int = 0, interval_ms: int = 10000, timeout_s: float | None = None) -> dict[str, str]:
        env = super().env(depth, interval_ms, timeout_s)
        if self.pacemaker_node:
            env["OCF_RESKEY_CRM_meta_on_node"] = self.pacemaker_node
        if self.crm_nodes:
            env["PATH"] = f"{STUB_DIR}:{env['PATH']}"
            env["OCF_TEST_CRM_NODES"] = self.crm_nodes
        return env

    @property
    def port(self) -> int:
        return int(self.params["port"])

    @property
    def nodename(self) -> str:
        return self.params["nodename"].replace("%h", self.pacemaker_node or os.uname().nodename.split(".")[0])

    def ctl(self, *args: str, tool: str = "rabbitmqctl",
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``TOOL -n <this node> ARGS`` as user rabbitmq with this broker's HOME (cookie) and epmd."""
        env = {"PATH": "/usr/bin:/bin", "HOME": self.params["base_dir"], "LANG": "C.UTF-8",
               "ERL_EPMD_PORT": self.params["epmd_port"]}
        return subprocess.run([os.path.join(CLI_DIR, tool), "-n", self.nodename, *args], env=env,
                              capture_output=True, text=True, timeout=timeout, check=False, user="rabbitmq",
                              group="rabbitmq", cwd=self.params["base_dir"])

    @property
    def broker_log(self) -> str:
        return os.path.join(self.params["log_dir"], f"{self.nodename}.log")

    @property
    def data_dir(self) -> str:
        return os.path.join(self.params["base_dir"], "mnesia", self.nodename)


# AMQP clients of the tests -------------------------------------------------------------

def amqp_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=5) as conn:
            conn.sendall(b"AMQP\x00\x00\x09\x01")
            return conn.recv(11)[7:11] == b"\x00\x0a\x00\x0a"
    except OSError:
        return False


def connection(port: int) -> pika.BlockingConnection:
    import pika

    return pika.BlockingConnection(pika.ConnectionParameters(
        host=HOST, port=port, credentials=pika.PlainCredentials(*MONITOR_USER), socket_timeout=10,
        stack_timeout=10, blocked_connection_timeout=10, connection_attempts=1, heartbeat=0))


def publish_confirmed(port: int, queue: str, count: int) -> list[bytes]:
    import pika

    bodies = [f"message {number}".encode() for number in range(count)]
    conn = connection(port)
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        for body in bodies:  # each returns once the broker confirmed it (raises otherwise)
            channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
    finally:
        conn.close()
    return bodies


def consume_all(port: int, queue: str) -> list[bytes]:
    conn = connection(port)
    got = []
    try:
        channel = conn.channel()
        while True:
            method, _props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            got.append(body)
    finally:
        conn.close()
    return got



def stop_epmd(port: int) -> None:
    """End the epmd (user rabbitmq) listening on the test's ``port``, started by a test broker."""
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            try:
                proc = psutil.Process(conn.pid)
                if proc.name() == "epmd" and proc.username() == "rabbitmq":
                    proc.terminate()
                    proc.wait(10)
            except psutil.Error:
                continue
