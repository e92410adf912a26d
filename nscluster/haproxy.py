"""HAProxy in front of the APIs in the namespace cluster: the ``openstack-3ctl-haproxy`` profile, for real.

``fronted(cluster, stack)`` turns a stack into the same stack behind HAProxy, as an operator's site
does: the site names the HAProxy profile, gives every node its address and the controllers' network
(``[haproxy] network``: the APIs then listen on each node's own address there, HAProxy on the public
VIP at the same ports), and crmtool writes ``/etc/haproxy/haproxy.cfg`` on every node from the same
site before the configuration is pushed. ``CPUHogs`` runs a CPU hog inside every node (to prove
margin on a machine that is busy).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
from pathlib import Path
from types import TracebackType

from nscluster import config
from nscluster.cluster import Cluster

PROFILE = "openstack-3ctl-haproxy"
RESOURCE = "haproxy"
CLONE = "haproxy-clone"
CONFIG_DIR = "/etc/haproxy"
CONFIG = f"{CONFIG_DIR}/haproxy.cfg"
LOG = f"{CONFIG_DIR}/haproxy-ocf.log"
PRIVATE_DIRS = (CONFIG_DIR,)
MAX_SECONDS = 1800  # a hog left behind by a killed test run ends by itself
# Seen within seconds, like the APIs' own monitors in this harness.
MONITORS = (
    {"name": "monitor", "interval": "5s", "timeout": "10s"},
    {"name": "monitor", "interval": "7s", "timeout": "10s", "depth": 10},
)


def fronted(cluster: Cluster, stack: config.Stack) -> config.Stack:
    """``stack`` with HAProxy on every node in front of its API clones."""
    tables: dict[str, dict[str, object]] = {name: dict(table) for name, table in stack.site_overrides.items()}
    tables["haproxy"] = {"network": cluster.spec.subnet}
    for name, node in cluster.nodes.items():
        tables[f"nodes.{name}"] = {**tables.get(f"nodes.{name}", {}), "address": node.address}
    tables[f"primitive.{RESOURCE}"] = {"ops": [{"name": "start", "timeout": "60s"},
                                               {"name": "stop", "timeout": "60s"}, *MONITORS]}
    tables[f"primitive.{RESOURCE}.params"] = {"log_file": LOG}
    tables[f"clone.{CLONE}"] = {"resource": RESOURCE}
    return dataclasses.replace(stack, profile=PROFILE, generated=(("haproxy", CONFIG),),
                               site_overrides=tables)


class CPUHogs:
    """``stress-ng`` on one CPU at ``load`` percent inside every powered node, for the ``with`` block.

    Each hog lives in its node's PID namespace: a crashed node's hog dies with it.
    """

    def __init__(self, cluster: Cluster, load: int = 60) -> None:
        self.cluster = cluster
        self.load = load
        self.hogs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> CPUHogs:
        for node in self.cluster.nodes.values():
            if node.pid1 is None:
                continue
            argv = ["nsenter", "-t", str(node.pid1), "-m", "-u", "-i", "-n", "-p", "--",
                    "stress-ng", "--cpu", "1", "--cpu-load", str(self.load), "--quiet",
                    "--timeout", f"{MAX_SECONDS}s"]
            self.hogs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for hog in self.hogs:
            # nsenter forwards no signal: stop the stress-ng it forked (its own child, so ours).
            for child in children(hog.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)
        for hog in self.hogs:
            try:
                hog.wait(timeout=15)
            except subprocess.TimeoutExpired:
                hog.kill()
                hog.wait(timeout=15)


def children(pid: int) -> list[int]:
    try:
        return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    except OSError:
        return []
