"""Our installed memcached agent, run the way Pacemaker's executor runs it (tests, bench).

One ``MemcachedResource`` is one resource instance: its own state under
``workdir`` (``HA_RSCTMP``), its own port, its log in ``workdir/memcached-logs``
(a directory the agent creates for user memcache at the first start).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from harness.stack import AGENT_DIR, HOST

AGENT = os.path.join(AGENT_DIR, "memcached")
EXIT_REASON = "ocf-exit-reason:"


class Result:
    def __init__(self, rc: int, stderr: str, elapsed: float) -> None:
        self.rc, self.stderr, self.elapsed = rc, stderr, elapsed

    @property
    def reasons(self) -> list[str]:
        return [line[len(EXIT_REASON):] for line in self.stderr.splitlines() if line.startswith(EXIT_REASON)]

    @property
    def reason(self) -> str:
        return " ".join(self.reasons)

    def __repr__(self) -> str:
        return f"Result(rc={self.rc}, {self.elapsed:.2f}s, stderr={self.stderr[-600:]!r})"


class MemcachedResource:
    def __init__(self, workdir: str, port: int, instance: str = "", **params: str) -> None:
        self.rsctmp = workdir
        self.instance = instance or f"memcached-{port}"
        self.logfile = os.path.join(workdir, "agents.log")
        self.params = {"host": HOST, "port": str(port),
                       "log_file": os.path.join(workdir, "memcached-logs", f"{self.instance}.log"), **params}

    @property
    def port(self) -> int:
        return int(self.params["port"])

    def env(self, depth: int = 0, interval_ms: int = 10000, timeout_s: float = 20) -> dict[str, str]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
               "OCF_RESOURCE_INSTANCE": self.instance, "HA_RSCTMP": self.rsctmp, "HA_LOGFILE": self.logfile,
               "HA_LOGFACILITY": "none", "OCF_CHECK_LEVEL": str(depth),
               "OCF_RESKEY_CRM_meta_interval": str(interval_ms),
               "OCF_RESKEY_CRM_meta_timeout": str(int(timeout_s * 1000))}
        env.update({f"OCF_RESKEY_{key}": value for key, value in self.params.items()})
        return env

    def __call__(self, action: str, depth: int = 0, interval_ms: int = 10000, timeout_s: float = 20,
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
        return os.path.join(self.rsctmp, f"openstack-memcached-{self.instance}", "identity")

    def leader(self) -> int:
        with open(self.state_file, encoding="utf-8") as handle:
            return int(handle.read().split()[0])

    def ensure_stopped(self) -> None:
        """Finalizer: whatever a test did (a frozen server included), nothing of ours keeps running."""
        try:
            os.kill(self.leader(), signal.SIGCONT)
        except (OSError, ValueError):
            pass
        result = self("stop")
        if result.rc != 0:
            raise RuntimeError(f"stop of {self.instance} failed: {result}")
