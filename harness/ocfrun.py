"""Run an agent the way Pacemaker's executor does, and read what it said.

``InstalledResource`` is the base of the harness classes for one resource instance of an
installed agent (``harness.memcached``, ``harness.haproxy``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXIT_REASON_PREFIX = "ocf-exit-reason:"


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def exit_reasons(self) -> list[str]:
        return [line[len(EXIT_REASON_PREFIX):] for line in self.stderr.splitlines()
                if line.startswith(EXIT_REASON_PREFIX)]


def agent_env(params: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "OCF_ROOT": "/usr/lib/ocf",
           "OCF_RESOURCE_INSTANCE": "test"}
    env.update({f"OCF_RESKEY_{k}": v for k, v in (params or {}).items()})
    env.update(extra)
    return env


def run_agent(argv: list[str], action: str, env: dict[str, str], timeout: float = 60) -> Result:
    done = subprocess.run([*argv, action], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def source_agent(path: str) -> list[str]:
    """argv that runs an agent module from the source tree on Debian's interpreter."""
    return [sys.executable, os.path.join(REPO, path)]


def assert_passes_ocf_tester(agent: str, instance: str, params: Mapping[str, str], rsctmp: str | None = None,
                             timeout: float = 300) -> None:
    """The real ``ocf-tester`` on the installed ``agent`` as resource ``instance`` with these parameters,
    its state under ``rsctmp`` (``HA_RSCTMP``; None: this process's environment)."""
    argv = ["ocf-tester", "-n", instance]
    for key, value in params.items():
        argv += ["-o", f"{key}={value}"]
    env = None if rsctmp is None else {"PATH": os.environ["PATH"], "HA_RSCTMP": rsctmp}
    done = subprocess.run([*argv, agent], capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "passed all tests" in done.stdout, done.stdout


class TimedResult:
    """What one action of an installed agent returned: its exit code, stderr and how long it took."""

    def __init__(self, rc: int, stderr: str, elapsed: float) -> None:
        self.rc, self.stderr, self.elapsed = rc, stderr, elapsed

    @property
    def reasons(self) -> list[str]:
        return [line[len(EXIT_REASON_PREFIX):] for line in self.stderr.splitlines()
                if line.startswith(EXIT_REASON_PREFIX)]

    @property
    def reason(self) -> str:
        return " ".join(self.reasons)

    def __repr__(self) -> str:
        return f"Result(rc={self.rc}, {self.elapsed:.2f}s, stderr={self.stderr[-600:]!r})"


class InstalledResource:
    """One resource instance of an installed agent (``AGENT``), run the way Pacemaker's executor runs it.

    Its state is under ``workdir`` (``HA_RSCTMP``), in ``openstack-<NAME>-<instance>``; the agent
    logs to ``workdir/agents.log``; ``params`` are its ``OCF_RESKEY_`` parameters (a subclass
    fills them in). A call ``resource(action, ...)`` runs one action and returns a ``TimedResult``.
    """

    AGENT: str
    NAME: str
    TIMEOUT_S: float = 20  # an action's default timeout (OCF_RESKEY_CRM_meta_timeout)

    def __init__(self, workdir: str, instance: str) -> None:
        self.rsctmp = workdir
        self.instance = instance
        self.logfile = os.path.join(workdir, "agents.log")
        self.params: dict[str, str] = {}

    def env(self, depth: int = 0, interval_ms: int = 10000, timeout_s: float | None = None) -> dict[str, str]:
        timeout = self.TIMEOUT_S if timeout_s is None else timeout_s
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
               "OCF_RESOURCE_INSTANCE": self.instance, "HA_RSCTMP": self.rsctmp, "HA_LOGFILE": self.logfile,
               "HA_LOGFACILITY": "none", "OCF_CHECK_LEVEL": str(depth),
               "OCF_RESKEY_CRM_meta_interval": str(interval_ms),
               "OCF_RESKEY_CRM_meta_timeout": str(int(timeout * 1000))}
        env.update({f"OCF_RESKEY_{key}": value for key, value in self.params.items()})
        return env

    def __call__(self, action: str, depth: int = 0, interval_ms: int = 10000, timeout_s: float | None = None,
                 **overrides: str) -> TimedResult:
        timeout = self.TIMEOUT_S if timeout_s is None else timeout_s
        env = self.env(depth, interval_ms, timeout)
        env.update({f"OCF_RESKEY_{key}": value for key, value in overrides.items()})
        began = time.monotonic()
        done = subprocess.run([self.AGENT, action], env=env, capture_output=True, text=True,
                              timeout=timeout + 30, check=False)
        return TimedResult(done.returncode, done.stderr, time.monotonic() - began)

    def probe(self, **overrides: str) -> TimedResult:
        return self("monitor", interval_ms=0, **overrides)  # type: ignore[arg-type]

    @property
    def state_dir(self) -> str:
        return os.path.join(self.rsctmp, f"openstack-{self.NAME}-{self.instance}")

    @property
    def state_file(self) -> str:
        return os.path.join(self.state_dir, "identity")

    def leader(self) -> int:
        """The pid the agent recorded for the instance's main process."""
        with open(self.state_file, encoding="utf-8") as handle:
            return int(handle.read().split()[0])

    def ensure_stopped(self) -> None:
        """Finalizer: whatever a test did (a frozen process included), nothing of ours keeps running."""
        try:
            os.kill(self.leader(), signal.SIGCONT)
        except (OSError, ValueError):
            pass
        result = self("stop")
        if result.rc != 0:
            raise RuntimeError(f"stop of {self.instance} failed: {result}")


def assert_broken_parameter(resource: InstalledResource, override: Mapping[str, str], code: int,
                            named: str) -> None:
    """With ``override``, validate-all and start fail with ``code`` and one exit reason naming ``named``;
    a probe finds nothing running and stop succeeds."""
    for action in ("validate-all", "start"):
        result = resource(action, **override)  # type: ignore[arg-type]
        assert result.rc == code and named in result.reason, (action, result)
        assert len(result.reasons) == 1, result
    probe = resource.probe(**override)
    assert probe.rc == 7, probe
    stop = resource("stop", **override)  # type: ignore[arg-type]
    assert stop.rc == 0, stop
