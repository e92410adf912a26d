"""Our installed rabbitmq agent, run the way Pacemaker's executor runs it (tests, bench).

One ``RabbitResource`` is one resource instance with its own node name, ports, state under
``workdir`` (``HA_RSCTMP``) and its own directories there (``base-<instance>`` for HOME and data,
``config-<instance>``, ``logs-<instance>``: made by the agent at the first start). The Erlang
cookie and the monitor's credentials are root-only files in ``workdir`` (``write_secrets``).
epmd, which the first broker starts and which outlives it, listens on a port of the test's own:
``stop_epmd`` ends it.
"""

from __future__ import annotations

import os
import secrets

from harness.ocfrun import InstalledResource
from harness.stack import AGENT_DIR, HOST

AGENT = os.path.join(AGENT_DIR, "rabbitmq")
MONITOR_USER = ("guest", "guest")  # RabbitMQ's default account: accepted from loopback only


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

    def __init__(self, workdir: str, port: int, epmd_port: int, instance: str = "", **params: str) -> None:
        super().__init__(workdir, instance or f"rabbitmq-{port}")
        node = f"rabbit-{port}@localhost"
        self.params = {
            "nodename": node, "host": HOST, "port": str(port), "dist_port": str(port + 1),
            "epmd_port": str(epmd_port), "cookie_file": os.path.join(workdir, "rabbitmq.cookie"),
            "credentials": os.path.join(workdir, "rabbitmq-monitor.ini"),
            "base_dir": os.path.join(workdir, f"base-{self.instance}"),
            "config_dir": os.path.join(workdir, f"config-{self.instance}"),
            "log_dir": os.path.join(workdir, f"logs-{self.instance}"), **params}

    @property
    def port(self) -> int:
        return int(self.params["port"])

    @property
    def nodename(self) -> str:
        return self.params["nodename"]

    @property
    def broker_log(self) -> str:
        return os.path.join(self.params["log_dir"], f"{self.nodename}.log")

    @property
    def data_dir(self) -> str:
        return os.path.join(self.params["base_dir"], "mnesia", self.nodename)


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
