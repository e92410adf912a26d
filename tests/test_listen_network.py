"""``host`` as a network (CIDR): each node listens on its own address in it, read from the kernel.

Everything runs inside a network namespace (``harness.netns``) holding the node's addresses and
VIP-like extra addresses: the rule's choice (primary before secondary, not deprecated before
deprecated, a network prefix before a host prefix, then the lowest), the real memcached agent
started with a network for ``host``, and a node without an address in the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from harness.netns import Lab, Namespace
from harness.ocfrun import REPO
from harness.processes import eventually

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

PORT = 27431
NODE_V4, VIP_V4, HOST_ROUTE_V4 = "198.51.100.20", "198.51.100.5", "198.51.100.9"
NODE_V6, VIP_V6, HOST_ROUTE_V6 = "2001:db8:5::20", "2001:db8:5::5", "2001:db8:5::6"

# Run inside the namespace by the system's interpreter: what TCPDaemonAgent makes of each network.
RESOLVE = """
import json, sys
from agents.ocf.codes import OCFError
from agents.ocf.daemon_agent import TCPDaemonAgent
from agents.ocf.deadline import Deadline
from agents.ocf.environment import Environment
from agents.ocf.log import Logger
from agents.ocf.params import Param, parse

class Probe(TCPDaemonAgent):
    name = "probe"
    params = (Param("host", shortdesc="address"), Param("port", "integer", shortdesc="port", default=1))

found = {}
for network in sys.argv[1:]:
    environ = {"HA_RSCTMP": "/nonexistent", "OCF_RESOURCE_INSTANCE": "probe", "OCF_RESKEY_host": network,
               "HA_LOGFACILITY": "none"}
    config, errors = parse(Probe.params, environ)
    assert not errors, errors
    agent = Probe(Environment("start", environ), config, Deadline(5), Logger("probe", environ))
    try:
        found[network] = agent.host
    except OCFError as exc:
        found[network] = [int(exc.code), exc.reason]
print(json.dumps(found))
"""


def in_namespace(ns: Namespace, argv: list[str], env: dict[str, str] | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": REPO, "LANG": "C.UTF-8"}
    return subprocess.run(ns.argv(argv), env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=REPO)


@pytest.fixture(scope="module")
def node():
    """A node namespace: its own address in each test network, and a VIP-like address beside it
    that sorts lower (secondary for IPv4, deprecated for IPv6), and a lower /32 and /128."""
    with Lab("lnet") as lab:
        ns = lab.node
        # The node's address first: the kernel makes the next one in its network secondary, as it
        # does for a VIP added by the vip agent.
        ns.ip("address", "add", f"{NODE_V4}/24", "dev", "veth0")
        ns.ip("address", "add", f"{VIP_V4}/24", "dev", "veth0")
        ns.ip("address", "add", f"{HOST_ROUTE_V4}/32", "dev", "veth0")
        ns.ip("address", "add", f"{NODE_V6}/64", "dev", "veth0", "nodad")
        ns.ip("address", "add", f"{VIP_V6}/64", "dev", "veth0", "nodad", "preferred_lft", "0")
        ns.ip("address", "add", f"{HOST_ROUTE_V6}/128", "dev", "veth0", "nodad")
        # Two primaries of one network on two interfaces: the lowest.
        ns.ip("address", "add", "203.0.113.30/24", "dev", "veth0")
        ns.ip("address", "add", "203.0.113.7/24", "dev", "lo")
        lab.wait_ready(ns, "veth0", NODE_V6)
        yield ns


def test_the_node_address_is_chosen_not_the_vip(node):
    done = in_namespace(node, ["/usr/bin/python3", "-c", RESOLVE, "198.51.100.0/24", "2001:db8:5::/64",
                               "203.0.113.0/24", "127.0.0.0/8", "10.213.0.0/24", "198.51.100.9/32"])
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["198.51.100.0/24"] == NODE_V4  # not the lower secondary .5 nor the lower /32 .9
    assert found["2001:db8:5::/64"] == NODE_V6  # not the deprecated ::5 nor the /128 ::6
    assert found["203.0.113.0/24"] == "203.0.113.7"  # two primaries: the lowest
    assert found["127.0.0.0/8"] == "127.0.0.1"
    assert found["198.51.100.9/32"] == HOST_ROUTE_V4  # alone in its network: chosen
    code, reason = found["10.213.0.0/24"]
    assert code == 5 and reason == "host 10.213.0.0/24: this node has no address in that network"


def test_a_secondary_is_used_once_it_is_all_there_is(node):
    """Control: the rule orders, it does not exclude. The node's own address removed, what the
    kernel keeps of the network (the secondary promoted, or nothing) decides."""
    node.ip("address", "add", "100.64.0.20/24", "dev", "veth0")
    node.ip("address", "add", "100.64.0.5/24", "dev", "veth0")
    node.ip("address", "del", "100.64.0.20/24", "dev", "veth0")
    try:
        promoted = "100.64.0.5/24" in node.addresses("veth0")
        done = in_namespace(node, ["/usr/bin/python3", "-c", RESOLVE, "100.64.0.0/24"])
        assert done.returncode == 0, done.stderr
        chosen = json.loads(done.stdout)["100.64.0.0/24"]
        assert chosen == "100.64.0.5" if promoted else chosen[0] == 5, (promoted, chosen)
    finally:
        node.ip("address", "flush", "dev", "veth0", "to", "100.64.0.0/24", check=False)


def test_a_tentative_address_is_waited_for(node):
    """An IPv6 address still under duplicate address detection (about a second) cannot be bound:
    the start waits for it rather than failing the node."""
    node.ip("address", "add", "2001:db8:7::20/64", "dev", "veth0")  # with DAD
    try:
        shown = json.loads(node.ip("-json", "address", "show", "dev", "veth0").stdout)
        assert [a for link in shown for a in link["addr_info"]
                if a.get("local") == "2001:db8:7::20" and a.get("tentative")], "tentative when asked"
        done = in_namespace(node, ["/usr/bin/python3", "-c", RESOLVE, "2001:db8:7::/64"])
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["2001:db8:7::/64"] == "2001:db8:7::20"
    finally:
        node.ip("address", "del", "2001:db8:7::20/64", "dev", "veth0", check=False)


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="osha-listen-")
    os.chmod(path, 0o755)  # noqa: S103 - user memcache reaches its log directory
    yield path
    shutil.rmtree(path, ignore_errors=True)


def memcached(ns: Namespace, workdir: str, action: str, host: str, depth: int = 0,
              interval_ms: int = 10000) -> subprocess.CompletedProcess[str]:
    env = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "mc", "HA_RSCTMP": workdir,
           "HA_LOGFILE": os.path.join(workdir, "agents.log"), "HA_LOGFACILITY": "none",
           "OCF_CHECK_LEVEL": str(depth), "OCF_RESKEY_CRM_meta_interval": str(interval_ms),
           "OCF_RESKEY_CRM_meta_timeout": "20000", "OCF_RESKEY_host": host, "OCF_RESKEY_port": str(PORT),
           "OCF_RESKEY_log_file": os.path.join(workdir, "memcached-logs", "mc.log")}
    return in_namespace(ns, ["/usr/bin/python3", "-m", "agents.memcached", action], env)


def listening_on(pid: int, port: int) -> set[str]:
    """Addresses ``pid``'s network namespace has LISTEN sockets of ``port`` on (its /proc/net/tcp*)."""
    import socket

    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open(f"/proc/{pid}/net/{table}", encoding="ascii") as handle:
            for line in list(handle)[1:]:
                fields = line.split()
                address, _colon, port_hex = fields[1].partition(":")
                if fields[3] == "0A" and int(port_hex, 16) == port:
                    raw = bytes.fromhex(address)
                    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                    found.add(socket.inet_ntop(family, raw))
    return found


@pytest.mark.parametrize(("network", "address", "lower"), [
    ("198.51.100.0/24", NODE_V4, "198.51.100.2/24"), ("2001:db8:5::/64", NODE_V6, "2001:db8:5::2/64")])
def test_memcached_agent_listens_on_the_node_address_of_the_network(node, workdir, network, address, lower):
    started = memcached(node, workdir, "start", network)
    try:
        assert started.returncode == 0, started.stderr
        with open(os.path.join(workdir, "openstack-memcached-mc", "identity"), encoding="utf-8") as handle:
            pid = int(handle.read().split()[0])
        assert listening_on(pid, PORT) == {address}
        for depth in (0, 10, 20):
            monitor = memcached(node, workdir, "monitor", network, depth)
            assert monitor.returncode == 0, (depth, monitor.stderr)
        with open(os.path.join(workdir, "agents.log"), encoding="utf-8") as handle:
            log = handle.read()
        assert f"host {network}: listening on {address}, the first of 3 addresses" in log, log
        # The monitors look where the start chose, even once a lower primary appears meanwhile.
        node.ip("address", "add", lower, "dev", "lo", *(["nodad"] if ":" in lower else []))
        try:
            assert memcached(node, workdir, "monitor", network, 10).returncode == 0
        finally:
            node.ip("address", "del", lower, "dev", "lo")
    finally:
        stopped = memcached(node, workdir, "stop", network)
        assert stopped.returncode == 0, stopped.stderr
    assert eventually(lambda: memcached(node, workdir, "monitor", network).returncode == 7, 10)


def test_no_address_in_the_network_is_not_installed_here(node, workdir):
    assert memcached(node, workdir, "monitor", "10.213.0.0/24", interval_ms=0).returncode == 7
    for action in ("validate-all", "start"):
        refused = memcached(node, workdir, action, "10.213.0.0/24")
        assert refused.returncode == 5, (action, refused.stderr)
        assert "host 10.213.0.0/24: this node has no address in that network" in refused.stderr
    assert memcached(node, workdir, "stop", "10.213.0.0/24").returncode == 0


def test_a_malformed_network_is_a_configuration_error(node, workdir):
    refused = memcached(node, workdir, "validate-all", "198.51.100.20/24")
    assert refused.returncode == 6 and "host bits set" in refused.stderr, refused.stderr
