"""OCF agent for the nova compute API, run as Debian runs it: under uWSGI."""

from __future__ import annotations

from agents.service import LEGACY_COMMON, ApiService


class NovaApi(ApiService):
    name = "nova-api"
    shortdesc = "OpenStack compute API (nova-api)"
    longdesc = ("Runs the nova compute API as user nova, checks it by depth (0: process and listening "
                "socket, 10: version document, 20: listing flavors with a keystone token), and reports "
                "a database, RabbitMQ or keystone outage as degraded rather than as a failure.")
    service = "nova"
    default_user = "nova"
    default_config = "/etc/nova/nova.conf"
    default_port = 8774
    default_launcher = "uwsgi"
    launchers = {"uwsgi": "/usr/bin/nova-api-wsgi", "eventlet": "/usr/bin/nova-api",
                 "wsgi-script": "/usr/bin/nova-api-wsgi"}
    config_env = {"OS_NOVA_CONFIG_DIR": "{config_dir}", "OS_NOVA_CONFIG_FILES": "api-paste.ini;{config_name}"}
    listen_options = ("osapi_compute_listen", "osapi_compute_listen_port")
    workers_option = "osapi_compute_workers"
    database_options = (("api_database", "connection"), ("database", "connection"))
    uses_rabbit = True
    work_path = "/v2.1/flavors"
    legacy_params = (*LEGACY_COMMON, "keystone_get_token_url", "amqp_server_port")


AGENT = NovaApi

if __name__ == "__main__":
    AGENT.main()
