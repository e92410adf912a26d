"""memcached, neutron-server and the dashboard in the namespace cluster: the profile's clones.

Shaped like ``GlanceInCluster`` (``nscluster.openstack``): ``prepare(mysql_socket)`` once per
cluster with the database running, then ``overrides()``, the site tables that enable the profile's
clone and its order constraints. Each service has private directories per node (``*_DIRS``, to pass
to ``ClusterSpec``); passwords reach SQL on stdin and the services in files, never a command line.

* ``MemcachedInCluster``: keystone's token cache, the profile's ``memcached-clone`` on every node
  (listening on every address of the node, port ``MEMCACHED_PORT``). ``keystone_cache_section``
  is keystone's ``[cache]`` on all of them (docs/memcached.md's settings); ``CachedKeystone`` is
  ``KeystoneInCluster`` with that section in every node's keystone.conf.
* ``NeutronInCluster``: neutron-server (ML2, flat networks, no mechanism driver), its database
  through the database VIP, tokens validated by keystone through the public VIP (service user
  ``neutron``). With ``rabbit`` (``nscluster.messaging``) its RPC workers use every node's broker;
  without, no ``transport_url``: measured, neutron-server starts, serves its API (networks listed
  with a token) and passes the agent's depth 20 without any broker, its RPC worker retrying the
  default (nothing at localhost:5672) in the background, which is all an API-only control plane
  without network agents needs.
* ``DashboardInCluster``: horizon under uWSGI on every node, keystone through the public VIP, one
  SECRET_KEY for every node and sessions in signed cookies, so any node serves any session.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from nscluster.cluster import SYSTEM_PYTHON, Cluster, ClusterError
from nscluster.messaging import RabbitInCluster
from nscluster.openstack import (
    CONFIG,
    MONITORS,
    KeystoneInCluster,
    ServiceInCluster,
    api_clone_tables,
    create_database,
    database_section,
    run_as,
    write_private,
)

# memcached ---------------------------------------------------------------------------------

MEMCACHED = "memcached"
MEMCACHED_CLONE = "memcached-clone"
MEMCACHED_PORT = 11211
MEMCACHED_DIRS = ("/var/log/memcached",)
MEMCACHED_MONITORS = (
    {"name": "monitor", "interval": "10s", "timeout": "10s"},
    {"name": "monitor", "interval": "11s", "timeout": "10s", "depth": 10},
)
# keystone's [cache] as docs/memcached.md gives it: a dead or frozen server is given up after 0.25 s
# (by each of keystone's cache regions) and tried again after 30 s; no flush on reconnect.
KEYSTONE_CACHE = (("enabled", "true"), ("backend", "oslo_cache.memcache_pool"),
                  ("memcache_socket_timeout", "0.25"), ("memcache_pool_connection_get_timeout", "1"),
                  ("memcache_dead_retry", "30"), ("memcache_pool_flush_on_reconnect", "false"))
STATS_SCRIPT = """\
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as conn:
    conn.sendall(b"stats\\r\\n")
    data = b""
    while not data.endswith(b"END\\r\\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
print(data.decode())
"""


def keystone_cache_section(cluster: Cluster, port: int = MEMCACHED_PORT) -> str:
    """keystone's ``[cache]`` on the memcached clone: every node's memcached, by the node's address."""
    servers = ",".join(f"{node.address}:{port}" for node in cluster.nodes.values())
    options = [*KEYSTONE_CACHE[:2], ("memcache_servers", servers), *KEYSTONE_CACHE[2:]]
    return "[cache]\n" + "".join(f"{name} = {value}\n" for name, value in options)


@dataclasses.dataclass
class MemcachedInCluster:
    """The profile's memcached clone on every node; nothing to prepare but its log directory."""

    cluster: Cluster

    def prepare(self, _mysql_socket: str = "") -> None:
        for node in self.cluster.nodes:
            for directory in MEMCACHED_DIRS:
                private = self.cluster.node_path(node, directory)
                shutil.chown(private, "memcache", "memcache")
                private.chmod(0o750)

    def overrides(self) -> dict[str, dict[str, object]]:
        return {
            f"primitive.{MEMCACHED}": {"enabled": True, "ops": [{"name": "start", "timeout": "20s"},
                                                                {"name": "stop", "timeout": "20s"},
                                                                *MEMCACHED_MONITORS]},
            f"primitive.{MEMCACHED}.params": {"port": MEMCACHED_PORT},
            f"clone.{MEMCACHED_CLONE}": {"enabled": True, "resource": MEMCACHED},
        }

    def stats(self, node: str) -> dict[str, str]:
        """``stats`` of the node's memcached, asked inside the node."""
        done = self.cluster.run(node, [SYSTEM_PYTHON, "-I", "-S", "-c", STATS_SCRIPT, str(MEMCACHED_PORT)])
        return {fields[1]: fields[2] for fields in (line.split() for line in done.stdout.splitlines())
                if len(fields) == 3 and fields[0] == "STAT"}


@dataclasses.dataclass
class CachedKeystone(KeystoneInCluster):
    """keystone with its ``[cache]`` on the memcached clone (``keystone_cache_section``)."""

    def _write_config(self, node: str) -> None:
        super()._write_config(node)
        path = self.cluster.node_path(node, CONFIG)
        text = path.read_text()
        disabled = "[cache]\nenabled = false\n"
        if disabled not in text:
            raise ClusterError("keystone's configuration has no [cache] section to replace")
        write_private(self.cluster, node, "keystone", (), CONFIG,
                      text.replace(disabled, keystone_cache_section(self.cluster)))


# neutron-server ----------------------------------------------------------------------------

NEUTRON = "neutron-server"
NEUTRON_PORT = 19696
NEUTRON_USER = "neutron"
NEUTRON_DIRS = ("/etc/neutron", "/var/log/neutron", "/var/lib/neutron")
NEUTRON_CONFIG = "/etc/neutron/neutron.conf"
NEUTRON_PLUGIN = "/etc/neutron/ml2_conf.ini"
ML2 = """[ml2]
type_drivers = flat,vlan
tenant_network_types =
mechanism_drivers =
extension_drivers =
[ml2_type_flat]
flat_networks = *
"""


@dataclasses.dataclass
class NeutronInCluster(ServiceInCluster):
    rabbit: RabbitInCluster | None = dataclasses.field(default=None, kw_only=True)

    def prepare(self, mysql_socket: str) -> None:
        began = time.monotonic()
        (holder,) = self.cluster.status().where("mysql")
        create_database(self.cluster, holder, mysql_socket, "neutron", NEUTRON_USER, self.db_password)
        self.keystone.service_user(NEUTRON_USER, self.service_password)
        etc, log, lib = NEUTRON_DIRS
        transport = f"transport_url = {self.rabbit.transport_url}\n" if self.rabbit else ""
        bus = self.rabbit.oslo_section() if self.rabbit else ""
        text = (f"[DEFAULT]\nlog_file = {log}/neutron-server.log\nstate_path = {lib}\n"
                "core_plugin = ml2\nservice_plugins =\nauth_strategy = keystone\n"
                "api_workers = 1\nrpc_workers = 1\nrpc_state_report_workers = 0\n"
                "notify_nova_on_port_status_changes = false\nnotify_nova_on_port_data_changes = false\n"
                f"{transport}"
                f"{database_section('database', self.database_url(NEUTRON_USER, 'neutron'))}"
                f"{self.keystone.authtoken_section(NEUTRON_USER, self.service_password)}"
                f"[oslo_concurrency]\nlock_path = {lib}/lock\n{bus}")
        paste = Path("/etc/neutron/api-paste.ini").read_text()
        for node in self.cluster.nodes:
            write_private(self.cluster, node, NEUTRON_USER, NEUTRON_DIRS, NEUTRON_CONFIG, text)
            write_private(self.cluster, node, NEUTRON_USER, (), f"{etc}/api-paste.ini", paste)
            write_private(self.cluster, node, NEUTRON_USER, (), NEUTRON_PLUGIN, ML2)
        run_as(self.cluster, holder, NEUTRON_USER, ["neutron-db-manage", "--config-file", NEUTRON_CONFIG,
                                                    "--config-file", NEUTRON_PLUGIN, "upgrade", "head"],
               timeout=600)
        self.cluster.progress(f"neutron prepared in {time.monotonic() - began:.1f} s "
                              f"({'brokers: every node' if self.rabbit else 'no broker'})")

    def overrides(self) -> dict[str, dict[str, object]]:
        tables = api_clone_tables(NEUTRON, {
            "config": NEUTRON_CONFIG, "plugin_config": NEUTRON_PLUGIN, "port": NEUTRON_PORT,
            "user": NEUTRON_USER, "workers": 1, "credentials": str(self.keystone.monitor_credentials)})
        if self.rabbit:
            tables[f"order.{NEUTRON}-after-rabbitmq"] = {"enabled": True}  # the profile's (Optional)
        return tables


# the dashboard -----------------------------------------------------------------------------

DASHBOARD = "dashboard"
DASHBOARD_CLONE = "dashboard-clone"
DASHBOARD_PORT = 18080
DASHBOARD_USER = "horizon"
# Debian's directory for horizon's SECRET_KEY: private per node, it holds our settings, the key (the
# same on every node) and the service's log (no /var/log/horizon on this machine).
DASHBOARD_DIR = "/var/lib/openstack-dashboard/secret-key"
DASHBOARD_DIRS = (DASHBOARD_DIR,)
DASHBOARD_SETTINGS = f"{DASHBOARD_DIR}/local_settings.py"
DASHBOARD_KEY = f"{DASHBOARD_DIR}/secret_key"
DASHBOARD_LOG = f"{DASHBOARD_DIR}/dashboard.log"
LOGIN_PATH = "/auth/login/"


@dataclasses.dataclass
class DashboardInCluster:
    cluster: Cluster
    keystone: KeystoneInCluster
    secret_key: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(48))

    @property
    def passwords(self) -> tuple[str, ...]:
        return (self.secret_key,)

    def prepare(self, _mysql_socket: str = "") -> None:
        hosts = ["127.0.0.1", "localhost", self.keystone.public_address,
                 *(node.address for node in self.cluster.nodes.values())]
        settings = ("from horizon.utils import secret_key\n\nDEBUG = False\n"
                    f"ALLOWED_HOSTS = {hosts!r}\n"
                    f"SECRET_KEY = secret_key.generate_or_read_from_file({DASHBOARD_KEY!r})\n"
                    f"OPENSTACK_KEYSTONE_URL = {self.keystone.auth_url!r}\n"
                    # Any node's workers serve any session (the VIP moves): nothing kept server-side.
                    'SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"\n'
                    'TIME_ZONE = "UTC"\n')
        for node in self.cluster.nodes:
            write_private(self.cluster, node, DASHBOARD_USER, DASHBOARD_DIRS, DASHBOARD_SETTINGS, settings,
                          mode=0o644)
            # horizon refuses a key file of any other mode than 0600
            write_private(self.cluster, node, DASHBOARD_USER, (), DASHBOARD_KEY, self.secret_key, mode=0o600)

    def overrides(self) -> dict[str, dict[str, object]]:
        return {
            f"primitive.{DASHBOARD}": {"enabled": True, "ops": [
                {"name": "start", "timeout": "60s"}, {"name": "stop", "timeout": "60s"}, *MONITORS]},
            f"primitive.{DASHBOARD}.params": {
                "config": DASHBOARD_SETTINGS, "port": DASHBOARD_PORT, "workers": 1, "log_file": DASHBOARD_LOG,
                "credentials": str(self.keystone.monitor_credentials), "allow_plain_http": True},
            f"clone.{DASHBOARD_CLONE}": {"enabled": True, "resource": DASHBOARD},
            f"order.{DASHBOARD}-after-keystone": {"enabled": True},
        }

    def login_page(self, timeout_s: float = 60) -> str:
        """Retry ``GET /auth/login/`` on the public VIP until it answers 200 (bridge namespace only);
        the page."""
        argv = self.keystone.client_argv("get", str(DASHBOARD_PORT), LOGIN_PATH, str(timeout_s))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s + 30, check=False)
        if done.returncode != 0:
            raise ClusterError(f"GET {LOGIN_PATH} on port {DASHBOARD_PORT}: {done.stderr.strip()[-300:]}")
        return done.stdout
