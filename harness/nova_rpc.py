"""nova's RPC services (nova-conductor, nova-scheduler) under our installed agents, on a broker of
their own (``harness.rabbitmq``): what tests/services/test_nova_rpc.py needs beyond the stack.

The broker's nova account is made with ``rabbitmqctl add_user`` without a password argument: the
password goes to rabbitmqctl on its standard input, never on a command line.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

from harness.ocfrun import InstalledResource
from harness.rabbitmq import RabbitResource
from harness.stack import AGENT_DIR, HOST, PORTS, Daemon, Stack, run_as, wait_port, write

PLACEMENT_PORT = 27778
RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
# What docs/nova-rpc.md tells operators to copy into [oslo_messaging_rabbit] (a dead broker is
# noticed within heartbeat_timeout_threshold; reconnect attempts start after kombu_reconnect_delay).
OSLO_MESSAGING_RABBIT = {"rabbit_quorum_queue": "true", "heartbeat_timeout_threshold": "10",
                         "kombu_reconnect_delay": "0.5", "rabbit_interval_max": "5"}


class NovaRpcResource(InstalledResource):
    """One resource instance of ``ocf:openstack:nova-conductor`` or ``nova-scheduler``."""

    TIMEOUT_S = 60

    def __init__(self, name: str, workdir: str, config: str, log_file: str, instance: str = "") -> None:
        super().__init__(workdir, instance or f"test-{name}")
        self.AGENT = os.path.join(AGENT_DIR, name)
        self.NAME = name
        self.params = {"config": config, "log_file": log_file}

    def session(self) -> list[int]:
        """Pids of the service's session (what our agent started)."""
        from agents.ocf.proc import all_stats

        sid = self.leader()
        return [stat.pid for stat in all_stats() if stat.alive and stat.session == sid]


def rabbitmqctl(broker: RabbitResource, *args: str, input_text: str | None = None) -> str:
    """``rabbitmqctl -n <broker> ARGS`` as user rabbitmq with the broker's HOME (its cookie) and epmd."""
    import pwd

    entry = pwd.getpwnam("rabbitmq")
    env = {"PATH": "/usr/lib/rabbitmq/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "HOME": broker.params["base_dir"], "ERL_EPMD_PORT": broker.params["epmd_port"]}
    done = subprocess.run([RABBITMQCTL, "-n", broker.nodename, *args], input=input_text, env=env,
                          user=entry.pw_uid, group=entry.pw_gid, extra_groups=[],
                          cwd=broker.params["base_dir"], capture_output=True, text=True, timeout=120,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {args[0]} failed ({done.returncode}): {done.stderr[-1000:]}")
    return done.stdout


def add_account(broker: RabbitResource, user: str, password: str, vhost: str) -> None:
    """A vhost and a user with every permission on it; the password read from stdin by rabbitmqctl."""
    rabbitmqctl(broker, "add_vhost", vhost)
    rabbitmqctl(broker, "add_user", user, input_text=password + "\n")
    rabbitmqctl(broker, "set_permissions", "-p", vhost, user, ".*", ".*", ".*")


def nova_config(stack: Stack, transport_url: str, name: str = "nova-rpc.conf", workers: int = 1) -> str:
    """A copy of the stack's nova configuration on ``transport_url``, beside it (api-paste.ini there):
    ``workers`` per service (1: oslo.service runs the service in its one process; more: a parent
    and its worker processes, which hold the broker connections), the broker settings of the docs,
    glance of the stack, and placement (``start_placement``: with no compute node it has no
    allocation candidates, so the scheduler answers "No valid host was found")."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(stack.configs["nova-api"], encoding="utf-8")
    parser["DEFAULT"]["transport_url"] = transport_url
    parser["conductor"] = {"workers": str(workers)}
    parser["scheduler"] = {"workers": str(workers)}
    parser["oslo_messaging_rabbit"] = dict(OSLO_MESSAGING_RABBIT)
    # nova-api behind keystone (the stack's keystone must run): noauth2 gives nova no token to call
    # glance with. glance of the stack has no keystone in front of it: it takes any token.
    parser["api"]["auth_strategy"] = "keystone"
    parser["keystone_authtoken"] = {
        "www_authenticate_uri": stack.auth_url, "auth_url": stack.auth_url, "auth_type": "password",
        "username": "admin", "password": stack.admin_password, "project_name": "admin",
        "user_domain_name": "Default", "project_domain_name": "Default",
        "interface": "public"}  # the stack's keystone has a public endpoint only
    parser["glance"] = {"endpoint_override": f"http://{HOST}:{PORTS['glance']}"}
    # placement (``start_placement``) runs without keystone: its noauth2 takes the token "admin".
    parser["placement"] = {"auth_type": "admin_token", "endpoint": f"http://{HOST}:{PLACEMENT_PORT}",
                           "token": "admin"}
    out = io.StringIO()
    parser.write(out)
    return write(os.path.join(os.path.dirname(stack.configs["nova-api"]), name), out.getvalue(), "nova")


def start_placement(stack: Stack) -> Daemon:
    """Debian's placement API (its WSGI script's own server) on loopback, as user nova, on a database
    of its own in the stack's MariaDB; no keystone in front of it (``[api] auth_strategy = noauth2``)."""
    sql = ["CREATE DATABASE placement;", f"GRANT ALL ON placement.* TO 'openstack'@'{HOST}';"]
    subprocess.run(["mariadb", "--no-defaults", f"--socket={stack.mysql_socket}", "-uroot"],
                   input="\n".join(sql), text=True, check=True, capture_output=True, timeout=60)
    home = stack.dir("placement", "nova")
    conf = write(os.path.join(home, "placement.conf"), f"""[DEFAULT]
log_file = {home}/placement.log
[api]
auth_strategy = noauth2
[placement_database]
connection = {stack.db_url('placement')}
""", "nova")
    run_as("nova", ["placement-manage", "--config-file", conf, "db", "sync"], timeout=300)
    daemon = Daemon("placement", ["/usr/bin/placement-api", "--host", HOST, "--port", str(PLACEMENT_PORT)],
                    "nova", {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": home,
                             "OS_PLACEMENT_CONFIG_DIR": home}, os.path.join(home, "console.log"))
    daemon.start()
    try:
        wait_port(PLACEMENT_PORT, 60)
    except TimeoutError:
        daemon.stop()
        raise
    return daemon


def without_transport_url(stack: Stack, config: str) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(config, encoding="utf-8")
    parser.remove_option("DEFAULT", "transport_url")
    out = io.StringIO()
    parser.write(out)
    return write(os.path.join(os.path.dirname(config), "nova-no-transport.conf"), out.getvalue(), "nova")


# The API calls of the server create -------------------------------------------------

def call(port: int, method: str, path: str, body: object | None = None, *,
         headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, dict[str, object]]:
    """One HTTP request to a service of the stack on loopback; (status, JSON answer or {})."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - http to loopback
            status, text = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read()
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        parsed = {"text": text.decode(errors="replace")[:500]}
    return status, parsed if isinstance(parsed, dict) else {"value": parsed}


def admin_token(stack: Stack) -> str:
    """A project-scoped token of the stack's admin from its keystone (which must run)."""
    request = urllib.request.Request(f"{stack.auth_url}/auth/tokens", method="POST", data=json.dumps(  # noqa: S310
        {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": stack.admin_password}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}).encode())
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - http to loopback
        return str(answer.headers["X-Subject-Token"])


def nova_headers(token: str) -> dict[str, str]:
    return {"X-Auth-Token": token, "X-OpenStack-Nova-API-Version": "2.37"}


def make_image() -> str:
    """An active raw image in the stack's glance (no keystone in front of it: every request is an
    admin without a project, so the image is visible to every caller): its id."""
    status, image = call(PORTS["glance"], "POST", "/v2/images",
                         {"name": "rpc-test", "disk_format": "raw", "container_format": "bare"})
    assert status == 201, (status, image)
    image_id = str(image["id"])
    status, answer = call(PORTS["glance"], "PUT", f"/v2/images/{image_id}/file", raw=b"\0" * 4096)
    assert status == 204, (status, answer)
    return image_id


def make_flavor(token: str) -> str:
    status, answer = call(PORTS["nova"], "POST", "/v2.1/flavors",
                          {"flavor": {"name": f"rpc-test-{time.monotonic_ns()}", "ram": 64, "vcpus": 1,
                                      "disk": 1}}, headers=nova_headers(token))
    assert status == 200, (status, answer)
    flavor = answer["flavor"]
    assert isinstance(flavor, dict)
    return str(flavor["id"])


def create_server(token: str, image: str, flavor: str) -> str:
    status, answer = call(PORTS["nova"], "POST", "/v2.1/servers",
                          {"server": {"name": "rpc-test", "imageRef": image, "flavorRef": flavor,
                                      "networks": "none"}}, headers=nova_headers(token))
    assert status == 202, (status, answer)
    server = answer["server"]
    assert isinstance(server, dict)
    return str(server["id"])


def listed(token: str) -> list[str]:
    """Ids of the servers nova-api lists (the short list: the detailed views ask neutron for security
    groups, and the stack runs no neutron here)."""
    status, answer = call(PORTS["nova"], "GET", "/v2.1/servers", headers=nova_headers(token))
    assert status == 200, (status, answer)
    servers = answer["servers"]
    assert isinstance(servers, list)
    return [str(entry["id"]) for entry in servers]


def buried_in_cell0(stack: Stack, server_id: str) -> tuple[str, str]:
    """``(vm_state, last fault message)`` of the server in cell0, where the conductor puts a server
    the scheduler found no host for; empty strings while it is not there."""
    import uuid

    uuid.UUID(server_id)  # nothing but a UUID goes into the query
    sql = ("SELECT i.vm_state, COALESCE((SELECT f.message FROM instance_faults f "  # noqa: S608
           "WHERE f.instance_uuid = i.uuid ORDER BY f.id DESC LIMIT 1), '') FROM instances i "
           f"WHERE i.uuid = '{server_id}';")
    done = subprocess.run(["mariadb", "--no-defaults", f"--socket={stack.mysql_socket}", "-uroot", "-N",
                           "-B", "nova_cell0"], input=sql, text=True, check=True, capture_output=True,
                          timeout=60)
    fields = done.stdout.rstrip("\n").split("\t")
    return (fields[0], fields[1]) if len(fields) == 2 else ("", "")
