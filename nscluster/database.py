"""The cluster's database as the default profile runs it: DRBD (its test double) → Filesystem → mysql → VIP.

DRBD's kernel module cannot load here, so the DRBD 9 test double
(``harness/drbd_double``) stands in for it: three replicas of the profile's DRBD
resource ``mysql``, one per node, whose state directory lives under the run's
state directory (every node sees it). Pacemaker's agents find the double's
``drbdadm``/``drbdsetup`` first on their PATH (``ClusterSpec.agent_env``); the
profile's promotable ``ocf:openstack:drbd`` clone, ``ocf:heartbeat:Filesystem``,
our ``mysql`` agent and ``db-vip`` run exactly as the profile declares them, re-
enabled by the site file (``overrides``).

The resource's configuration (``drbdconf``) lives under the run's state
directory, one file every node reads (the double remembers the path it was last
used with, so one path for all). Each node has a private ``/etc/drbd.d`` holding
``mysql.device``, a link to the node's own DRBD device: the double gives each
host its own minor because the nodes share ``/dev``, where real DRBD uses the
same ``/dev/drbd0`` everywhere, so the site names the link where it would name
``/dev/drbd0``.

The double has no network: the harness tells it what the cluster's faults do
(``Cluster.fault_listeners``): a node that loses power crashes its DRBD (peers
see the connection drop at once), an isolated node's replication links are
blocked, a reconnected node's are unblocked.

``prepare`` builds the initial image (ext4, a MariaDB datadir and a ``writer``
account for clients of the database VIP, its password only in a 0600 option
file) and hands it to the double as the UpToDate data of every replica.
"""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
import time
from pathlib import Path

from nscluster.cluster import DEFAULT_STATE_ROOT, REPO_ROOT, Cluster, ClusterError, new_run_id, run_cmd
from nscluster.dbclient import DATABASE, TABLE

PORT = 13306
MOUNTPOINT = "/var/lib/mysql"
DATADIR = f"{MOUNTPOINT}/data"
RUNDIR = "/run/mysqld-nsc"
SOCKET = f"{RUNDIR}/mysqld.sock"  # MariaDB's local socket on the node that runs it
IMAGE_MB = 256
DRBD_RESOURCE = "mysql"  # the profile's drbd_resource
DRBD_BIN = REPO_ROOT / "harness" / "drbd_double" / "bin"
DRBD_CONF_DIR = "/etc/drbd.d"  # private per node
NODE_DEVICE = f"{DRBD_CONF_DIR}/{DRBD_RESOURCE}.device"
AGENT_PATH = f"{DRBD_BIN}:/usr/sbin:/usr/bin:/sbin:/bin"
OUR_MYSQL = "ocf:openstack:mysql"
SHELL_MYSQL = "ocf:heartbeat:mysql"
DRBD_PORT_BASE = 7788
NO_SUCH_RESOURCE = 10  # drbdsetup's exit code for a resource that is down
# The log written at each commit but flushed once a second, the binary log never flushed.
NON_DURABLE = {"innodb_flush_log_at_trx_commit": "2", "sync_binlog": "0"}


def drbd_dir(state_dir: Path) -> Path:
    return state_dir / "drbd"


def spec_fields(run_id: str | None = None, state_root: Path = DEFAULT_STATE_ROOT,
                private_dirs: tuple[str, ...] = ("/root",)) -> dict[str, object]:
    """``ClusterSpec`` fields a cluster running the database needs (pass them at creation)."""
    run_id = run_id or new_run_id()
    state = drbd_dir(state_root / run_id)
    return {"run_id": run_id, "state_root": state_root,
            "private_dirs": tuple(dict.fromkeys((*private_dirs, DRBD_CONF_DIR))),
            "agent_env": (("PATH", AGENT_PATH), ("DRBD_DOUBLE_STATE", str(state / "state")),
                          ("DRBD_DOUBLE_CONF", str(state / "drbd.conf")))}


@dataclasses.dataclass
class Database:
    cluster: Cluster
    minor_base: int = 0
    # The nodes with a replica (the site's storage nodes); empty: every node.
    storage_nodes: tuple[str, ...] = ()

    @property
    def replicas(self) -> tuple[str, ...]:
        return self.storage_nodes or self.cluster.spec.node_names

    @property
    def config(self) -> Path:
        return self.cluster.spec.state_dir / "my.cnf"

    @property
    def client_options(self) -> Path:
        return self.cluster.spec.state_dir / "writer.cnf"

    @property
    def drbd_conf(self) -> Path:
        return drbd_dir(self.cluster.spec.state_dir) / "drbd.conf"

    def device(self, node: str) -> str:
        """The node's own DRBD device (what ``NODE_DEVICE`` links to inside the node)."""
        return f"/dev/drbd{self.minor_base + self.replicas.index(node)}"

    # --- the DRBD double, driven from the harness ---------------------------------------------

    def drbd_double(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = self._node_env(self.replicas[0])
        done = subprocess.run([str(DRBD_BIN / "drbd-double"), "-c", str(self.drbd_conf), *args], env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        if check and done.returncode != 0:
            raise ClusterError(f"drbd-double {' '.join(args)} exited {done.returncode}: "
                               f"{done.stderr.strip()}")
        return done

    def follow_fault(self, event: str, node: str) -> None:
        """What the cluster's faults do to DRBD, which the double cannot see by itself."""
        if node not in self.replicas:
            return
        others = [name for name in self.replicas if name != node]
        if event == "power-off":
            self.drbd_double("crash", DRBD_RESOURCE, node, check=False)
        elif event == "isolate":
            for other in others:
                self.drbd_double("block", DRBD_RESOURCE, node, other)
        elif event == "reconnect":
            for other in others:
                self.drbd_double("unblock", DRBD_RESOURCE, node, other)

    # --- preparation --------------------------------------------------------------------------

    def _check_spec(self) -> None:
        spec = self.cluster.spec
        if DRBD_CONF_DIR not in spec.private_dirs or dict(spec.agent_env).get("PATH") != AGENT_PATH:
            raise ClusterError("a cluster running the database needs "
                               "ClusterSpec(**database.spec_fields(...))")

    def prepare(self, via: str) -> None:
        import importlib

        # Test code (not type-checked with the harness): the double's own configuration writer.
        fixture = importlib.import_module("harness.drbd_double.fixture")
        self._check_spec()
        names = self.replicas
        directory = drbd_dir(self.cluster.spec.state_dir)
        directory.mkdir()
        image = directory / "initial.img"
        self._build_image(image, via)
        self.minor_base = fixture._free_minor_base(len(names))
        disks = {name: str(directory / f"{name}.disk") for name in names}
        fixture.write_config(str(self.drbd_conf), DRBD_RESOURCE, names, disks, self.minor_base,
                             DRBD_PORT_BASE, quorum=len(names) >= 3)
        self.cluster.fault_listeners.append(self.follow_fault)
        self.drbd_double("init", DRBD_RESOURCE, str(image))
        image.unlink()
        for name in names:
            link = self.cluster.node_path(name, DRBD_CONF_DIR) / Path(NODE_DEVICE).name
            link.symlink_to(self.device(name))

    def _build_image(self, image: Path, via: str) -> None:
        with open(image, "wb") as handle:
            handle.truncate(IMAGE_MB * 1024 * 1024)
        run_cmd(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(image)])
        self.write_config()
        password = secrets.token_hex(16)
        self.client_options.touch(mode=0o600)
        self.client_options.write_text(f"[client]\nuser = writer\npassword = {password}\n")
        loop = run_cmd(["losetup", "-f", "--show", str(image)]).stdout.strip()
        run = self.cluster.run
        try:
            run(via, ["mount", loop, MOUNTPOINT])
            try:
                run(via, ["install", "-d", "-o", "mysql", "-g", "mysql", DATADIR, RUNDIR])
                run(via, ["mariadb-install-db", f"--defaults-file={self.config}", f"--datadir={DATADIR}",
                          "--user=mysql", "--auth-root-authentication-method=normal", "--skip-test-db"],
                    timeout=180)
                self._create_account(via, password)
            finally:
                run(via, ["umount", MOUNTPOINT], check=False)
        finally:
            run_cmd(["losetup", "-d", loop], check=False)

    def write_config(self, durable: bool = True) -> None:
        """The servers' my.cnf (read at their next start); ``durable=False``: settings under which a
        power cut of the holder loses up to a second of acknowledged commits (a negative control)."""
        extra = "" if durable else "".join(f"{k} = {v}\n" for k, v in NON_DURABLE.items())
        self.config.write_text(f"[mysqld]\nport = {PORT}\nbind-address = 0.0.0.0\nskip-name-resolve\n"
                               # A 16 MB redo log (MariaDB's default is 96 MB) leaves room in the
                               # 256 MB image for keystone's, glance's and nova's three schemas.
                               "innodb_buffer_pool_size = 32M\ninnodb_log_file_size = 16M\n" + extra)
        self.config.chmod(0o644)

    def _create_account(self, via: str, password: str) -> None:
        socket = f"{RUNDIR}/init.sock"
        server = subprocess.Popen(
            ["nsenter", "-t", str(self.cluster.nodes[via].pid1), "-m", "-u", "-i", "-n", "-p", "--",
             "mariadbd", f"--defaults-file={self.config}", f"--datadir={DATADIR}", f"--socket={socket}",
             "--skip-networking", "--user=mysql", f"--log-error={RUNDIR}/init.log"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            sql = (f"CREATE DATABASE {DATABASE};\n"
                   f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, at DOUBLE) ENGINE=InnoDB;\n"
                   f"CREATE USER 'writer'@'%' IDENTIFIED BY '{password}';\n"
                   f"GRANT SELECT, INSERT ON {DATABASE}.* TO 'writer'@'%';\n")
            end = time.monotonic() + 60
            while True:
                done = self.cluster.run(via, ["mariadb", f"--socket={socket}", "-uroot"], input_text=sql,
                                        check=False)
                if done.returncode == 0:
                    break
                if time.monotonic() > end or server.poll() is not None:
                    raise ClusterError(f"could not prepare the database: {done.stderr.strip()}")
                time.sleep(0.2)
            self.cluster.run(via, ["mariadb-admin", f"--socket={socket}", "-uroot", "shutdown"])
            server.wait(60)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()

    # --- the site file ------------------------------------------------------------------------

    def overrides(self, mysql_agent: str = OUR_MYSQL) -> dict[str, dict[str, object]]:
        """Site tables enabling the profile's DRBD clone and ``db`` group; ``mysql_agent``:
        ours or resource-agents' ``ocf:heartbeat:mysql`` (the reference stack)."""
        server: dict[str, object] = {
            "config": str(self.config), "datadir": DATADIR, "socket": SOCKET,
            "pid": f"{RUNDIR}/mysqld.pid", "log": f"{RUNDIR}/error.log", "user": "mysql"}
        if mysql_agent == OUR_MYSQL:
            server |= {"port": PORT, "device": NODE_DEVICE}
        else:
            server |= {"binary": "/usr/sbin/mariadbd", "group": "mysql", "test_user": "root"}
        return {
            "primitive.drbd": {"enabled": True},
            "primitive.drbd.params": {"drbd_resource": DRBD_RESOURCE, "drbdconf": str(self.drbd_conf)},
            "clone.drbd-clone": {"enabled": True, "resource": "drbd"},
            "primitive.db-fs": {"enabled": True},
            "primitive.db-fs.params": {"device": NODE_DEVICE, "directory": MOUNTPOINT, "fstype": "ext4"},
            "primitive.mysql": {"enabled": True, "agent": mysql_agent},
            "primitive.mysql.params": server,
            "group.db": {"enabled": True},
            "colocation.db-with-promoted-drbd": {"enabled": True},
            "order.db-after-drbd-promote": {"enabled": True},
        }

    # --- clients (in the bridge namespace) ----------------------------------------------------

    def writer_argv(self, mode: str, address: str, timeout_s: float, first_id: int = 0) -> list[str]:
        """A client in the bridge namespace: ``write`` (retry until one INSERT commits) or ``count``."""
        from nscluster.cluster import PACKAGE_DIR, SYSTEM_PYTHON, netns_inode

        inode = netns_inode(self.cluster.spec.bridge_netns)
        return self.cluster.client_argv([
            SYSTEM_PYTHON, "-I", str(PACKAGE_DIR / "dbclient.py"), str(inode), mode, address, str(PORT),
            str(self.client_options), str(timeout_s), str(first_id)])

    def write(self, address: str, row_id: int, timeout_s: float = 120) -> float:
        """Retry one INSERT through ``address`` until it commits; the monotonic time of the commit."""
        import json

        done = run_cmd(self.writer_argv("write", address, timeout_s, row_id), timeout=timeout_s + 30,
                       check=False)
        if done.returncode != 0:
            raise ClusterError(f"no write through {address} committed: {done.stderr.strip()[-300:]}")
        return float(json.loads(done.stdout)["t"])

    def ids(self, address: str) -> list[int]:
        import json

        return list(json.loads(run_cmd(self.writer_argv("count", address, 10), timeout=60).stdout)["ids"])

    def drbd_roles(self) -> dict[str, str]:
        """Each node's DRBD role as the double records it (Primary, Secondary, or down)."""
        import json

        roles = {}
        for name in self.replicas:
            done = subprocess.run([str(DRBD_BIN / "drbdsetup"), "status", "--json", DRBD_RESOURCE],
                                  env=self._node_env(name), capture_output=True, text=True, timeout=60,
                                  check=False)
            if done.returncode not in (0, NO_SUCH_RESOURCE):
                raise ClusterError(f"drbdsetup status as {name}: {done.stderr.strip()}")
            roles[name] = json.loads(done.stdout)[0]["role"] if done.returncode == 0 else "down"
        return roles

    def _node_env(self, node: str) -> dict[str, str]:
        import os

        return {**os.environ, "DRBD_DOUBLE_STATE": str(drbd_dir(self.cluster.spec.state_dir) / "state"),
                "DRBD_DOUBLE_NODE": node, "DRBD_DOUBLE_CONF": str(self.drbd_conf)}
