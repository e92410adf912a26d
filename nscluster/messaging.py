"""RabbitMQ for nova in the namespace cluster: the profile's broker clone under our agent, clustered.

Each node runs the profile's ``rabbitmq`` clone (``ocf:openstack:rabbitmq``); the three brokers
form one RabbitMQ cluster (``peers`` lists them), with ``pause_minority``, and the services' queues
are quorum queues (``rabbit_quorum_queue``: replicated on the three, a majority confirms), so a
broker's crash loses no confirmed message and its clients fail over to another broker of
``transport_url``, which lists all three.

Names: the broker of Pacemaker node ``nodeN`` is ``rabbit@nodeN`` (the agent's ``%h``). Erlang
must resolve every node's host part inside every node: the harness gives each node a private
``/etc/hosts`` (a file of the run's state directory bind-mounted over ``/etc/hosts`` at each
boot, before corosync starts) mapping every node name to its address.

Per node, private: ``/etc/rabbitmq`` (root's, 0755: the agent's ``config_dir``, the Erlang
cookie in a root-only file, the depth-20 monitor's root-only credentials), ``/var/lib/rabbitmq``
(the broker's HOME and data, ``base_dir``) and ``/var/log/rabbitmq``. The accounts (nova's, the
monitor's, the test clients') are created once the cluster has formed, with ``rabbitmqctl
add_user`` reading the password from its standard input: no password in the CIB, a command line
or a log.

The brokers start together, also the first time: the agent has the first node by name bootstrap
the cluster and the others wait for it and join one at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from nscluster.cluster import Cluster, ClusterError, wait_until

CONFIG_DIR = "/etc/rabbitmq"
HOME = "/var/lib/rabbitmq"
LOG_DIR = "/var/log/rabbitmq"
RABBIT_DIRS = (CONFIG_DIR, HOME, LOG_DIR)
COOKIE_FILE = f"{CONFIG_DIR}/cluster.cookie"
MONITOR_CREDENTIALS = f"{CONFIG_DIR}/monitor.ini"
ADVANCED_CONFIG = f"{CONFIG_DIR}/advanced.config"  # read by the broker from the agent's config_dir
# Erlang's net_ticktime (default 60): a peer whose link went dark (a crash, a netsplit: no reset)
# is seen down after 3/4 to 5/4 of it. Until then the quorum queues it led confirm nothing (measured:
# no confirm for more than 60 s after a crash of the leader's node with the default), and
# pause_minority does not pause. The CLI tools keep 60: a call longer than ~7 s may be dropped.
NET_TICKTIME_S = 10
HOSTS = "/etc/hosts"
USER = "rabbitmq"
PORT = 45672  # AMQP
# Erlang distribution, on the node's address. The CLI tools' own VMs listen on DIST_PORT + 10000 to
# + 10010 (all addresses): never the AMQP port (35672 was, with the default distribution port).
DIST_PORT = 45682
EPMD_PORT = 14369
RESOURCE = "rabbitmq"
CLONE = "rabbitmq-clone"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
QUEUES = "/usr/lib/rabbitmq/bin/rabbitmq-queues"
MONITOR_USER = "ocf-monitor"
CLIENT_USER = "client"
# Depth 0 every 5 s (no Erlang VM: ~30 ms), the AMQP handshake every 10 s, the confirmed round trip
# on a quorum queue with the cluster's health every 60 s.
MONITORS = (
    {"name": "monitor", "interval": "5s", "timeout": "20s"},
    {"name": "monitor", "interval": "10s", "timeout": "20s", "depth": 10},
    {"name": "monitor", "interval": "60s", "timeout": "40s", "depth": 20},
)
# What the services' [oslo_messaging_rabbit] holds (docs/cluster.md, "The message bus"): quorum
# queues; AMQP heartbeats every 2 s (threshold 6 s, checked 3 times per threshold) so a connection to
# a crashed broker is given up within ~6 s rather than 60; reconnect at once and round-robin
# through transport_url's brokers.
OSLO_MESSAGING_RABBIT = {
    "rabbit_quorum_queue": "true",
    "heartbeat_timeout_threshold": "6",
    "heartbeat_rate": "3",
    "kombu_reconnect_delay": "0.5",
    "kombu_failover_strategy": "round-robin",
    "rabbit_retry_interval": "1",
    "rabbit_retry_backoff": "1",
    "rabbit_interval_max": "3",
}

DATA_MARKER = "harness-marker"  # written into a data directory by data_mark

def erlang_node(node: str) -> str:
    return f"rabbit@{node}"


@dataclasses.dataclass
class RabbitInCluster:
    """The broker clone; ``transport_url`` is what nova connects with."""

    cluster: Cluster
    user: str = "nova"
    password: str = dataclasses.field(default_factory=lambda: "mq-" + secrets.token_hex(12))
    monitor_password: str = dataclasses.field(default_factory=lambda: "mqmon-" + secrets.token_hex(12))
    client_password: str = dataclasses.field(default_factory=lambda: "mqcli-" + secrets.token_hex(12))
    monitor_depth20: bool = True
    formation_failures: list[str] = dataclasses.field(default_factory=list)
    formed: bool = False  # wait_formed saw the cluster

    @property
    def passwords(self) -> tuple[str, ...]:
        return self.password, self.monitor_password, self.client_password

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.cluster.nodes.values()]

    @property
    def transport_url(self) -> str:
        brokers = ",".join(f"{self.user}:{self.password}@{address}:{PORT}" for address in self.addresses)
        return f"rabbit://{brokers}/"

    def oslo_section(self) -> str:
        """``[oslo_messaging_rabbit]`` of every service on the bus."""
        return "[oslo_messaging_rabbit]\n" + "".join(f"{k} = {v}\n" for k, v in OSLO_MESSAGING_RABBIT.items())

    @property
    def peers(self) -> str:
        return " ".join(erlang_node(name) for name in self.cluster.nodes)

    # preparation ----------------------------------------------------------

    def prepare(self, _mysql_socket: str = "") -> None:
        """Every node's private /etc/hosts, directories, cookie and monitor credentials (the brokers
        start under Pacemaker once the configuration is pushed)."""
        began = time.monotonic()
        self.private_hosts()
        cookie = secrets.token_hex(20)
        monitor = f"[credentials]\nusername = {MONITOR_USER}\npassword = {self.monitor_password}\n"
        for name in self.cluster.nodes:
            config_dir = self.cluster.node_path(name, CONFIG_DIR)
            os.chown(config_dir, 0, 0)
            config_dir.chmod(0o755)
            for directory in (HOME, LOG_DIR):
                private = self.cluster.node_path(name, directory)
                os.chown(private, *_ids(USER))
                private.chmod(0o750)
            _write_root_only(self.cluster.node_path(name, COOKIE_FILE), cookie)
            _write_root_only(self.cluster.node_path(name, MONITOR_CREDENTIALS), monitor)
            advanced = self.cluster.node_path(name, ADVANCED_CONFIG)
            advanced.write_text(f"[{{kernel, [{{net_ticktime, {NET_TICKTIME_S}}}]}}].\n")
            advanced.chmod(0o644)
        self.cluster.progress(f"RabbitMQ prepared in {time.monotonic() - began:.1f} s "
                              f"(brokers {self.peers} on port {PORT})")

    def private_hosts(self) -> None:
        """A private /etc/hosts per node, mounted now on running nodes and at every later boot."""
        text = "127.0.0.1 localhost\n::1 localhost\n" + "".join(
            f"{node.address} {name}\n" for name, node in self.cluster.nodes.items())
        for name, node in self.cluster.nodes.items():
            hosts = node.directory / "hosts"
            hosts.write_text(text)
            hosts.chmod(0o644)
            node_json = node.directory / "node.json"
            config = json.loads(node_json.read_text())
            bind = [str(hosts), HOSTS]
            if bind not in config["binds"]:
                config["binds"].append(bind)
                node_json.write_text(json.dumps(config))
            if node.powered:
                self.cluster.run(name, ["mount", "--bind", str(hosts), HOSTS])

    def overrides(self) -> dict[str, dict[str, object]]:
        """Site tables enabling the profile's broker clone."""
        params: dict[str, object] = {
            "nodename": "rabbit@%h", "host": self.cluster.spec.subnet, "port": PORT, "dist_port": DIST_PORT,
            "epmd_port": EPMD_PORT, "cookie_file": COOKIE_FILE, "base_dir": HOME, "config_dir": CONFIG_DIR,
            "log_dir": LOG_DIR, "peers": self.peers, "partition_handling": "pause_minority", "heartbeat": 5}
        monitors = list(MONITORS)
        if self.monitor_depth20:
            params["credentials"] = MONITOR_CREDENTIALS
        else:
            monitors = monitors[:2]
        return {
            f"primitive.{RESOURCE}": {"enabled": True, "ops": monitors},
            f"primitive.{RESOURCE}.params": params,
            f"clone.{CLONE}": {"enabled": True, "resource": RESOURCE, "meta": {"interleave": True}},
        }

    def wait_formed(self, timeout_s: float = 180) -> float:
        """Every broker running in one cluster; then the accounts. Returns the seconds waited."""
        began = time.monotonic()
        everyone = sorted(erlang_node(name) for name in self.cluster.nodes)
        failed: list[str] = []

        def formed() -> bool:
            if self.running_nodes() == everyone:
                return True
            # A new node's join (stop_app, join_cluster, start_app) can fail its start (seen: the
            # AMQP listener's address still in use at start_app); with data now, the retry boots it.
            status = self.cluster.try_status()
            failures = [str(f) for f in status.failures if f.resource == RESOURCE] if status else []
            if failures:
                failed.extend(failures)
                self.cluster.progress(f"broker failures while forming: {'; '.join(failures)}")
                self.cluster.run(self.cluster.any_running_node(), ["crm_resource", "--cleanup", "--resource",
                                                                   RESOURCE], check=False)
            return False

        wait_until(formed, f"brokers {everyone} running as one cluster", timeout_s, poll_s=2)
        self.formation_failures = failed
        self.formed = True
        self.create_accounts()
        took = time.monotonic() - began
        self.cluster.progress(f"RabbitMQ cluster formed ({', '.join(everyone)}) and accounts created "
                              f"after {took:.1f} s")
        return took

    def create_accounts(self) -> None:
        node = self.any_broker_node()
        # The monitor's account: its own queues, and publishing through the default exchange.
        monitor = ("^ocf-monitor\\.", "^(ocf-monitor\\..*|amq\\.default)$", "^ocf-monitor\\.")
        for user, password, rights in ((self.user, self.password, (".*",) * 3),
                                       (MONITOR_USER, self.monitor_password, monitor),
                                       (CLIENT_USER, self.client_password, (".*",) * 3)):
            done = self.ctl(node, "add_user", user, input_text=password + "\n", check=False)
            if done.returncode != 0 and "already exists" not in done.stderr + done.stdout:
                raise ClusterError(f"rabbitmqctl add_user {user} on {node} exited {done.returncode}")
            self.ctl(node, "set_permissions", "-p", "/", user, *rights)

    # the brokers on the nodes ----------------------------------------------

    def any_broker_node(self, exclude: tuple[str, ...] = ()) -> str:
        for name, node in self.cluster.nodes.items():
            if node.powered and name not in exclude and self.identity(name) is not None:
                return name
        raise ClusterError("no node runs a broker")

    def ctl(self, node: str, *args: str, input_text: str | None = None, check: bool = True,
            timeout: float = 60, tool: str = CTL) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n rabbit@NODE ARGS`` inside ``node`` as the broker's user (its HOME holds the
        cookie the agent copied); secrets only on stdin."""
        pid1 = self.cluster.nodes[node].pid1
        if pid1 is None:
            raise ClusterError(f"{node} is powered off")
        argv = ["nsenter", "-t", str(pid1), "-m", "-u", "-i", "-n", "-p", "--", "setpriv", f"--reuid={USER}",
                f"--regid={USER}", "--init-groups", tool, "-n", erlang_node(node), *args]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": HOME,
               "ERL_EPMD_PORT": str(EPMD_PORT)}
        done = subprocess.run(argv, input=input_text, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False, cwd="/")
        if check and done.returncode != 0:
            raise ClusterError(f"{os.path.basename(tool)} {args[0]} on {node} exited {done.returncode}: "
                               f"{done.stderr.strip()[-300:]}")
        return done

    def status_of(self, node: str) -> dict[str, object]:
        done = self.ctl(node, "cluster_status", "--formatter", "json", check=False, timeout=30)
        if done.returncode != 0:
            return {}
        try:
            found = json.loads(done.stdout)
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def running_nodes(self, via: str | None = None) -> list[str]:
        """The cluster's running brokers as one node's broker sees them (empty when it does not answer)."""
        try:
            node = via or self.any_broker_node()
        except ClusterError:
            return []
        running = self.status_of(node).get("running_nodes", [])
        return sorted(str(n) for n in running) if isinstance(running, list) else []

    def members(self, via: str | None = None) -> list[str]:
        node = via or self.any_broker_node()
        disc = self.status_of(node).get("disk_nodes", [])
        return sorted(str(n) for n in disc) if isinstance(disc, list) else []

    def queue_leader(self, queue: str, via: str | None = None) -> str:
        """The Pacemaker node whose broker leads quorum queue ``queue`` (empty when unknown)."""
        node = via or self.any_broker_node()
        done = self.ctl(node, "list_queues", "name", "leader", "--formatter", "json", check=False, timeout=30)
        try:
            rows = json.loads(done.stdout) if done.returncode == 0 else []
        except ValueError:
            rows = []
        for row in rows:
            if isinstance(row, dict) and row.get("name") == queue:
                return str(row.get("leader", "")).partition("@")[2]
        return ""

    def queue_info(self, queue: str, via: str | None = None) -> dict[str, int]:
        """``messages`` and ``consumers`` of ``queue`` (empty when it does not exist)."""
        node = via or self.any_broker_node()
        done = self.ctl(node, "list_queues", "name", "messages", "consumers", "--formatter", "json",
                        check=False, timeout=30)
        try:
            rows = json.loads(done.stdout) if done.returncode == 0 else []
        except ValueError:
            rows = []
        for row in rows:
            if isinstance(row, dict) and row.get("name") == queue:
                return {key: int(row.get(key) or 0) for key in ("messages", "consumers")}
        return {}

    def queue_members(self, queue: str, via: str | None = None) -> list[str]:
        node = via or self.any_broker_node()
        done = self.ctl(node, "list_queues", "name", "members", "--formatter", "json", check=False,
                        timeout=30)
        try:
            rows = json.loads(done.stdout) if done.returncode == 0 else []
        except ValueError:
            rows = []
        for row in rows:
            if isinstance(row, dict) and row.get("name") == queue:
                return sorted(str(member) for member in row.get("members", []))
        return []

    def identity(self, node: str) -> tuple[int, int] | None:
        """(pid inside the node, start time) of the broker our agent recorded on ``node``."""
        from nscluster.openstack import recorded_identity

        return recorded_identity(self.cluster, node, RESOURCE)

    def broker_pid(self, node: str) -> int | None:
        """The pid (inside the node) of the node's broker as our agent recorded it, if it runs."""
        identity = self.identity(node)
        if identity is None:
            return None
        done = self.cluster.run(node, ["ps", "-o", "pid=", "-p", str(identity[0])], check=False)
        return identity[0] if done.stdout.strip() else None

    def client(self, mode: str, queue: str, seconds: float = 0, interval_s: float = 0.05,
               hosts: list[str] | None = None) -> AmqpClient:
        """``nscluster/amqpclient.py`` in the cluster's client namespace (the bridge's), with the test
        account on its standard input; ``hosts``: every broker by default."""
        from nscluster.cluster import PACKAGE_DIR, SYSTEM_PYTHON, netns_inode

        inode = netns_inode(self.cluster.spec.bridge_netns)
        argv = self.cluster.client_argv([
            SYSTEM_PYTHON, "-I", "-S", str(PACKAGE_DIR / "amqpclient.py"), str(inode), mode, queue,
            ",".join(hosts or self.addresses), str(PORT), str(seconds), str(interval_s)])
        return AmqpClient(argv, json.dumps({"user": CLIENT_USER, "password": self.client_password}))

    def data_dir(self, node: str) -> Path:
        """Where the harness sees the broker's data (mnesia) directory of ``node``."""
        return self.cluster.node_path(node, HOME) / "mnesia" / erlang_node(node)

    def open_data_dir(self, node: str) -> int:
        """A descriptor of the broker's data directory of ``node``, opened following no link."""
        return _open_under_home(self.cluster.node_path(node, HOME), "mnesia", erlang_node(node))

    def data_inode(self, node: str) -> int | None:
        """The inode of the broker's data directory of ``node`` (None when there is none), opened
        following no link."""
        try:
            fd = self.open_data_dir(node)
        except FileNotFoundError:
            return None
        try:
            return os.fstat(fd).st_ino
        finally:
            os.close(fd)

    def data_mark(self, node: str) -> int:
        """The inode of the broker's data directory of ``node``, after writing a fresh marker file
        into it (created, never opened through a link: the directory is the broker user's)."""
        fd = self.open_data_dir(node)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(DATA_MARKER, dir_fd=fd)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            marker = os.open(DATA_MARKER, flags, 0o644, dir_fd=fd)
            os.write(marker, b"written before the fault\n")
            os.close(marker)
            return os.fstat(fd).st_ino
        finally:
            os.close(fd)

    def data_replaced(self, node: str, inode: int) -> bool:
        """Whether the broker's data directory of ``node`` is gone, another than the one marked by
        ``data_mark`` (``inode``), or without its marker: a wipe."""
        try:
            fd = self.open_data_dir(node)
        except FileNotFoundError:
            return True
        try:
            if os.fstat(fd).st_ino != inode:
                return True
            try:
                os.stat(DATA_MARKER, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return True
            return False
        finally:
            os.close(fd)

    def broker_processes(self, node: str) -> list[int]:
        """Pids (inside ``node``) of the Erlang VMs of the broker's user there."""
        done = self.cluster.run(node, ["pgrep", "-u", USER, "-x", "beam.smp"], check=False)
        return [int(pid) for pid in done.stdout.split()]

    @contextlib.contextmanager
    def data_destroyed(self, node: str) -> Iterator[int]:
        """What a replaced disk under ``/var/lib/rabbitmq`` leaves on ``node``: the broker's HOME
        empty (its data directory, the cookie copy, every file of the broker), the directory itself
        kept with its owner and mode, as a new filesystem mounted there and given to the broker's
        user would be. The broker must be stopped. Everything is opened one component at a time
        from ``/`` following no link, the components above HOME checked root's, and removed
        relative to HOME's descriptor (``shutil.rmtree`` with ``dir_fd`` follows no link either).

        Yields the inode of the removed data directory, which stays allocated (the directory held
        open) until the block ends: a data directory created meanwhile has another inode."""
        if self.broker_processes(node):
            raise ClusterError(f"the broker of {node} still runs: its data is not removed under it")
        held = self.open_data_dir(node)
        home = -1
        try:
            home = _open_under_home(self.cluster.node_path(node, HOME))
            for name in os.listdir(home):
                if stat.S_ISDIR(os.lstat(name, dir_fd=home).st_mode):
                    shutil.rmtree(name, dir_fd=home)
                else:
                    os.unlink(name, dir_fd=home)
            os.close(home)
            home = -1
            yield os.fstat(held).st_ino
        finally:
            for fd in (home, held):
                if fd >= 0:
                    os.close(fd)

    def agent_log_offset(self, node: str) -> int:
        """The size of ``node``'s Pacemaker log (where our agents log: ``HA_LOGFILE``) now."""
        return len(self._pacemaker_log(node))

    def agent_log(self, node: str, offset: int = 0) -> list[str]:
        """The lines our broker agent logged on ``node`` after byte ``offset`` of its Pacemaker log."""
        text = self._pacemaker_log(node)[offset:].decode(errors="replace")
        return [line for line in text.splitlines() if line.startswith(f"{RESOURCE}({RESOURCE})[")]

    def _pacemaker_log(self, node: str) -> bytes:
        """The node's Pacemaker log, read as root following no link and opening nothing but a regular
        file (its directory is hacluster's)."""
        path = self.cluster.nodes[node].directory / "log-pacemaker" / "pacemaker.log"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return b""
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ClusterError(f"the Pacemaker log of {node} is not a regular file")
            return handle.read()


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _open_under_home(home: Path, *below: str) -> int:
    """A descriptor of the directory ``home/below...``, opened one component at a time from ``/``
    following no link (``O_NOFOLLOW``: a link fails, a file is no directory). Every directory a
    component is looked up in down to ``home``'s parent must be root's and writable by no one else
    (a sticky one like /tmp excepted); below that the directories are the broker user's."""
    parts = [*home.parts[1:], *below]
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for depth, part in enumerate(parts):
            if depth < len(home.parts) - 1:
                info = os.fstat(fd)
                if info.st_uid != 0 or (info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX):
                    raise ClusterError(f"a directory above {home} is not root's alone: not opened")
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_root_only(path: Path, text: str) -> None:
    """``text`` in a fresh root-owned 0600 file at ``path`` (replacing any old one)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class AmqpClient:
    """A running ``amqpclient.py``: its events as they come (a reader thread), stopped with SIGTERM."""

    def __init__(self, argv: list[str], account: str) -> None:
        import threading

        self.events: list[dict[str, object]] = []
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        if self.process.stdin is not None:
            self.process.stdin.write(account + "\n")
            self.process.stdin.close()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout or ():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue

    def ids(self, event: str) -> set[int]:
        return {int(e["id"]) for e in list(self.events) if e.get("event") == event}  # type: ignore[call-overload]

    @property
    def confirmed(self) -> set[int]:
        return self.ids("confirmed")

    @property
    def consumed(self) -> set[int]:
        return self.ids("consumed")

    def confirmed_after(self, at: float) -> float | None:
        """The time of the first confirm after ``at`` (None if none yet)."""
        times = [float(e["t"]) for e in list(self.events)  # type: ignore[arg-type]
                 if e.get("event") == "confirmed" and float(e["t"]) > at]  # type: ignore[arg-type]
        return min(times) if times else None

    def wait_confirmed(self, count: int, timeout_s: float = 60) -> None:
        wait_until(lambda: len(self.confirmed) >= count, f"{count} confirmed messages", timeout_s)

    def tail(self, count: int = 12) -> str:
        """The last events but confirms and deliveries, and the counts (for a failure's message)."""
        others = [e for e in list(self.events) if e.get("event") not in ("confirmed", "consumed")]
        code = self.process.poll()
        state = "running" if code is None else f"exited {code}: {self.stderr()}"
        return (f"{len(self.confirmed)} confirmed, {len(self.consumed)} consumed ({state}); last other "
                f"events: {others[-count:]}")

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM, and wait for its last event."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(10)

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()[-500:]
