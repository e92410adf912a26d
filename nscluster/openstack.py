"""keystone in the namespace cluster: the profile's interleaved clone on every node, for real.

Each node has its own ``/etc/keystone`` and ``/var/log/keystone`` (``PRIVATE_DIRS``, to pass to
``ClusterSpec``); keystone reaches its database through the database VIP, the profile's
``public-vip`` runs only where keystone runs. ``KeystoneInCluster.prepare`` (once per cluster,
with the database group running) creates the keystone database and account through the MariaDB
socket of the node that runs ``mysql``, writes every node's configuration, runs ``db_sync``,
``fernet_setup``, ``credential_setup`` and ``bootstrap`` once, then copies the same key
repositories to every node. Passwords reach SQL on stdin and keystone in
``OS_BOOTSTRAP_PASSWORD``, never a command line; the admin's credentials live in a 0600 file
under the state directory, read by the deep check and by the clients.

Clients (``nscluster/tokenclient.py``) run only in the bridge namespace. For benchmarks:
``start_waiting_token``/``finish_waiting_token`` and ``seconds_to_token_after_crash``.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from nscluster import config, health
from nscluster.cluster import PACKAGE_DIR, SYSTEM_PYTHON, Cluster, ClusterError, netns_inode

CONFIG_DIR = "/etc/keystone"
LOG_DIR = "/var/log/keystone"
GLANCE_DIRS = ("/etc/glance", "/var/log/glance", "/var/lib/glance")
PRIVATE_DIRS = ("/root", CONFIG_DIR, LOG_DIR, *GLANCE_DIRS)
CONFIG = f"{CONFIG_DIR}/keystone.conf"
KEY_REPOSITORIES = ("fernet-keys", "credential-keys")
PORT = 15000
USER = "keystone"
PASSWORD_HASH_ROUNDS = 4  # bcrypt's minimum: test passwords, not users' (see _write_config)
DATABASE = "keystone"
RESOURCE = "keystone"
CLONE = "keystone-clone"
# Fast enough to see faults within seconds: depth 0 every 5 s, the version document every 6 s
# with a tight budget (a hung keystone fails by this monitor's timeout), a token every 60 s.
# pacemaker-execd runs one operation of a resource at a time: a monitor waiting on a hung service
# holds back the others, so no monitor gets a long budget (the token check needs under 1 s).
MONITORS = (
    {"name": "monitor", "interval": "5s", "timeout": "10s"},
    {"name": "monitor", "interval": "6s", "timeout": "8s", "depth": 10},
    {"name": "monitor", "interval": "60s", "timeout": "10s", "depth": 20},
)
# Fail fast when the database moves. A pooled connection to the old holder is dead, but a query on
# it waits for TCP's retransmissions (0.2, 0.6, 1.4, 3, 6.2, 12.6 s... after it was sent) to reach
# the new holder and be refused: a worker blocked there for up to 20 s holds back every request
# queued behind it (version documents too). With these limits the query fails, the pool reconnects.
DATABASE_PARAMETERS = "connect_timeout=1&read_timeout=3&write_timeout=3"


def database_section(section: str, url: str) -> str:
    """An oslo.db section: the connection and its fail-fast parameters."""
    return f"[{section}]\nconnection = {url}\nconnection_parameters = {DATABASE_PARAMETERS}\n"


# The profile entries that tie keystone to the database and the public VIP to keystone.
PROFILE_LINKS = ("order.keystone-after-db", "colocation.public-vip-with-api", "order.public-vip-after-api")


@dataclasses.dataclass
class KeystoneInCluster:
    """keystone for one cluster; ``database`` is the cluster database (``nscluster.database``)."""

    cluster: Cluster
    db_port: int
    workers: int = 2
    admin_password: str = dataclasses.field(default_factory=lambda: "adm-" + secrets.token_hex(12))
    db_password: str = dataclasses.field(default_factory=lambda: "ks-" + secrets.token_hex(12))

    @property
    def public_address(self) -> str:
        return self.cluster.spec.vip_address(health.VIPS.index(config.PUBLIC_VIP))

    @property
    def database_address(self) -> str:
        return self.cluster.spec.vip_address(health.VIPS.index(config.DATABASE_VIP))

    @property
    def auth_url(self) -> str:
        return f"http://{self.public_address}:{PORT}/v3"

    @property
    def credentials(self) -> Path:
        """The admin's credentials (root-only): the deep check's and the clients'."""
        return self.cluster.spec.state_dir / "keystone-admin.conf"

    @property
    def monitor_credentials(self) -> Path:
        """The admin's credentials with keystone's URL: the deep check of the other APIs."""
        return self.cluster.spec.state_dir / "service-monitor.conf"

    @property
    def passwords(self) -> tuple[str, str]:
        return self.admin_password, self.db_password

    # preparation ----------------------------------------------------------

    def prepare(self, mysql_socket: str) -> None:
        """Database, configs, schema, keys and the admin, with the ``db`` group running."""
        began = time.monotonic()
        (holder,) = self.cluster.status().where("mysql")
        create_database(self.cluster, holder, mysql_socket, DATABASE, USER, self.db_password)
        for node in self.cluster.nodes:
            self._write_config(node)
        first = next(iter(self.cluster.nodes))
        self._manage(first, ["db_sync"], timeout=300)
        for repository in ("fernet_setup", "credential_setup"):
            self._manage(first, [repository, "--keystone-user", USER, "--keystone-group", USER])
        self._manage(first, ["bootstrap"], env={
            "OS_BOOTSTRAP_PASSWORD": self.admin_password, "OS_BOOTSTRAP_USERNAME": "admin",
            "OS_BOOTSTRAP_PROJECT_NAME": "admin", "OS_BOOTSTRAP_ROLE_NAME": "admin",
            "OS_BOOTSTRAP_SERVICE_NAME": "keystone", "OS_BOOTSTRAP_REGION_ID": "RegionOne",
            "OS_BOOTSTRAP_PUBLIC_URL": self.auth_url})
        self._share_keys(first)
        self._write_credentials(self.credentials)
        self._write_credentials(self.monitor_credentials, auth_url=self.auth_url)
        self.cluster.progress(f"keystone prepared in {time.monotonic() - began:.1f} s "
                              f"(database via {self.database_address}, keys shared by every node)")

    def _write_config(self, node: str) -> None:
        url = f"mysql+pymysql://{USER}:{self.db_password}@{self.database_address}:{self.db_port}/{DATABASE}"
        text = (f"[DEFAULT]\nlog_file = {LOG_DIR}/keystone.log\n"
                f"{database_section('database', url)}"
                f"[fernet_tokens]\nkey_repository = {CONFIG_DIR}/fernet-keys\n"
                f"[credential]\nkey_repository = {CONFIG_DIR}/credential-keys\n"
                "[token]\nprovider = fernet\n[cache]\nenabled = false\n"
                # bcrypt's default 12 rounds cost ~0.3 s of CPU per token on an idle core; the
                # clients ask twice a second on a 2-core machine running three nodes.
                f"[identity]\npassword_hash_rounds = {PASSWORD_HASH_ROUNDS}\n")
        write_private(self.cluster, node, USER, (CONFIG_DIR, LOG_DIR), CONFIG, text)

    def _manage(self, node: str, args: list[str], env: Mapping[str, str] | None = None,
                timeout: float = 120) -> None:
        run_as(self.cluster, node, USER, ["keystone-manage", "--config-file", CONFIG, *args], env, timeout)

    def _share_keys(self, source_node: str) -> None:
        for repository in KEY_REPOSITORIES:
            source = self.cluster.node_path(source_node, f"{CONFIG_DIR}/{repository}")
            for node in self.cluster.nodes:
                if node == source_node:
                    continue
                target = self.cluster.node_path(node, f"{CONFIG_DIR}/{repository}")
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(source, target)
                for path in (target, *target.rglob("*")):
                    shutil.chown(path, USER, USER)

    def _write_credentials(self, path: Path, auth_url: str = "") -> None:
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(f"[credentials]\nusername = admin\npassword = {self.admin_password}\n"
                        "project_name = admin\nuser_domain_name = Default\nproject_domain_name = Default\n"
                        + (f"auth_url = {auth_url}\n" if auth_url else ""))

    def service_user(self, name: str, password: str) -> None:
        """A service account (``name``, admin of project ``service``), as the services' guides make
        it; ``keystone-manage bootstrap`` creates it idempotently, the password in its environment."""
        first = next(iter(self.cluster.nodes))
        self._manage(first, ["bootstrap"], env={
            "OS_BOOTSTRAP_PASSWORD": password, "OS_BOOTSTRAP_USERNAME": name,
            "OS_BOOTSTRAP_PROJECT_NAME": "service", "OS_BOOTSTRAP_ROLE_NAME": "admin"})

    def authtoken_section(self, name: str, password: str) -> str:
        """``[keystone_authtoken]`` of a service validating tokens with keystone through the public VIP."""
        return (f"[keystone_authtoken]\nwww_authenticate_uri = {self.auth_url}\nauth_url = {self.auth_url}\n"
                f"auth_type = password\nusername = {name}\npassword = {password}\nproject_name = service\n"
                "user_domain_name = Default\nproject_domain_name = Default\n"
                "interface = public\n"  # the catalog has keystone's public endpoint (the public VIP) only
                # A keystone outage is seen within seconds, not after the default 30 s HTTP timeout.
                "http_connect_timeout = 5\n")

    def credentials_copy(self, name: str) -> Path:
        """Another root-only credentials file of the same admin (to change a reloadable parameter)."""
        path = self.cluster.spec.state_dir / name
        self._write_credentials(path)
        return path

    # configuration --------------------------------------------------------

    def overrides(self) -> dict[str, dict[str, object]]:
        """Site tables that enable the profile's keystone clone and its constraints."""
        tables: dict[str, dict[str, object]] = {
            f"primitive.{RESOURCE}": {"enabled": True, "ops": [
                {"name": "start", "timeout": "60s"}, {"name": "stop", "timeout": "60s"}, *MONITORS]},
            f"primitive.{RESOURCE}.params": {"config": CONFIG, "port": PORT, "user": USER,
                                             "workers": self.workers, "credentials": str(self.credentials)},
            f"clone.{CLONE}": {"enabled": True, "resource": RESOURCE},
        }
        for link in PROFILE_LINKS:
            tables[link] = {"enabled": True}
        return tables

    # clients (bridge namespace only) ---------------------------------------

    def client_argv(self, mode: str, *args: str, host: str = "") -> list[str]:
        """``tokenclient.py MODE HOST ARGS...`` in the bridge namespace; HOST: the public VIP by default."""
        inode = netns_inode(self.cluster.spec.bridge_netns)
        return self.cluster.client_argv([SYSTEM_PYTHON, "-I", "-S", str(PACKAGE_DIR / "tokenclient.py"),
                                         str(inode), mode, host or self.public_address, *args])

    def token_client_argv(self, mode: str, seconds: float, interval_s: float = 0.5,
                          host: str = "") -> list[str]:
        return self.client_argv(mode, str(PORT), str(self.credentials), str(seconds), str(interval_s),
                                host=host)

    def get(self, port: int, path: str, timeout_s: float = 60) -> dict[str, object]:
        """Retry ``GET path`` on the public VIP until it answers 200; its JSON document."""
        argv = self.client_argv("get", str(port), path, str(timeout_s))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s + 30, check=False)
        if done.returncode != 0:
            raise ClusterError(f"GET {path} on port {port}: {done.stderr.strip()[-300:]}")
        answer: dict[str, object] = json.loads(done.stdout)
        return answer

    def authorized_get(self, port: int, path: str, timeout_s: float = 90) -> dict[str, object]:
        """Retry until ``GET path`` on the public VIP answers 200 with a fresh token; then the same
        without a token. ``{"with": 200, "without": <status>, "document": ..., "t": <monotonic>}``."""
        argv = self.client_argv("authget", str(PORT), str(self.credentials), str(timeout_s), str(port), path)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s + 30, check=False)
        if done.returncode != 0:
            raise ClusterError(f"GET {path} on port {port} with a token: {done.stderr.strip()[-300:]}")
        answer: dict[str, object] = json.loads(done.stdout)
        return answer

    def token(self, timeout_s: float = 60) -> float:
        """Retry until keystone issues a token through the public VIP; the monotonic time it did."""
        return finish_waiting_token(self.start_waiting_token(timeout_s), timeout_s + 30)

    def start_waiting_token(self, timeout_s: float = 120) -> subprocess.Popen[str]:
        """A client asking for a token through the public VIP every 50 ms until one is issued."""
        return subprocess.Popen(self.token_client_argv("wait", timeout_s), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def start_token_stream(self, seconds: float, interval_s: float = 0.5,
                           host: str = "") -> subprocess.Popen[str]:
        """A client asking for a token every ``interval_s`` for ``seconds``, through the public VIP (or
        ``host``: a node's own address, to measure what the path through the VIP adds)."""
        return subprocess.Popen(self.token_client_argv("stream", seconds, interval_s, host),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # the service on the nodes ---------------------------------------------

    def identity(self, node: str) -> tuple[int, int] | None:
        """(pid inside the node, start time) of keystone's leader as our agent recorded it."""
        return recorded_identity(self.cluster, node, RESOURCE)

    def workers_of(self, node: str, leader: int) -> list[int]:
        done = self.cluster.run(node, ["pgrep", "-P", str(leader)], check=False)
        return [int(pid) for pid in done.stdout.split()]

    def signal(self, node: str, pids: list[int], name: str) -> None:
        self.cluster.run(node, ["kill", f"-{name}", *map(str, pids)])


GLANCE = "glance-api"
GLANCE_PORT = 19292
GLANCE_CONFIG = "/etc/glance/glance-api.conf"


@dataclasses.dataclass
class ServiceInCluster:
    """An API behind keystone: its database account (through the database VIP) and its keystone
    service user."""

    cluster: Cluster
    db_port: int
    keystone: KeystoneInCluster
    db_password: str = dataclasses.field(default_factory=lambda: "db-" + secrets.token_hex(12))
    service_password: str = dataclasses.field(default_factory=lambda: "svc-" + secrets.token_hex(12))

    @property
    def passwords(self) -> tuple[str, ...]:
        return self.db_password, self.service_password

    def database_url(self, user: str, database: str) -> str:
        return (f"mysql+pymysql://{user}:{self.db_password}@{self.keystone.database_address}:"
                f"{self.db_port}/{database}")


@dataclasses.dataclass
class GlanceInCluster(ServiceInCluster):
    """glance-api as the profile's clone on every node, its database through the database VIP,
    tokens validated by keystone through the public VIP (service user ``glance``)."""

    def prepare(self, mysql_socket: str) -> None:
        began = time.monotonic()
        (holder,) = self.cluster.status().where("mysql")
        create_database(self.cluster, holder, mysql_socket, "glance", "glance", self.db_password)
        self.keystone.service_user("glance", self.service_password)
        url = self.database_url("glance", "glance")
        etc, log, lib = GLANCE_DIRS
        text = (f"[DEFAULT]\nlog_file = {log}/glance-api.log\nworkers = 1\n"
                f"{database_section('database', url)}[paste_deploy]\nflavor = keystone\n"
                f"{self.keystone.authtoken_section('glance', self.service_password)}"
                "[glance_store]\nstores = file\ndefault_store = file\n"
                f"filesystem_store_datadir = {lib}/images\n"
                f"[oslo_concurrency]\nlock_path = {lib}/lock\n"
                f"[os_glance_staging_store]\nfilesystem_store_datadir = {lib}/staging\n"
                f"[os_glance_tasks_store]\nfilesystem_store_datadir = {lib}/tasks\n")
        paste = Path("/etc/glance/glance-api-paste.ini").read_text()
        for node in self.cluster.nodes:
            write_private(self.cluster, node, "glance", GLANCE_DIRS, GLANCE_CONFIG, text)
            write_private(self.cluster, node, "glance", (), f"{etc}/glance-api-paste.ini", paste)
        run_as(self.cluster, holder, "glance", ["glance-manage", "--config-file", GLANCE_CONFIG, "db_sync"],
               timeout=300)
        self.cluster.progress(f"glance prepared in {time.monotonic() - began:.1f} s")

    def overrides(self) -> dict[str, dict[str, object]]:
        return api_clone_tables(GLANCE, {"config": GLANCE_CONFIG, "port": GLANCE_PORT, "user": "glance",
                                         "workers": 1, "credentials": str(self.keystone.monitor_credentials)})


def api_clone_tables(resource: str, params: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """Site tables enabling one of the profile's API clones and its order constraints."""
    # keystone's monitors: the same tight budget for the deep check (a token and a listing, 1-3 s
    # here). A monitor scheduled in a transition (the first one after a start or a cleanup) holds
    # back the next transition, even the one fencing a crashed node, until it ends; with keystone's
    # database gone, the listing waits out the whole budget.
    return {
        f"primitive.{resource}": {"enabled": True, "ops": [
            {"name": "start", "timeout": "90s"}, {"name": "stop", "timeout": "60s"}, *MONITORS]},
        # keystone's public VIP is on the clusters' private bridge: plain http is allowed there.
        f"primitive.{resource}.params": {"allow_plain_http": True, **params},
        f"clone.{resource}-clone": {"enabled": True, "resource": resource},
        f"order.{resource}-after-db": {"enabled": True},
        f"order.{resource}-after-keystone": {"enabled": True},
    }


def recorded_identity(cluster: Cluster, node: str, agent: str) -> tuple[int, int] | None:
    """(pid inside the node, start time) of the process our ``agent`` recorded on ``node``."""
    pid1 = cluster.nodes[node].pid1
    if pid1 is None:
        return None
    for path in Path(f"/proc/{pid1}/root/run/resource-agents").glob(f"openstack-{agent}-*/identity"):
        try:
            pid, start = path.read_text().split()
        except (OSError, ValueError):
            continue
        return int(pid), int(start)
    return None


def create_database(cluster: Cluster, node: str, mysql_socket: str, database: str, user: str,
                    password: str) -> None:
    """A database and its account (from anywhere), through the local socket of the MariaDB on
    ``node``; the password travels on stdin."""
    sql = (f"CREATE DATABASE IF NOT EXISTS {database};\n"
           f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}';\n"
           f"GRANT ALL ON {database}.* TO '{user}'@'%';\n")
    cluster.run(node, ["mariadb", f"--socket={mysql_socket}", "-uroot"], input_text=sql)


def write_private(cluster: Cluster, node: str, owner: str, directories: tuple[str, ...], path: str,
                  text: str, mode: int = 0o640) -> None:
    """``text`` into ``path`` (``mode``) of the node's private ``directories``, all owned by ``owner``."""
    for directory in directories:
        private = cluster.node_path(node, directory)
        shutil.chown(private, owner, owner)
        private.chmod(0o750)
    target = cluster.node_path(node, path)
    target.touch(mode=0o600)
    target.chmod(0o600)
    shutil.chown(target, owner, owner)
    target.write_text(text)
    target.chmod(mode)


def run_as(cluster: Cluster, node: str, user: str, argv: list[str], env: Mapping[str, str] | None = None,
           timeout: float = 120) -> None:
    """``argv`` as ``user`` inside ``node``; secrets only in ``env``, never in argv."""
    pid1 = cluster.nodes[node].pid1
    if pid1 is None:
        raise ClusterError(f"{node} is powered off")
    wrapped = ["nsenter", "-t", str(pid1), "-m", "-u", "-i", "-n", "-p", "--",
               "setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}
    done = subprocess.run(wrapped, env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False, cwd="/")
    if done.returncode != 0:
        raise ClusterError(f"{' '.join(argv[:4])} on {node} exited {done.returncode}: "
                           f"{done.stderr.strip()[-800:]}")


def finish_waiting_token(client: subprocess.Popen[str], timeout_s: float = 180) -> float:
    """The monotonic time at which the waiting client got its token."""
    out, err = client.communicate(timeout=timeout_s)
    if client.returncode != 0:
        raise ClusterError(f"no keystone token: {err.strip()[-300:]}")
    return float(json.loads(out)["t"])


def seconds_to_token_after_crash(cluster: Cluster, keystone: KeystoneInCluster, victim: str,
                                 timeout_s: float = 120) -> float:
    """Crash ``victim`` (PID 1 killed, link down); seconds until keystone issues a token through
    the public VIP, asked every 50 ms from the bridge namespace (a new connection per attempt)."""
    crashed_at = cluster.crash(victim)
    client = keystone.start_waiting_token(timeout_s)
    return finish_waiting_token(client, timeout_s + 30) - crashed_at


class Prepared(Protocol):
    """A service of the stack: prepared once with the database running, then its site tables."""

    def prepare(self, mysql_socket: str) -> None: ...

    def overrides(self) -> dict[str, dict[str, object]]: ...


def stack_with_keystone(cluster: Cluster, database_overrides: Mapping[str, Mapping[str, object]],
                        keystone: KeystoneInCluster, mysql_socket: str, *services: Prepared,
                        base: config.Stack | None = None) -> config.Stack:
    """Push the database, prepare keystone and then ``services`` (in order) on it, and return the
    stack with all of them added (over ``base``: its VIP agent, Dummy clone and site tables).

    The caller pushes the returned stack (``harness.cluster_fixtures.start_cluster`` does).
    """
    base = base or config.Stack()
    database_stack = dataclasses.replace(base, site_overrides={**base.site_overrides, **database_overrides})
    config.push(cluster, database_stack)
    health.wait_healthy(cluster, database_stack)
    keystone.prepare(mysql_socket)
    tables = {**database_stack.site_overrides, **keystone.overrides()}
    for service in services:
        service.prepare(mysql_socket)
        tables |= service.overrides()
    return dataclasses.replace(base, site_overrides=tables)
