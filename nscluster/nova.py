"""nova-api in the namespace cluster: the profile's clone on every node, under our agent.

Each node has its own ``/etc/nova``, ``/var/log/nova`` and ``/var/lib/nova`` (``NOVA_DIRS``). nova
reaches its databases (``nova_api``, ``nova``, ``nova_cell0``) through the database VIP, the
brokers through ``transport_url`` (every node's broker, ``nscluster.messaging``), and keystone
through the public VIP to validate tokens (service user ``nova``). ``prepare`` creates the
databases and the service user, writes every node's configuration, and runs the schema migrations
and the cell mappings once, on the node holding the database.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from nscluster.messaging import RabbitInCluster
from nscluster.openstack import (
    ServiceInCluster,
    api_clone_tables,
    create_database,
    database_section,
    run_as,
    write_private,
)

CONFIG_DIR = "/etc/nova"
LOG_DIR = "/var/log/nova"
STATE_DIR = "/var/lib/nova"
NOVA_DIRS = (CONFIG_DIR, LOG_DIR, STATE_DIR)
CONFIG = f"{CONFIG_DIR}/nova.conf"
PASTE = f"{CONFIG_DIR}/api-paste.ini"
RESOURCE = "nova-api"
PORT = 18774
USER = "nova"
DATABASES = ("nova_api", "nova", "nova_cell0")


@dataclasses.dataclass
class NovaInCluster(ServiceInCluster):
    rabbit: RabbitInCluster = dataclasses.field(kw_only=True)

    def prepare(self, mysql_socket: str) -> None:
        began = time.monotonic()
        (holder,) = self.cluster.status().where("mysql")
        for database in DATABASES:
            create_database(self.cluster, holder, mysql_socket, database, USER, self.db_password)
        self.keystone.service_user(USER, self.service_password)
        text = self.config_text()
        paste = Path("/etc/nova/api-paste.ini").read_text()
        for node in self.cluster.nodes:
            write_private(self.cluster, node, USER, NOVA_DIRS, CONFIG, text)
            write_private(self.cluster, node, USER, (), PASTE, paste)
        for step, timeout in ((["api_db", "sync"], 300), (["cell_v2", "map_cell0"], 120),
                              (["db", "sync"], 300), (["cell_v2", "create_cell", "--name", "cell1"], 120)):
            run_as(self.cluster, holder, USER, ["nova-manage", "--config-file", CONFIG, *step],
                   timeout=timeout)
        self.cluster.progress(f"nova prepared in {time.monotonic() - began:.1f} s")

    def config_text(self) -> str:
        return (f"[DEFAULT]\nlog_file = {LOG_DIR}/nova-api.log\nstate_path = {STATE_DIR}\n"
                "enabled_apis = osapi_compute\nosapi_compute_workers = 1\n"
                f"transport_url = {self.rabbit.transport_url}\n"
                "[api]\nauth_strategy = keystone\n"
                f"{self.rabbit.oslo_section()}"
                f"{database_section('api_database', self.database_url(USER, 'nova_api'))}"
                f"{database_section('database', self.database_url(USER, 'nova'))}"
                f"{self.keystone.authtoken_section(USER, self.service_password)}"
                f"[oslo_concurrency]\nlock_path = {STATE_DIR}/lock\n"
                f"[wsgi]\napi_paste_config = {PASTE}\n")

    def overrides(self) -> dict[str, dict[str, object]]:
        tables = api_clone_tables(RESOURCE, {
            "config": CONFIG, "port": PORT, "user": USER, "workers": 1,
            "credentials": str(self.keystone.monitor_credentials)})
        # The profile's Optional order: the brokers start first when both start, a broker's restart
        # leaves nova alone.
        tables[f"order.{RESOURCE}-after-rabbitmq"] = {"enabled": True}
        return tables
