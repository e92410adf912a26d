"""The configuration pushed to a namespace cluster: ``crmtool render`` of the default profile.

The harness writes the operator's site file for the namespace addresses (nodes,
fencing through the harness's fence agent, the virtual IPs on ``eth0``), turns
off the profile entries whose services this cluster does not run, and pushes
``crmtool render site.toml | cibadmin --replace --scope configuration --xml-pipe``
from inside a node, exactly as the README tells an operator to do.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.registry import PROVIDER
from crmtool.load import DEFAULT_STORAGE_NODES
from nscluster.cluster import HARNESS_PROPERTIES, NODE_NIC, REPO_ROOT, Cluster, ClusterSpec

PROFILE = "openstack-3ctl"
CRMTOOL = "/usr/local/bin/crmtool"
OUR_VIP = f"ocf:{PROVIDER}:vip"
IPADDR2 = "ocf:heartbeat:IPaddr2"
PUBLIC_VIP = "public-vip"
DATABASE_VIP = "db-vip"
DUMMY = "dummy"
# What a fencing action may take besides the fence device's own delay: the power-off of a node whose
# processes die slowly on a loaded machine (the broker waits up to 10 s for them), and the agent runs.
FENCE_ACTION_S = 30

# The profile's resources this harness runs (the virtual IPs); every other resource of the
# profile needs a service it does not run yet, and so does a constraint that names one.
PROFILE_RESOURCES_RUN = (PUBLIC_VIP, DATABASE_VIP)
RESOURCE_SECTIONS = ("primitive", "clone", "group")
CONSTRAINT_SECTIONS = ("colocation", "order")
CONSTRAINT_REFERENCES = ("rsc", "with", "first", "then")

TomlValue = str | int | float | bool | list[object] | dict[str, object]


@dataclasses.dataclass(frozen=True)
class Stack:
    """What the site runs on top of the profile's virtual IPs."""

    vip_agent: str = OUR_VIP
    dummy_clone: bool = True
    # A slow fence device: seconds the fence agent waits before acting.
    fence_delay_s: int = 0
    monitor_interval: str = "5s"
    # The site's storage nodes (``[storage] nodes``); empty: the profile's default, the first three.
    storage_nodes: tuple[str, ...] = ()
    # Site tables applied last, as an operator's site file would: add resources, re-enable
    # profile entries ({"primitive.mysql": {"enabled": True}}), change parameters.
    site_overrides: Mapping[str, Mapping[str, object]] = dataclasses.field(default_factory=dict)
    # The profile the site names: the default, or one over it (``openstack-3ctl-haproxy``).
    profile: str = PROFILE
    # Files crmtool generates from the same site on every running node before the push:
    # (crmtool command, path inside the node), e.g. ("haproxy", "/etc/haproxy/haproxy.cfg").
    generated: tuple[tuple[str, str], ...] = ()


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string of printable text is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def toml_document(top: Mapping[str, object], tables: Mapping[str, Mapping[str, object]]) -> str:
    lines = [f"{key} = {toml_value(value)}" for key, value in top.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]", *(f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def site_tables(spec: ClusterSpec, stack: Stack) -> dict[str, dict[str, object]]:
    tables: dict[str, dict[str, object]] = {
        "cluster.properties": {"stonith-timeout": f"{FENCE_ACTION_S + stack.fence_delay_s}s",
                               **HARNESS_PROPERTIES},
        "fencing": {"agent": spec.fence_agent_name,
                    "params": {"delay": str(stack.fence_delay_s)} if stack.fence_delay_s else {}},
    }
    for name in spec.node_names:
        tables[f"nodes.{name}"] = {}
    for section, entries in profile_entries_not_run().items():
        for entry in entries:
            tables[f"{section}.{entry}"] = {"enabled": False}
    vip_ops = [{"name": "monitor", "interval": stack.monitor_interval, "timeout": "20s"}]
    for number, vip in enumerate((PUBLIC_VIP, DATABASE_VIP)):
        tables[f"primitive.{vip}"] = {"agent": stack.vip_agent, "ops": vip_ops}
        tables[f"primitive.{vip}.params"] = {"ip": spec.vip_address(number),
                                             "cidr_netmask": spec.network.prefixlen, "nic": NODE_NIC}
    if stack.dummy_clone:
        tables[f"primitive.{DUMMY}"] = {"agent": "ocf:pacemaker:Dummy", "ops": vip_ops}
        tables[f"clone.{DUMMY}-clone"] = {"resource": DUMMY, "meta": {"interleave": True}}
    for name, table in stack.site_overrides.items():
        tables[name] = {**tables.get(name, {}), **table}
    tables["storage"] = storage_table(tables, stack)
    return tables


@functools.cache
def profile() -> dict[str, Any]:
    with open(REPO_ROOT / "cib-templates" / f"{PROFILE}.toml", "rb") as handle:
        return tomllib.load(handle)


def _section(name: str) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = profile().get(name, {})
    return tables


@functools.cache
def profile_entries_not_run() -> dict[str, tuple[str, ...]]:
    """The profile's entries the site turns off, by section, read from the profile itself."""
    entries = {section: tuple(rsc for rsc in _section(section) if rsc not in PROFILE_RESOURCES_RUN)
               for section in RESOURCE_SECTIONS}
    off = {rsc for names in entries.values() for rsc in names}
    for section in CONSTRAINT_SECTIONS:
        entries[section] = tuple(key for key, table in _section(section).items()
                                 if any(table.get(ref) in off for ref in CONSTRAINT_REFERENCES))
    return entries


def storage_bound() -> tuple[str, ...]:
    """The profile's resources that live on the storage nodes only (``[storage] resources``)."""
    return tuple(profile()["storage"]["resources"])


def storage_nodes(spec: ClusterSpec, stack: Stack) -> tuple[str, ...]:
    return tuple(sorted(stack.storage_nodes or spec.node_names[:DEFAULT_STORAGE_NODES]))


def storage_table(tables: Mapping[str, Mapping[str, object]], stack: Stack) -> dict[str, object]:
    """The profile's storage-bound resources that this site runs (binding a disabled one is an error),
    and the site's storage nodes."""
    running = [rsc for rsc in storage_bound()
               if all(tables.get(f"{kind}.{rsc}", {}).get("enabled", True) for kind in ("clone", "group"))]
    table: dict[str, object] = {"resources": running}
    if stack.storage_nodes:
        table["nodes"] = list(stack.storage_nodes)
    return table


def site_file(spec: ClusterSpec, stack: Stack) -> str:
    header = f"# Site of namespace cluster {spec.run_id}, over profile {stack.profile}.\n"
    return header + toml_document({"profile": stack.profile}, site_tables(spec, stack))


def write_site(cluster: Cluster, stack: Stack) -> Path:
    path = cluster.spec.state_dir / "site.toml"
    path.write_text(site_file(cluster.spec, stack))
    return path


def render(cluster: Cluster, stack: Stack, via: str | None = None) -> str:
    """``crmtool render site.toml`` inside a node; returns the ``<configuration>`` XML."""
    site = write_site(cluster, stack)
    node = via or cluster.any_running_node()
    return cluster.run(node, [CRMTOOL, "render", str(site)]).stdout


def generate(cluster: Cluster, stack: Stack) -> None:
    """What the services need from the same site, written by crmtool on every running node (as an
    operator runs ``crmtool haproxy site.toml -o /etc/haproxy/haproxy.cfg`` on each controller)."""
    site = write_site(cluster, stack)
    for command, path in stack.generated:
        for node in cluster.nodes.values():
            if node.powered:
                cluster.run(node.name, [CRMTOOL, command, str(site), "-o", path])


def push(cluster: Cluster, stack: Stack | None = None) -> str:
    """Render and push the site's configuration; returns what was pushed."""
    node = cluster.any_running_node()
    stack = stack or Stack()
    generate(cluster, stack)
    configuration = render(cluster, stack, via=node)
    cluster.push_configuration(configuration, via=node)
    cluster.progress(f"configuration pushed: crmtool render {stack.profile} + site | cibadmin --replace")
    return configuration
