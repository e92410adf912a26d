"""The configuration pushed to a namespace cluster.

Two sources, one result (a ``<configuration>`` element as text):

- ``crmtool_configuration``: ``crmtool render`` of the default profile with a
  site file for the namespace addresses, exactly as an operator does; used as
  soon as crmtool and its default profile are installed.
- ``harness_configuration``: built here with ElementTree from what the
  machine has (our ``vip`` agent when installed, else ``ocf:heartbeat:IPaddr2``;
  a ``Dummy`` clone), for the harness's own tests and benchmarks.

Both get the harness's fence device and properties (``with_fencing``).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

from nscluster.cluster import HARNESS_PROPERTIES, NODE_NIC, ClusterSpec, run_cmd

OCF_ROOT = Path("/usr/lib/ocf/resource.d")
OUR_PROVIDER = "openstack"
FENCE_DEVICE_ID = "fence-nsc"
VIP_ID = "vip"
DUMMY_ID = "dummy"
PROPERTY_SET_ID = "cib-bootstrap-options"

CLUSTER_PROPERTIES = {
    "stonith-enabled": "true",
    "no-quorum-policy": "stop",
    "stonith-timeout": "30s",
    "cluster-recheck-interval": "1min",
    **HARNESS_PROPERTIES,
}
RESOURCE_DEFAULTS = {"resource-stickiness": "100"}


@dataclasses.dataclass(frozen=True)
class Primitive:
    id: str
    standard: str
    provider: str | None
    type: str
    params: dict[str, str]
    monitor_interval: str = "5s"
    monitor_timeout: str = "20s"

    @property
    def spec(self) -> str:
        return ":".join(p for p in (self.standard, self.provider, self.type) if p)


def our_agent_installed(name: str) -> bool:
    return (OCF_ROOT / OUR_PROVIDER / name).exists()


def vip_primitive(address: str, prefixlen: int, agent: str = "auto") -> Primitive:
    """Our ``vip`` agent if it is installed (``agent="auto"``/``"vip"``), else IPaddr2."""
    if agent == "vip" or (agent == "auto" and our_agent_installed("vip")):
        return Primitive(VIP_ID, "ocf", OUR_PROVIDER, "vip", vip_params(address, prefixlen))
    return Primitive(VIP_ID, "ocf", "heartbeat", "IPaddr2",
                     {"ip": address, "cidr_netmask": str(prefixlen), "nic": NODE_NIC})


def vip_params(address: str, prefixlen: int) -> dict[str, str]:
    """Our vip agent's parameters, by the names its declaration gives them."""
    from agents import registry

    declared = {param.name for param in registry.load("vip").params}
    wanted = {"ip": address, "cidr_netmask": str(prefixlen), "nic": NODE_NIC}
    aliases = {"cidr_netmask": ("cidr_netmask", "netmask", "prefix", "prefixlen"),
               "nic": ("nic", "interface", "device")}
    params = {"ip": address} if "ip" in declared else {"address": address}
    for key, names in aliases.items():
        for name in names:
            if name in declared:
                params[name] = wanted[key]
                break
    return params


def _nvpairs(parent: ET.Element, set_tag: str, set_id: str, values: dict[str, str]) -> ET.Element:
    block = ET.SubElement(parent, set_tag, id=set_id)
    for name, value in values.items():
        ET.SubElement(block, "nvpair", id=f"{set_id}-{name}", name=name, value=value)
    return block


def _primitive(parent: ET.Element, primitive: Primitive) -> ET.Element:
    attributes = {"id": primitive.id, "class": primitive.standard, "type": primitive.type}
    if primitive.provider:
        attributes["provider"] = primitive.provider
    element = ET.SubElement(parent, "primitive", attributes)
    if primitive.params:
        _nvpairs(element, "instance_attributes", f"{primitive.id}-instance_attributes", primitive.params)
    operations = ET.SubElement(element, "operations")
    ET.SubElement(operations, "op", id=f"{primitive.id}-monitor-interval-{primitive.monitor_interval}",
                  name="monitor", interval=primitive.monitor_interval, timeout=primitive.monitor_timeout)
    return element


def fence_primitive(spec: ClusterSpec, delay_s: int = 0) -> Primitive:
    params = {"pcmk_host_list": " ".join(spec.node_names), "pcmk_host_check": "static-list"}
    if delay_s:
        params["delay"] = str(delay_s)
    return Primitive(FENCE_DEVICE_ID, "stonith", None, spec.fence_agent_name, params,
                     monitor_interval="60s")


def harness_configuration(spec: ClusterSpec, vip_agent: str = "auto", with_dummy_clone: bool = True) -> str:
    configuration = ET.Element("configuration")
    _nvpairs(ET.SubElement(configuration, "crm_config"), "cluster_property_set", PROPERTY_SET_ID,
             CLUSTER_PROPERTIES)
    ET.SubElement(configuration, "nodes")
    resources = ET.SubElement(configuration, "resources")
    _primitive(resources, fence_primitive(spec))
    _primitive(resources, vip_primitive(spec.vip_address(), spec.network.prefixlen, vip_agent))
    if with_dummy_clone:
        clone = ET.SubElement(resources, "clone", id=f"{DUMMY_ID}-clone")
        _nvpairs(clone, "meta_attributes", f"{DUMMY_ID}-clone-meta_attributes", {"interleave": "true"})
        _primitive(clone, Primitive(DUMMY_ID, "ocf", "pacemaker", "Dummy", {}))
    ET.SubElement(configuration, "constraints")
    _nvpairs(ET.SubElement(configuration, "rsc_defaults"), "meta_attributes", "rsc-options",
             RESOURCE_DEFAULTS)
    return ET.tostring(configuration, encoding="unicode")


def with_fencing(configuration_xml: str, spec: ClusterSpec) -> str:
    """Add the harness's fence device and properties to a configuration made elsewhere."""
    configuration = ET.fromstring(configuration_xml)  # noqa: S314 (our own renderer)
    crm_config = configuration.find("crm_config")
    if crm_config is None:
        crm_config = ET.Element("crm_config")
        configuration.insert(0, crm_config)
    property_set = crm_config.find(f"cluster_property_set[@id='{PROPERTY_SET_ID}']")
    if property_set is None:
        property_set = ET.SubElement(crm_config, "cluster_property_set", id=PROPERTY_SET_ID)
    present = {nvpair.get("name"): nvpair for nvpair in property_set.iter("nvpair")}
    for name, value in CLUSTER_PROPERTIES.items():
        if name in ("stonith-enabled", *HARNESS_PROPERTIES) or name not in present:
            if name in present:
                present[name].set("value", value)
            else:
                ET.SubElement(property_set, "nvpair", id=f"{PROPERTY_SET_ID}-{name}", name=name, value=value)
    resources = configuration.find("resources")
    if resources is None:
        resources = ET.SubElement(configuration, "resources")
    if resources.find(f"primitive[@id='{FENCE_DEVICE_ID}']") is None:
        resources.insert(0, _primitive(ET.Element("x"), fence_primitive(spec)))
    nodes = configuration.find("nodes")
    if nodes is not None and not list(nodes):
        # An empty <nodes/> in a replace would wipe the live node entries.
        configuration.remove(nodes)
    return ET.tostring(configuration, encoding="unicode")


# --- crmtool ------------------------------------------------------------------------------------

def crmtool_available() -> bool:
    return shutil.which("crmtool") is not None


def site_file(spec: ClusterSpec) -> str:
    """The operator's site file for this cluster's namespace addresses (crmtool's TOML)."""
    lines = [f"# Site file of namespace cluster {spec.run_id}",
             "[cluster]",
             f"name = \"{spec.run_id}\"",
             "nodes = [" + ", ".join(f'"{name}"' for name in spec.node_names) + "]",
             "",
             "[site]",
             f"public_vip = \"{spec.vip_address(0)}\"",
             f"database_vip = \"{spec.vip_address(1)}\"",
             f"cidr_netmask = {spec.network.prefixlen}",
             f"nic = \"{NODE_NIC}\"",
             ""]
    return "\n".join(lines)


def crmtool_configuration(spec: ClusterSpec, site_path: Path) -> str:
    """``crmtool render`` of the default profile with the site file, plus the harness's fencing."""
    site_path.write_text(site_file(spec))
    done = run_cmd(["crmtool", "render", "--site", str(site_path)], check=False)
    if done.returncode != 0:
        raise subprocess.SubprocessError(f"crmtool render failed ({done.returncode}): {done.stderr.strip()}")
    rendered = ET.fromstring(done.stdout)  # noqa: S314 (our own renderer)
    configuration = rendered if rendered.tag == "configuration" else rendered.find("configuration")
    if configuration is None:
        raise subprocess.SubprocessError("crmtool render gave no <configuration>")
    return with_fencing(ET.tostring(configuration, encoding="unicode"), spec)
