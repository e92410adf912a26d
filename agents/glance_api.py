"""OCF agent for the glance image API, run as Debian runs it: its eventlet server."""

from __future__ import annotations

from agents.service import LEGACY_COMMON, ApiService


class GlanceApi(ApiService):
    name = "glance-api"
    shortdesc = "OpenStack image API (glance-api)"
    longdesc = ("Runs glance-api as user glance, checks it by depth (0: process and listening socket, "
                "10: version document, 20: listing images with a keystone token), and reports a "
                "database or keystone outage as degraded rather than as a failure.")
    service = "glance"
    default_user = "glance"
    default_config = "/etc/glance/glance-api.conf"
    default_port = 9292
    default_launcher = "eventlet"
    launchers = {"eventlet": "/usr/bin/glance-api", "uwsgi": "/usr/bin/glance-wsgi-api"}
    config_env = {"OS_GLANCE_CONFIG_DIR": "{config_dir}"}
    listen_options = ("bind_host", "bind_port")
    workers_option = "workers"
    paste_option = ("paste_deploy", "config_file")
    work_path = "/v2/images?limit=1"
    legacy_params = LEGACY_COMMON


AGENT = GlanceApi

if __name__ == "__main__":
    AGENT.main()
