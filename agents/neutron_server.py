"""OCF agent for the neutron networking API with its ML2 plugin, run as its eventlet server."""

from __future__ import annotations

from agents.service import LEGACY_COMMON, ApiService


class NeutronServer(ApiService):
    name = "neutron-server"
    shortdesc = "OpenStack networking API (neutron-server)"
    longdesc = ("Runs neutron-server (API and RPC workers) as user neutron with its plugin's configuration "
                "files, checks it by depth (0: process and listening socket, 10: version document, 20: "
                "listing networks with a keystone token), and reports a database, RabbitMQ or keystone "
                "outage as degraded rather than as a failure.")
    service = "neutron"
    default_user = "neutron"
    default_config = "/etc/neutron/neutron.conf"
    default_port = 9696
    default_launcher = "eventlet"
    launchers = {"eventlet": "/usr/bin/neutron-server"}
    plugin_configs = ("/etc/neutron/plugins/ml2/ml2_conf.ini",)
    listen_options = ("bind_host", "bind_port")
    workers_option = "api_workers"
    uses_rabbit = True
    work_path = "/v2.0/networks?limit=1"
    legacy_params = LEGACY_COMMON


AGENT = NeutronServer

if __name__ == "__main__":
    AGENT.main()
