"""OCF agent for the keystone API (identity), run as Debian runs it: under uWSGI."""

from __future__ import annotations

from agents.service import LEGACY_COMMON, ApiService


class Keystone(ApiService):
    name = "keystone"
    shortdesc = "OpenStack identity API (keystone)"
    longdesc = ("Runs keystone's public WSGI application as user keystone, checks it by depth "
                "(0: process and listening socket, 10: version document, 20: issuing a token), and "
                "reports a database outage as degraded rather than as a failure.")
    service = "keystone"
    default_user = "keystone"
    default_config = "/etc/keystone/keystone.conf"
    default_port = 5000
    default_launcher = "uwsgi"
    launchers = {"uwsgi": "/usr/bin/keystone-wsgi-public", "wsgi-script": "/usr/bin/keystone-wsgi-public"}
    config_env = {"OS_KEYSTONE_CONFIG_FILES": "{config}"}
    version_path = "/v3"
    issues_tokens = True
    legacy_params = LEGACY_COMMON


AGENT = Keystone

if __name__ == "__main__":
    AGENT.main()
