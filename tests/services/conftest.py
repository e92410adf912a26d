"""Fixtures for the OpenStack API agents against the real services.

One private control plane per session (``stack.Stack``); our installed agents
start, monitor and stop keystone, glance-api and nova-api on it.  A watcher
scans every process's argv for the session's passwords during the whole run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from agents.ocf.proc import all_stats
from harness import ocfrun
from harness.logs import service_log_dir
from harness.stack import AGENT_DIR, HOST, PORTS, Stack

AGENTS = ("keystone", "glance-api", "nova-api")
PORT_OF = {"keystone": PORTS["keystone"], "glance-api": PORTS["glance"], "nova-api": PORTS["nova"],
           "neutron-server": PORTS["neutron"]}
USER_OF = {"keystone": "keystone", "glance-api": "glance", "nova-api": "nova", "neutron-server": "neutron"}
EXIT_REASON = "ocf-exit-reason:"


class Result:
    def __init__(self, rc: int, stderr: str, elapsed: float) -> None:
        self.rc, self.stderr, self.elapsed = rc, stderr, elapsed

    @property
    def reason(self) -> str:
        return " ".join(line[len(EXIT_REASON):] for line in self.stderr.splitlines()
                        if line.startswith(EXIT_REASON))

    def __repr__(self) -> str:
        return f"Result(rc={self.rc}, {self.elapsed:.2f}s, stderr={self.stderr[-600:]!r})"


def log_dir(workdir: str, name: str) -> str:
    """A log directory of the service's user, as /var/log/keystone is (the agent opens logs as that
    user)."""
    return service_log_dir(workdir, name, USER_OF[name])


class ServiceAgent:
    """Our installed agent for one service, run the way Pacemaker's executor runs it."""

    def __init__(self, name: str, stack: Stack, workdir: str, **params: str) -> None:
        self.name = name
        self.stack = stack
        self.rsctmp = workdir
        self.logfile = os.path.join(workdir, "agents.log")
        self.params = {"config": stack.configs[name], "host": HOST, "port": str(PORT_OF[name]),
                       "workers": "1", "log_file": os.path.join(log_dir(workdir, name), "console.log"),
                       "credentials": stack.credentials}
        self.params.update(params)
        self.instance = f"test-{name}"

    def env(self, interval_ms: int, timeout_ms: int, depth: int) -> dict[str, str]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
               "OCF_RESOURCE_INSTANCE": self.instance, "HA_RSCTMP": self.rsctmp, "HA_LOGFILE": self.logfile,
               "HA_LOGFACILITY": "none", "OCF_CHECK_LEVEL": str(depth),
               "OCF_RESKEY_CRM_meta_interval": str(interval_ms),
               "OCF_RESKEY_CRM_meta_timeout": str(timeout_ms)}
        env.update({f"OCF_RESKEY_{k}": v for k, v in self.params.items() if v is not None})
        return env

    def __call__(self, action: str, depth: int = 0, interval_ms: int = 10000,
                 timeout_s: float = 60) -> Result:
        env = self.env(interval_ms, int(timeout_s * 1000), depth)
        began = time.monotonic()
        done = subprocess.run([os.path.join(AGENT_DIR, self.name), action], env=env, capture_output=True,
                              text=True, timeout=timeout_s + 30, check=False)
        return Result(done.returncode, done.stderr, time.monotonic() - began)

    def probe(self) -> Result:
        return self("monitor", interval_ms=0)

    def leader(self) -> int:
        path = os.path.join(self.rsctmp, f"openstack-{self.name}-{self.instance}", "identity")
        with open(path, encoding="utf-8") as handle:
            return int(handle.read().split()[0])

    def session(self) -> list[int]:
        """Pids of the service's session (what our agent started)."""
        sid = self.leader()
        return [stat.pid for stat in all_stats() if stat.alive and stat.session == sid]

    def ensure_stopped(self) -> None:
        """Finalizer: whatever a test did, nothing of ours keeps running."""
        try:
            pids = self.session()
        except OSError:
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        result = self("stop")
        assert result.rc == 0, result


class ArgvWatcher(threading.Thread):
    """Reads /proc/*/cmdline all session long; remembers any that carries a secret."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__(daemon=True)
        self.secrets = [s.encode() for s in secrets]
        self.hits: list[str] = []
        self.scans = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as handle:
                        argv = handle.read()
                except OSError:
                    continue
                if any(secret in argv for secret in self.secrets):
                    self.hits.append(argv.replace(b"\0", b" ").decode(errors="replace")[:200])
            self.scans += 1
            self.halt.wait(0.05)


# Package scope: the services, and the watcher scanning every process's argv 20 times a second,
# stop when the last test here ends, not at the end of the session, where they would load the
# machine under every cluster test that follows.
@pytest.fixture(scope="package")
def stack():
    if os.geteuid() != 0:
        pytest.skip("the services run as their own users: needs root")
    missing = [name for name in AGENTS if not os.access(os.path.join(AGENT_DIR, name), os.X_OK)]
    assert not missing, f"agents not installed (run make install): {missing}"
    built = Stack()
    watcher = ArgvWatcher(built.secrets)
    watcher.start()
    built.watcher = watcher
    try:
        built.prepare_mysql()
        built.prepare_rabbit()
        built.prepare_keystone()
        built.prepare_glance()
        built.prepare_nova()
        yield built
    finally:
        watcher.halt.set()
        watcher.join(5)
        built.close()


def files_holding(directory: str, secrets: tuple[str, ...]) -> list[str]:
    """The logs and configuration files under ``directory`` that hold one of ``secrets``."""
    found = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if name.endswith((".log", ".conf")):
                with open(os.path.join(root, name), "rb") as handle:
                    data = handle.read()
                if any(secret.encode() in data for secret in secrets):
                    found.append(os.path.join(root, name))
    return found


def secrets_leaked(stack: Stack, workdir: str) -> list[str]:
    """Where the session's passwords showed up: a process's argv, our agents' and services' files."""
    leaks = [f"argv: {hit}" for hit in stack.watcher.hits]
    if stack.watcher.scans <= 10:
        leaks.append(f"the argv watcher ran only {stack.watcher.scans} scans")
    return leaks + [f"file: {path}" for path in files_holding(workdir, stack.secrets)]


# Checked when the last test of the package has run, whatever the order of the tests: a leak
# fails the run as an error at this fixture's teardown.
@pytest.fixture(scope="package")
def workdir(stack):
    path = tempfile.mkdtemp(prefix="osha-agents-")
    # Like /run/resource-agents (1755): service users reach the eventlet listen override.
    os.chmod(path, 0o755)  # noqa: S103
    yield path
    try:
        leaks = secrets_leaked(stack, path)
        assert not leaks, f"the session's passwords leaked: {leaks}"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent_for(stack, workdir):
    """``agent_for(name, **params)``: an agent whose service is stopped again after the test."""
    made: list[ServiceAgent] = []

    def make(name: str, **params: str) -> ServiceAgent:
        agent = ServiceAgent(name, stack, workdir, **params)
        made.append(agent)
        return agent

    yield make
    for agent in reversed(made):
        agent.ensure_stopped()


@pytest.fixture
def mysql_paused(stack):
    """Stops MariaDB for the test and brings it back afterwards."""
    yield stack.mysql.stop
    if stack.mysql.proc is None:
        stack.start_mysql()


@pytest.fixture
def rabbit_paused(stack):
    yield stack.stop_rabbit
    if stack.rabbit.proc is None:
        stack.start_rabbit()


# Checks every API agent passes the same way (keystone, glance-api, nova-api, neutron-server, the
# dashboard): each test module calls them with its own agent and parameters.

def assert_refuses_a_taken_port(agent: ServiceAgent, host: str, port: int) -> None:
    """Another process listens on the agent's port: start fails (1) naming it, nothing of ours runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((host, port))
        squatter.listen(1)
        start = agent("start")
        assert start.rc == 1, start
        assert "already in use" in start.reason and f"pid {os.getpid()}" in start.reason, start
        assert agent("monitor").rc == 7


def assert_passes_ocf_tester(name: str, params: dict[str, str]) -> None:
    """The real ``ocf-tester`` on the installed agent with these parameters."""
    ocfrun.assert_passes_ocf_tester(os.path.join(AGENT_DIR, name), f"tester-{name}", params, timeout=300)
