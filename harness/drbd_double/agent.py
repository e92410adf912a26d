"""Run the installed ``drbd`` agent as one node of a double-backed resource."""

from __future__ import annotations

import os
import subprocess

from harness.drbd_double.fixture import Replicas
from harness.drbd_double.pacemaker import make_cib
from harness.ocfrun import Result

OUR_AGENT = "/usr/lib/ocf/resource.d/openstack/drbd"
CLONE_META = {"clone_max": "3", "clone_node_max": "1", "promoted_max": "1", "promoted_node_max": "1",
              "notify": "true"}


class Cluster:
    """Agents of every node of ``drbd`` sharing one CIB file, each with its own HA_RSCTMP."""

    def __init__(self, drbd: Replicas, **params: str) -> None:
        assert os.access(OUR_AGENT, os.X_OK), f"{OUR_AGENT} is not installed: run `make install` first"
        self.drbd = drbd
        self.cib = make_cib(os.path.join(drbd.workdir, "cib.xml"), drbd.nodes)
        self.params = {"drbd_resource": drbd.resource, "drbdconf": drbd.conf, **params}
        for node in drbd.nodes:
            os.makedirs(self.rsctmp(node), exist_ok=True)

    def rsctmp(self, node: str) -> str:
        return os.path.join(self.drbd.workdir, f"rsctmp-{node}")

    def env(self, node: str, **meta: str) -> dict[str, str]:
        env = self.drbd.env(node)
        env.update(CIB_file=self.cib, HA_RSCTMP=self.rsctmp(node), OCF_ROOT="/usr/lib/ocf",
                   OCF_RESOURCE_INSTANCE="drbd_r0:0")
        env.update({f"OCF_RESKEY_{k}": v for k, v in self.params.items()})
        env.update({f"OCF_RESKEY_CRM_meta_{k}": v for k, v in
                    {**CLONE_META, "on_node": node, "timeout": "60000", **meta}.items()})
        return env

    def __call__(self, node: str, action: str, **meta: str) -> Result:
        meta.setdefault("interval", "10000" if action == "monitor" else "0")
        done = subprocess.run([OUR_AGENT, action], env=self.env(node, **meta), capture_output=True,
                              text=True, timeout=120, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    def attribute(self, node: str, name: str) -> str | None:
        from harness.drbd_double.pacemaker import node_attribute

        return node_attribute(self.cib, node, name)
