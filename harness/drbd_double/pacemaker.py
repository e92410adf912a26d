"""A throw-away CIB file that crm_attribute/crm_master/crm_resource can work on (``CIB_file``)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence


def make_cib(path: str, nodes: Sequence[str]) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        empty = subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True)
        handle.write(empty.stdout)
    env = dict(os.environ, CIB_file=path)
    for number, node in enumerate(nodes, 1):
        subprocess.run(["cibadmin", "-C", "-o", "nodes", "-X", f'<node id="{number}" uname="{node}"/>'],
                       env=env, check=True, capture_output=True)
        subprocess.run(["cibadmin", "-C", "-o", "status", "-X",
                        f'<node_state id="{number}" uname="{node}" in_ccm="true" crmd="online" '
                        'join="member" expected="member"/>'], env=env, check=True, capture_output=True)
    return path


def node_attribute(cib: str, node: str, name: str) -> str | None:
    out = subprocess.run(["crm_attribute", "-N", node, "-n", name, "-l", "reboot", "-G", "-q"],
                         env=dict(os.environ, CIB_file=cib), capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else None
