"""Run an agent the way Pacemaker's executor does, and read what it said."""

from __future__ import annotations

import os
import subprocess
import sys
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
