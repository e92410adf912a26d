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
import signal
import subprocess
import time

from harness.memcached import Result
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


class RabbitResource:
    def __init__(self, workdir: str, port: int, epmd_port: int, instance: str = "", **params: str) -> None:
        self.rsctmp = workdir
        self.instance = instance or f"rabbitmq-{port}"
        self.logfile = os.path.join(workdir, "agents.log")
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

    def env(self, depth: int = 0, interval_ms: int = 10000, timeout_s: float = 60) -> dict[str, str]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
               "OCF_RESOURCE_INSTANCE": self.instance, "HA_RSCTMP": self.rsctmp, "HA_LOGFILE": self.logfile,
               "HA_LOGFACILITY": "none", "OCF_CHECK_LEVEL": str(depth),
               "OCF_RESKEY_CRM_meta_interval": str(interval_ms),
               "OCF_RESKEY_CRM_meta_timeout": str(int(timeout_s * 1000))}
        env.update({f"OCF_RESKEY_{key}": value for key, value in self.params.items()})
        return env

    def __call__(self, action: str, depth: int = 0, interval_ms: int = 10000, timeout_s: float = 60,
                 **overrides: str) -> Result:
        env = self.env(depth, interval_ms, timeout_s)
        env.update({f"OCF_RESKEY_{key}": value for key, value in overrides.items()})
        began = time.monotonic()
        done = subprocess.run([AGENT, action], env=env, capture_output=True, text=True,
                              timeout=timeout_s + 30, check=False)
        return Result(done.returncode, done.stderr, time.monotonic() - began)

    def probe(self, **overrides: str) -> Result:
        return self("monitor", interval_ms=0, **overrides)

    @property
    def state_file(self) -> str:
        return os.path.join(self.rsctmp, f"openstack-rabbitmq-{self.instance}", "identity")

    def leader(self) -> int:
        """The pid of the broker's Erlang VM (what the agent recorded)."""
        with open(self.state_file, encoding="utf-8") as handle:
            return int(handle.read().split()[0])

    def ensure_stopped(self) -> None:
        """Finalizer: whatever a test did (a frozen broker included), nothing of ours keeps running."""
        try:
            os.kill(self.leader(), signal.SIGCONT)
        except (OSError, ValueError):
            pass
        result = self("stop")
        if result.rc != 0:
            raise RuntimeError(f"stop of {self.instance} failed: {result}")


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
