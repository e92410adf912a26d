"""The cluster: namespaces, nodes, the fence broker, status and teardown.

Layout of one run (``run_id`` is unique per run; every name derives from it):

- network namespaces ``<run_id>-br`` (the bridge ``br0`` and the client address)
  and ``<run_id>-<node>`` per node (``eth0``, the peer of ``v<i>`` on the bridge);
- the state directory ``<state_root>/<run_id>/`` (per-node corosync config,
  logs, CIB seed, the fence request directory, the owner file);
- the fence agent launcher ``/usr/sbin/fence_nsc_<run_id>``.

Nothing is created in the root network namespace: interfaces are created
inside the bridge namespace and their peers moved straight into the nodes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

from nscluster import broker_protocol as protocol

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
SYSTEM_PYTHON = "/usr/bin/python3"
FENCE_AGENT_DIR = Path("/usr/sbin")
FENCE_AGENT_PREFIX = "fence_nsc_"
NETNS_DIR = Path("/run/netns")
DEFAULT_STATE_ROOT = Path("/tmp/nscluster")  # noqa: S108 (root-owned, per-run subdirectory)
RUN_ID_PREFIX = "nsc"
BRIDGE = "br0"
NODE_NIC = "eth0"
DEFAULT_PROBE_PORT = 7999


class ClusterError(RuntimeError):
    pass


def new_run_id() -> str:
    return f"{RUN_ID_PREFIX}{secrets.token_hex(3)}"


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """Everything that makes one run distinct; defaults give a fresh 3-node cluster."""

    run_id: str = dataclasses.field(default_factory=new_run_id)
    node_names: tuple[str, ...] = ("node1", "node2", "node3")
    subnet: str = "10.213.0.0/24"
    state_root: Path = DEFAULT_STATE_ROOT
    # Corosync totem timing; None keeps corosync's own value. Corosync 3.1's built-in token is
    # 3000 ms (+ 650 ms per node above 2, consensus 1.2 x token: ~8 s to a new membership); the
    # harness defaults to the 1000 ms token most deployments run (~3.6 s).
    token_ms: int | None = 1000
    token_coefficient_ms: int | None = None
    # Seconds a node fenced with "reboot" stays down before it boots again; None: stays off.
    fence_reboot_delay_s: float | None = 8.0
    probe_port: int = DEFAULT_PROBE_PORT
    # Directories that each node gets privately (e.g. "/etc/keystone", "/var/lib/mysql"): a per-node
    # directory under the state directory is bind-mounted over each. They must exist on the machine.
    # A node's /root is its own: agents that `su - root` (resource-agents' `anything`) must not run
    # this machine's login scripts.
    private_dirs: tuple[str, ...] = ("/root",)
    # Extra environment of pacemakerd, inherited by every resource agent (e.g. PATH with a test
    # double's bin directory first, or variables a double reads). "{node}" expands to the node name.
    agent_env: tuple[tuple[str, str], ...] = ()

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    def node_address(self, index: int) -> str:
        return str(self.network[10 + index])

    @property
    def client_address(self) -> str:
        return str(self.network[-2])

    def vip_address(self, number: int = 0) -> str:
        return str(self.network[100 + number])

    @property
    def state_dir(self) -> Path:
        return self.state_root / self.run_id

    @property
    def bridge_netns(self) -> str:
        return f"{self.run_id}-br"

    @property
    def fence_agent_name(self) -> str:
        return FENCE_AGENT_PREFIX + self.run_id


@dataclasses.dataclass(frozen=True)
class FenceEvent:
    at: float  # time.monotonic()
    action: str
    target: str
    requester: str


@dataclasses.dataclass
class Node:
    name: str
    index: int
    address: str
    netns: str
    bridge_port: str
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    pid1: int | None = None
    boots: int = 0
    boot_pending: bool = False  # fenced with "reboot"; boots by itself after the delay

    @property
    def powered(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclasses.dataclass(frozen=True)
class ResourceState:
    id: str
    agent: str
    role: str
    nodes: tuple[str, ...]
    failed: bool


@dataclasses.dataclass(frozen=True)
class Failure:
    """One entry of crm_mon's failed resource actions."""

    resource: str
    task: str
    node: str
    reason: str

    def __str__(self) -> str:
        return f"{self.resource} {self.task} on {self.node}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class ClusterStatus:
    dc: str | None
    online: frozenset[str]
    has_quorum: bool
    resources: tuple[ResourceState, ...]
    failures: tuple[Failure, ...]

    def where(self, resource_id: str) -> tuple[str, ...]:
        """Nodes where a primitive (or every instance of a cloned primitive) is active."""
        return tuple(sorted(node for r in self.resources if r.id == resource_id for node in r.nodes))


def run_cmd(argv: Sequence[str], *, input_text: str | None = None, check: bool = True,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), input=input_text, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-800:]}")
    return done


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float, poll_s: float = 0.25) -> None:
    end = time.monotonic() + timeout_s
    while True:
        if predicate():
            return
        if time.monotonic() >= end:
            raise ClusterError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def netns_inode(name: str) -> int:
    return os.stat(NETNS_DIR / name).st_ino


def root_netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


# --- files written for the nodes -------------------------------------------------------------

def corosync_conf(spec: ClusterSpec) -> str:
    totem = ["version: 2", f"cluster_name: {spec.run_id}", "transport: knet",
             "crypto_cipher: none", "crypto_hash: none"]
    if spec.token_ms is not None:
        totem.append(f"token: {spec.token_ms}")
    if spec.token_coefficient_ms is not None:
        totem.append(f"token_coefficient: {spec.token_coefficient_ms}")
    quorum = ["provider: corosync_votequorum"]
    if len(spec.node_names) == 2:
        quorum.append("two_node: 1")
    nodes = "".join(
        f"\tnode {{\n\t\tname: {name}\n\t\tnodeid: {index}\n"
        f"\t\tring0_addr: {spec.node_address(index)}\n\t}}\n"
        for index, name in enumerate(spec.node_names, start=1))
    logging = ["to_logfile: yes", "logfile: /var/log/corosync/corosync.log", "to_stderr: no",
               "to_syslog: no", "timestamp: hires"]

    def section(title: str, lines: list[str]) -> str:
        return f"{title} {{\n" + "".join(f"\t{line}\n" for line in lines) + "}\n"

    return (section("totem", totem) + section("logging", logging) + section("quorum", quorum)
            + "nodelist {\n" + nodes + "}\n")


def cib_seed() -> str:
    """An empty CIB from Pacemaker itself, with a short dc-deadtime for a quick first election."""
    empty = run_cmd(["cibadmin", "--empty"]).stdout
    cib = ET.fromstring(empty)  # noqa: S314 (Pacemaker's own output)
    crm_config = cib.find("configuration/crm_config")
    if crm_config is None:
        raise ClusterError("cibadmin --empty gave no crm_config")
    properties = ET.SubElement(crm_config, "cluster_property_set", id="cib-bootstrap-options")
    for name, value in HARNESS_PROPERTIES.items():
        ET.SubElement(properties, "nvpair", id=f"cib-bootstrap-options-{name}", name=name, value=value)
    return ET.tostring(cib, encoding="unicode")


# Cluster properties the harness needs whatever configuration is pushed. load-threshold: every node
# reads the machine's load average, which holds the work of all three nodes (and of whatever else
# runs here), while a real controller's holds its own: Pacemaker's default 80 % of the cores, times
# the three nodes sharing them, throttles a node here when a real one would (not three times sooner).
HARNESS_PROPERTIES = {"dc-deadtime": "2s", "load-threshold": "240%"}


def mount_point(target: str) -> None:
    """A private directory's mount point on this machine: there already, or made empty (root's,
    0755) in a parent only root may write, such as ``/var/log/memcached``, which the memcached agent
    makes on a controller at its first start but Debian's package does not."""
    path = Path(target)
    if path.is_dir():
        return
    parent = path.parent.stat()
    if path.is_symlink() or path.exists() or parent.st_uid != 0 or parent.st_mode & 0o022:
        raise ClusterError(f"private directory {target} does not exist on this machine, and the harness "
                           "does not make it there")
    path.mkdir(mode=0o755)


# What the fence agent imports, copied into the run's state directory: pacemaker-controld asks for
# its meta-data as user hacluster, who may not be able to read the checkout (a 0700 clone).
FENCE_AGENT_MODULES = ("fence_agent.py", "broker_protocol.py")


def fence_agent_home(spec: ClusterSpec) -> Path:
    return spec.state_dir / "fence-agent"


def fence_agent_launcher(spec: ClusterSpec) -> str:
    return (f"#!{SYSTEM_PYTHON} -IS\n"
            f"# Test-only fence agent of nscluster run {spec.run_id}; removed at teardown.\n"
            "import sys\n"
            f"sys.path.insert(0, {str(fence_agent_home(spec))!r})\n"
            "from nscluster.fence_agent import main\n"
            f"main({str(spec.state_dir)!r}, {spec.fence_agent_name!r})\n")


# --- the cluster ------------------------------------------------------------------------------

class Cluster:
    """A running namespace cluster. Use as a context manager or call ``teardown()``."""

    def __init__(self, spec: ClusterSpec | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.spec = spec or ClusterSpec()
        self.progress = progress or (lambda _message: None)
        self.nodes: dict[str, Node] = {
            name: Node(name=name, index=index, address=self.spec.node_address(index),
                       netns=f"{self.spec.run_id}-{name}", bridge_port=f"v{index}",
                       directory=self.spec.state_dir / "nodes" / name)
            for index, name in enumerate(self.spec.node_names, start=1)}
        self.fence_events: list[FenceEvent] = []
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._timers: list[threading.Timer] = []
        self._broker: threading.Thread | None = None
        # Called as listener(event, node) after "power-off" (crash, fence, teardown), "isolate" and
        # "reconnect": parts with no network of their own (the DRBD double) follow the faults here.
        self.fault_listeners: list[Callable[[str, str], None]] = []

    # lifecycle

    def __enter__(self) -> Cluster:
        try:
            self.create()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.teardown()

    def create(self) -> None:
        if os.geteuid() != 0:
            raise ClusterError("a namespace cluster needs root")
        self._write_state()
        self._install_fence_agent()
        self._build_network()
        self._start_broker()
        for node in self.nodes.values():
            self.start_node(node.name)
        self.wait_online(timeout_s=90)

    def teardown(self, keep_logs_in: Path | None = None) -> None:
        """Power everything off and remove every trace; ``keep_logs_in``: copy the logs there first."""
        self._closed.set()
        for timer in self._timers:
            timer.cancel()
        with self._lock:
            for node in self.nodes.values():
                self._power_off(node)
        if self._broker is not None:
            self._broker.join(timeout=5)
        if keep_logs_in is not None and self.spec.state_dir.exists():
            shutil.copytree(self.spec.state_dir, keep_logs_in / self.spec.run_id, dirs_exist_ok=True,
                            symlinks=True, ignore=shutil.ignore_patterns(protocol.REQUEST_DIR, "*.img"))
        cleanup_run(self.spec.run_id, self.spec.state_root)

    # setup

    def _write_state(self) -> None:
        state = self.spec.state_dir
        (state / protocol.REQUEST_DIR).mkdir(parents=True, mode=0o700)
        (state / "owner").write_text(json.dumps({"pid": os.getpid(), "start": _start_time(os.getpid())}))
        seed = cib_seed()
        conf = corosync_conf(self.spec)
        for node in self.nodes.values():
            for sub in ("etc-corosync", "log-pacemaker", "log-corosync"):
                (node.directory / sub).mkdir(parents=True)
            shutil.chown(node.directory / "log-pacemaker", "hacluster", "haclient")
            (node.directory / "log-pacemaker").chmod(0o770)
            (node.directory / "etc-corosync" / "corosync.conf").write_text(conf)
            (node.directory / "cib-seed.xml").write_text(seed)
            binds = [[str(node.directory / "etc-corosync"), "/etc/corosync"],
                     [str(node.directory / "log-pacemaker"), "/var/log/pacemaker"],
                     [str(node.directory / "log-corosync"), "/var/log/corosync"]]
            for target in self.spec.private_dirs:
                mount_point(target)
                source = self.node_path(node.name, target)
                source.mkdir(parents=True)
                binds.append([str(source), target])
            config = {"name": node.name, "binds": binds, "cib_seed": str(node.directory / "cib-seed.xml"),
                      "probe_port": self.spec.probe_port,
                      "agent_env": {key: value.replace("{node}", node.name)
                                    for key, value in self.spec.agent_env}}
            (node.directory / "node.json").write_text(json.dumps(config))

    def node_path(self, node: str, path: str) -> Path:
        """Where the harness writes what a node sees at ``path`` (one of ``spec.private_dirs``)."""
        return self.nodes[node].directory / "private" / path.lstrip("/")

    def _install_fence_agent(self) -> None:
        package = fence_agent_home(self.spec) / "nscluster"
        package.mkdir(parents=True)
        (package / "__init__.py").touch()
        for module in FENCE_AGENT_MODULES:
            shutil.copyfile(PACKAGE_DIR / module, package / module)
        for item in (package.parent, package, *package.iterdir()):
            item.chmod(0o755 if item.is_dir() else 0o644)
        path = FENCE_AGENT_DIR / self.spec.fence_agent_name
        path.write_text(fence_agent_launcher(self.spec))
        path.chmod(0o755)

    def _ip(self, netns: str, *args: str) -> None:
        run_cmd(["ip", "-n", netns, *args])

    def _build_network(self) -> None:
        bridge_ns = self.spec.bridge_netns
        prefix = self.spec.network.prefixlen
        run_cmd(["ip", "netns", "add", bridge_ns])
        self._ip(bridge_ns, "link", "set", "lo", "up")
        self._ip(bridge_ns, "link", "add", BRIDGE, "type", "bridge")
        self._ip(bridge_ns, "addr", "add", f"{self.spec.client_address}/{prefix}", "dev", BRIDGE)
        self._ip(bridge_ns, "link", "set", BRIDGE, "up")
        for node in self.nodes.values():
            run_cmd(["ip", "netns", "add", node.netns])
            self._ip(node.netns, "link", "set", "lo", "up")
            self._ip(bridge_ns, "link", "add", node.bridge_port, "type", "veth",
                     "peer", "name", NODE_NIC, "netns", node.netns)
            self._ip(bridge_ns, "link", "set", node.bridge_port, "master", BRIDGE, "up")
            self._ip(node.netns, "addr", "add", f"{node.address}/{prefix}", "dev", NODE_NIC)
            self._ip(node.netns, "link", "set", NODE_NIC, "up")

    # power

    def start_node(self, name: str) -> None:
        """Boot a node: fresh addresses, link up, a new PID-1 supervisor."""
        with self._lock:
            node = self.nodes[name]
            if node.powered:
                return
            if self._closed.is_set():
                raise ClusterError(f"{name}: the cluster is being torn down")
            prefix = self.spec.network.prefixlen
            self._ip(node.netns, "addr", "flush", "dev", NODE_NIC)
            self._ip(node.netns, "addr", "add", f"{node.address}/{prefix}", "dev", NODE_NIC)
            self._ip(node.netns, "link", "set", NODE_NIC, "up")
            self._ip(self.spec.bridge_netns, "link", "set", node.bridge_port, "up")
            self._tell_listeners("reconnect", name)  # a boot heals an isolation too
            node.boots += 1
            log = open(node.directory / f"supervisor.{node.boots}.log", "wb")  # noqa: SIM115
            with log:
                node.process = subprocess.Popen(
                    ["nsenter", f"--net={NETNS_DIR / node.netns}", "--",
                     "unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--mount-proc",
                     "--propagation", "private",
                     SYSTEM_PYTHON, "-I", "-S", str(PACKAGE_DIR / "supervisor.py"),
                     str(node.directory / "node.json")],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            node.pid1 = self._find_pid1(node)
        self.progress(f"{name} booted")

    def _find_pid1(self, node: Node) -> int:
        if node.process is None:
            raise ClusterError(f"{node.name} has no supervisor process")
        children = Path(f"/proc/{node.process.pid}/task/{node.process.pid}/children")
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                pids = children.read_text().split()
            except FileNotFoundError:
                pids = []
            if pids:
                return int(pids[0])
            if node.process.poll() is not None:
                break
            time.sleep(0.02)
        raise ClusterError(f"{node.name}: the supervisor did not start (see {node.directory})")

    def _power_off(self, node: Node) -> None:
        """Cut the power: the link goes dark, then PID 1 dies, taking the whole node with it.

        Dark first, as a machine losing power sends nothing: killed the other way round, the node's
        processes close their sockets on the way out and the peers get FIN or RST (seen: a broker's
        peers saw its Erlang link closed at once, 3.6 s before corosync saw the node lost)."""
        if (NETNS_DIR / self.spec.bridge_netns).exists():
            run_cmd(["ip", "-n", self.spec.bridge_netns, "link", "set", node.bridge_port, "down"],
                    check=False)
        if node.process is not None and node.process.poll() is None:
            if node.pid1 is not None:
                _kill(node.pid1)
            node.process.kill()
        if node.process is not None:
            try:
                node.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        node.pid1 = None
        self._tell_listeners("power-off", node.name)

    def _tell_listeners(self, event: str, name: str) -> None:
        for listener in self.fault_listeners:
            listener(event, name)

    def crash(self, name: str) -> float:
        """Power a node off without warning; returns the crash's time.monotonic()."""
        with self._lock:
            at = time.monotonic()
            self._power_off(self.nodes[name])
        self.progress(f"{name} crashed")
        return at

    def isolate(self, name: str) -> None:
        """Cut a running node off the network (its processes keep running)."""
        self._ip(self.spec.bridge_netns, "link", "set", self.nodes[name].bridge_port, "down")
        self._tell_listeners("isolate", name)
        self.progress(f"{name} isolated from the network")

    def reconnect(self, name: str) -> None:
        """Heal an isolation of a running node (a powered-off node's namespace still holds its old
        addresses, the VIPs among them: booting it heals the link with fresh addresses)."""
        if not self.nodes[name].powered:
            raise ClusterError(f"{name} is powered off: boot it (start_node) instead of reconnecting it")
        self._ip(self.spec.bridge_netns, "link", "set", self.nodes[name].bridge_port, "up")
        self._tell_listeners("reconnect", name)
        self.progress(f"{name} reconnected")

    def stop_node(self, name: str, timeout_s: float = 120) -> None:
        """A clean shutdown: pacemaker stops its resources, then the node powers off."""
        node = self.nodes[name]
        if node.pid1 is not None and node.powered:
            os.kill(node.pid1, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout_s)  # type: ignore[union-attr]
        with self._lock:
            self._power_off(node)

    # the fence broker

    def _start_broker(self) -> None:
        self._broker = threading.Thread(target=self._broker_loop, name=f"fence-broker-{self.spec.run_id}",
                                        daemon=True)
        self._broker.start()

    def _broker_loop(self) -> None:
        requests = self.spec.state_dir / protocol.REQUEST_DIR
        while not self._closed.is_set():
            for path in sorted(requests.glob("*" + protocol.REQUEST_SUFFIX)):
                try:
                    request = json.loads(path.read_text())
                    path.unlink()
                except (OSError, ValueError):
                    continue
                try:
                    answer = self._fence(request)
                except (ClusterError, OSError, subprocess.SubprocessError) as error:
                    answer = {"rc": 1, "error": f"broker: {error}"}
                ident = path.name.removesuffix(protocol.REQUEST_SUFFIX)
                temporary = requests / f".{ident}.anstmp"
                temporary.write_text(json.dumps(answer))
                temporary.rename(requests / (ident + protocol.ANSWER_SUFFIX))
            self._closed.wait(0.05)

    def _fence(self, request: dict[str, str]) -> dict[str, object]:
        action, target = request.get("action", ""), request.get("target", "")
        if action == "list":
            return {"rc": 0, "nodes": list(self.nodes)}
        if action == "monitor":
            return {"rc": 0}
        node = self.nodes.get(target)
        if node is None:
            return {"rc": 1, "error": f"unknown node {target!r}"}
        if action == "status":
            return {"rc": 0 if node.powered else 2}
        event = FenceEvent(time.monotonic(), action, target, request.get("requester", ""))
        with self._lock:
            if self._closed.is_set():
                return {"rc": 1, "error": "the cluster is being torn down"}
            if action in ("off", "reboot"):
                self._power_off(node)
            if action == "on":
                self.start_node(target)
            self.fence_events.append(event)
        self.progress(f"fencing: {action} {target}")
        if action == "reboot" and self.spec.fence_reboot_delay_s is not None:
            node.boot_pending = True
            timer = threading.Timer(self.spec.fence_reboot_delay_s, self._boot_after_fence, args=(target,))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        return {"rc": 0}

    def _boot_after_fence(self, name: str) -> None:
        self.nodes[name].boot_pending = False
        if not self._closed.is_set():
            try:
                self.start_node(name)
            except ClusterError as error:
                self.progress(f"{name} failed to boot after fencing: {error}")

    # commands inside the cluster

    def run(self, node: str, argv: Sequence[str], *, input_text: str | None = None, check: bool = True,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (absolute paths or PATH names; cwd is /) inside a node's namespaces."""
        pid1 = self.nodes[node].pid1
        if pid1 is None:
            raise ClusterError(f"{node} is powered off")
        return run_cmd(["nsenter", "-t", str(pid1), "-m", "-u", "-i", "-n", "-p", "--", *argv],
                       input_text=input_text, check=check, timeout=timeout)

    def client_argv(self, argv: Sequence[str], netns: str | None = None) -> list[str]:
        """Wrap a client command so that it runs in a test namespace (the bridge's by default).

        Refuses any namespace that is not one of this cluster's: clients aimed at test
        addresses must never run in the root namespace.
        """
        netns = netns or self.spec.bridge_netns
        if netns not in self.netns_names() or netns_inode(netns) == root_netns_inode():
            raise ClusterError(f"refusing to run a client outside the cluster's namespaces ({netns})")
        return ["nsenter", f"--net={NETNS_DIR / netns}", "--", *argv]

    def client(self, argv: Sequence[str], *, timeout: float = 60.0,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cmd(self.client_argv(argv), timeout=timeout, check=check)

    def probe_argv(self, mode: str, host: str, port: int, timeout_s: float) -> list[str]:
        inode = netns_inode(self.spec.bridge_netns)
        return self.client_argv([SYSTEM_PYTHON, "-I", "-S", str(PACKAGE_DIR / "probe.py"), str(inode),
                                 mode, host, str(port), str(timeout_s)])

    def probe(self, host: str, port: int | None = None, timeout_s: float = 2.0) -> str | None:
        """One TCP connect from the bridge namespace; the answering node's name or None."""
        done = run_cmd(self.probe_argv("tcp", host, port or self.spec.probe_port, timeout_s),
                       check=False, timeout=timeout_s + 30)
        return json.loads(done.stdout)["holder"] if done.returncode == 0 else None

    def start_waiting_probe(self, host: str, port: int | None = None,
                            timeout_s: float = 120.0) -> subprocess.Popen[str]:
        """Start a probe that retries until ``host`` answers; read it with ``finish_waiting_probe``."""
        return subprocess.Popen(self.probe_argv("wait-tcp", host, port or self.spec.probe_port, timeout_s),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def finish_waiting_probe(probe: subprocess.Popen[str], timeout_s: float = 180) -> tuple[float, str]:
        out, err = probe.communicate(timeout=timeout_s)
        if probe.returncode != 0:
            raise ClusterError(f"the address never answered: {err.strip()}")
        answer = json.loads(out)
        return float(answer["t"]), str(answer["holder"])

    def netns_names(self) -> list[str]:
        return [self.spec.bridge_netns, *(node.netns for node in self.nodes.values())]

    # configuration and status

    def push_configuration(self, configuration_xml: str, via: str | None = None) -> None:
        """Replace the live configuration section, as an operator does with cibadmin."""
        node = via or self.any_running_node()
        self.run(node, ["cibadmin", "--replace", "--scope", "configuration", "--xml-pipe"],
                 input_text=configuration_xml)

    def any_running_node(self, exclude: Sequence[str] = ()) -> str:
        for node in self.nodes.values():
            if node.powered and node.name not in exclude:
                return node.name
        raise ClusterError("no node is running")

    def status(self, via: str | None = None) -> ClusterStatus:
        node = via or self.any_running_node()
        done = self.run(node, ["crm_mon", "-1", "-r", "--output-as=xml"], check=False, timeout=30)
        if not done.stdout.strip():
            raise ClusterError(f"crm_mon on {node} gave no output: {done.stderr.strip()}")
        return parse_crm_mon(done.stdout)

    def try_status(self, via: str | None = None) -> ClusterStatus | None:
        try:
            return self.status(via)
        except (ClusterError, subprocess.TimeoutExpired, ET.ParseError):
            return None

    def wait_online(self, nodes: Sequence[str] | None = None, timeout_s: float = 120) -> ClusterStatus:
        expected = frozenset(nodes if nodes is not None else self.nodes)
        seen: list[ClusterStatus] = []

        def ready() -> bool:
            status = self.try_status(next(iter(sorted(expected & self._powered_names())), None))
            if status is None:
                return False
            seen.append(status)
            return status.dc is not None and status.online == expected and status.has_quorum

        wait_until(ready, f"nodes {sorted(expected)} online with a DC", timeout_s, poll_s=0.5)
        self.progress(f"online: {', '.join(sorted(expected))} (DC {seen[-1].dc})")
        return seen[-1]

    def wait_status(self, predicate: Callable[[ClusterStatus], bool], what: str, timeout_s: float = 90,
                    via: str | None = None) -> ClusterStatus:
        seen: list[ClusterStatus] = []

        def ready() -> bool:
            status = self.try_status(via)
            if status is None:
                return False
            seen.append(status)
            return predicate(status)

        try:
            wait_until(ready, what, timeout_s, poll_s=0.5)
        except ClusterError as error:
            last = seen[-1] if seen else None
            raise ClusterError(f"{error}; last status: {last}") from None
        return seen[-1]

    def _powered_names(self) -> frozenset[str]:
        return frozenset(node.name for node in self.nodes.values() if node.powered)

    def fenced(self, target: str, since: float = 0.0) -> list[FenceEvent]:
        return [e for e in self.fence_events if e.target == target and e.at >= since]

    def logs(self, node: str) -> Iterator[Path]:
        yield from sorted(self.nodes[node].directory.glob("**/*.log"))


# OCF 1.1's degraded results (190, 191): the resource runs, with a warning. crm_mon lists them among
# failed actions, but they are no failure to clear (clearing re-probes, which reports them again).
DEGRADED_EXIT_CODES = ("190", "191")


def parse_crm_mon(xml_text: str) -> ClusterStatus:
    root = ET.fromstring(xml_text)  # noqa: S314 (crm_mon's own output)
    dc_element = root.find("summary/current_dc")
    dc = None
    has_quorum = False
    if dc_element is not None and dc_element.get("present") == "true":
        dc = dc_element.get("name")
        has_quorum = dc_element.get("with_quorum") == "true"
    online = frozenset(n.get("name", "") for n in root.iterfind("nodes/node") if n.get("online") == "true")
    resources = tuple(
        ResourceState(id=r.get("id", ""), agent=r.get("resource_agent", ""), role=r.get("role", ""),
                      nodes=tuple(n.get("name", "") for n in r.iterfind("node")),
                      failed=r.get("failed") == "true")
        for r in root.iter("resource"))
    failures = tuple(
        Failure(resource=(f.get("op_key") or "").rsplit("_", 2)[0], task=f.get("task", ""),
                node=f.get("node", ""), reason=f.get("exitreason") or f.get("exitstatus") or "")
        for f in root.iterfind("failures/failure") if f.get("exitcode") not in DEGRADED_EXIT_CODES)
    return ClusterStatus(dc=dc, online=online, has_quorum=has_quorum, resources=resources,
                         failures=failures)


# --- cleanup ----------------------------------------------------------------------------------

def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _processes_in_netns(inodes: set[int]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino in inodes:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _loop_devices_under(directory: Path) -> list[str]:
    done = run_cmd(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"], check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return []
    devices = json.loads(done.stdout).get("loopdevices", [])
    prefix = str(directory) + "/"
    return [d["name"] for d in devices if (d.get("back-file") or "").startswith(prefix)]


def cleanup_run(run_id: str, state_root: Path = DEFAULT_STATE_ROOT) -> list[str]:
    """Remove every trace of one run: processes, namespaces, loop devices, fence agent, files."""
    removed: list[str] = []
    netns = sorted(p.name for p in NETNS_DIR.glob(f"{run_id}-*")) if NETNS_DIR.exists() else []
    inodes = set()
    for name in netns:
        try:
            inodes.add(netns_inode(name))
        except OSError:
            continue
    inodes.discard(root_netns_inode())
    for _ in range(50):
        pids = [pid for pid in _processes_in_netns(inodes) if pid != os.getpid()]
        if not pids:
            break
        for pid in pids:
            _kill(pid)
        removed.extend(f"process {pid}" for pid in pids)
        time.sleep(0.1)
    for name in netns:
        run_cmd(["ip", "netns", "delete", name], check=False)
        removed.append(f"netns {name}")
    state_dir = state_root / run_id
    for device in _loop_devices_under(state_dir):
        run_cmd(["losetup", "-d", device], check=False)
        removed.append(f"loop device {device}")
    agent = FENCE_AGENT_DIR / (FENCE_AGENT_PREFIX + run_id)
    if agent.exists():
        agent.unlink()
        removed.append(str(agent))
    if state_dir.exists():
        shutil.rmtree(state_dir, ignore_errors=True)
        removed.append(str(state_dir))
    if state_root.exists() and not any(state_root.iterdir()):
        state_root.rmdir()
    return removed


def stale_runs(state_root: Path = DEFAULT_STATE_ROOT) -> list[str]:
    """Runs whose owner process is gone: leftovers of a killed test or demo."""
    run_ids = {p.name.split("-", 1)[0] for p in NETNS_DIR.glob(f"{RUN_ID_PREFIX}*-*")}
    agents = FENCE_AGENT_DIR.glob(FENCE_AGENT_PREFIX + "*")
    run_ids |= {p.name.removeprefix(FENCE_AGENT_PREFIX) for p in agents}
    if state_root.exists():
        run_ids |= {p.name for p in state_root.iterdir() if p.name.startswith(RUN_ID_PREFIX)}
    stale = []
    for run_id in sorted(run_ids):
        owner_file = state_root / run_id / "owner"
        try:
            owner = json.loads(owner_file.read_text())
            alive = _start_time(int(owner["pid"])) == owner["start"]
        except (OSError, ValueError, KeyError):
            alive = False
        if not alive:
            stale.append(run_id)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m nscluster")
    commands = parser.add_subparsers(dest="command", required=True)
    clean = commands.add_parser("cleanup", help="remove leftovers of runs whose owner is gone")
    clean.add_argument("--run-id", help="remove this run even if its owner is alive")
    clean.add_argument("--state-root", type=Path, default=DEFAULT_STATE_ROOT)
    args = parser.parse_args(argv)
    run_ids = [args.run_id] if args.run_id else stale_runs(args.state_root)
    for run_id in run_ids:
        for item in cleanup_run(run_id, args.state_root):
            print(f"{run_id}: removed {item}")
    if not run_ids:
        print("nothing to clean up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
