"""A private OpenStack control plane for tests: MariaDB, RabbitMQ, keystone, glance, nova, neutron.

Everything lives under one temporary directory, listens on loopback on
non-default ports and runs as the services' own users.  Preparing costs
tens of seconds (schema migrations), so it happens once per test session;
the API daemons themselves are started and stopped by our agents.

Passwords never reach a command line: SQL goes to the client on stdin and
keystone's bootstrap password travels in ``OS_BOOTSTRAP_PASSWORD``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HOST = "127.0.0.1"
PORTS = {"mysql": 27306, "rabbit": 27672, "epmd": 27369, "keystone": 27500, "glance": 27292, "nova": 27774,
         "neutron": 27696}
AGENT_DIR = "/usr/lib/ocf/resource.d/openstack"
# Two memcached instances (our agent) for keystone's [cache], and the [cache] settings that
# docs/memcached.md gives operators: a dead or frozen server is given up after 0.25 s (by each of
# keystone's cache regions: about a second in all) and tried again after 30 s. No flush on
# reconnect: python-memcached's flush of a frozen server escapes its error handling (a 500).
MEMCACHED_PORTS = (27212, 27213)
KEYSTONE_CACHE = {"enabled": "true", "backend": "oslo_cache.memcache_pool", "memcache_socket_timeout": "0.25",
                  "memcache_pool_connection_get_timeout": "1", "memcache_dead_retry": "30",
                  "memcache_pool_flush_on_reconnect": "false"}


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def run_as(user: str, argv: list[str], *, env: dict[str, str] | None = None, input_text: str | None = None,
           timeout: float = 180) -> subprocess.CompletedProcess[str]:
    uid, gid = _ids(user)
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}
    done = subprocess.run(argv, user=uid, group=gid, extra_groups=[], env={**base, **(env or {})},
                          input=input_text, capture_output=True, text=True, timeout=timeout, cwd="/",
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def wait_port(port: int, timeout: float, host: str = HOST) -> None:
    until = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > until:
                raise TimeoutError(f"nothing answers on {host}:{port}") from None
            time.sleep(0.05)


def write(path: str, text: str, owner: str | None = None, mode: int = 0o640) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, mode)
    if owner:
        os.chown(path, *_ids(owner))
    return path


def copy_as(source: str, target: str, owner: str) -> None:
    shutil.copy(source, target)
    os.chmod(target, 0o640)
    os.chown(target, *_ids(owner))


class Daemon:
    """A helper daemon (MariaDB, RabbitMQ) the tests start and stop directly."""

    def __init__(self, name: str, argv: list[str], user: str, env: dict[str, str], log: str) -> None:
        self.name, self.argv, self.user, self.env, self.log = name, argv, user, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        uid, gid = _ids(self.user)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, user=uid, group=gid, extra_groups=[], env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True, cwd="/")

    def stop(self) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        kill_session(pgid)
        self.proc = None


def pids_listening(port: int) -> list[int]:
    """Processes holding a listening TCP socket on ``port`` (loopback or any address)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as handle:
            for line in list(handle)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                links = {os.readlink(f"/proc/{entry}/fd/{fd}") for fd in os.listdir(f"/proc/{entry}/fd")}
            except OSError:
                continue
            if links & inodes:
                found.append(int(entry))
    return found


def kill_session(sid: int) -> None:
    """KILL whatever is left of a session (epmd outlives RabbitMQ)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass


class Stack:
    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="osha-api-")
        os.chmod(self.root, 0o755)  # noqa: S103 - service users traverse it
        self.admin_password = "adm-" + secrets.token_hex(12)
        self.db_password = "db-" + secrets.token_hex(12)
        self.rabbit_password = "mq-" + secrets.token_hex(12)
        self.secrets = (self.admin_password, self.db_password, self.rabbit_password)
        self.mysql: Daemon | None = None
        self.rabbit: Daemon | None = None
        self.configs: dict[str, str] = {}
        self.credentials = ""

    def dir(self, name: str, owner: str) -> str:
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o750)  # noqa: S103 - owned by the service user
        os.chown(path, *_ids(owner))
        return path

    def db_url(self, database: str) -> str:
        return f"mysql+pymysql://openstack:{self.db_password}@{HOST}:{PORTS['mysql']}/{database}"

    @property
    def auth_url(self) -> str:
        return f"http://{HOST}:{PORTS['keystone']}/v3"

    # MariaDB -----------------------------------------------------------------

    def prepare_mysql(self) -> None:
        home = self.dir("mysql", "mysql")
        self.mysql_socket = os.path.join(home, "mysqld.sock")
        cnf = write(os.path.join(home, "my.cnf"), f"""[mysqld]
datadir = {home}/data
socket = {self.mysql_socket}
port = {PORTS['mysql']}
bind-address = {HOST}
pid-file = {home}/mysqld.pid
log-error = {home}/error.log
skip-name-resolve
innodb_buffer_pool_size = 32M
innodb_log_file_size = 8M
max_connections = 200
""", "mysql", 0o644)
        run_as("mysql", ["mariadb-install-db", f"--defaults-file={cnf}", f"--datadir={home}/data",
                         "--user=mysql", "--auth-root-authentication-method=normal", "--skip-test-db"])
        self.mysql = Daemon("mariadb", ["/usr/sbin/mariadbd", f"--defaults-file={cnf}"], "mysql",
                            {"PATH": "/usr/sbin:/usr/bin", "HOME": home}, os.path.join(home, "console.log"))
        self.start_mysql()
        sql = [f"CREATE USER 'openstack'@'{HOST}' IDENTIFIED BY '{self.db_password}';"]
        for database in ("keystone", "glance", "nova_api", "nova", "nova_cell0"):
            sql.append(f"CREATE DATABASE {database};")
            sql.append(f"GRANT ALL ON {database}.* TO 'openstack'@'{HOST}';")
        subprocess.run(["mariadb", "--no-defaults", f"--socket={self.mysql_socket}", "-uroot"],
                       input="\n".join(sql), text=True, check=True, capture_output=True, timeout=60)

    def start_mysql(self) -> None:
        assert self.mysql is not None
        self.mysql.start()
        wait_port(PORTS["mysql"], 60)

    # RabbitMQ ----------------------------------------------------------------

    def prepare_rabbit(self) -> None:
        home = self.dir("rabbitmq", "rabbitmq")
        write(os.path.join(home, ".erlang.cookie"), secrets.token_hex(16), "rabbitmq", 0o400)
        conf = write(os.path.join(home, "rabbitmq.conf"),
                     f"listeners.tcp.1 = {HOST}:{PORTS['rabbit']}\nloopback_users = none\n", "rabbitmq",
                     0o644)
        env_file = write(os.path.join(home, "rabbitmq-env.conf"), "", "rabbitmq", 0o644)
        self.rabbit_node = f"osha{os.getpid()}@localhost"
        self.rabbit_env = {
            "PATH": "/usr/lib/rabbitmq/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.rabbit_node, "RABBITMQ_NODE_PORT": str(PORTS["rabbit"]),
            "RABBITMQ_NODE_IP_ADDRESS": HOST, "RABBITMQ_DIST_PORT": str(PORTS["rabbit"] + 20000),
            "RABBITMQ_MNESIA_BASE": os.path.join(home, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(home, "log"),
            "RABBITMQ_PID_FILE": os.path.join(home, "rabbit.pid"), "RABBITMQ_CONFIG_FILE": conf[:-5],
            "RABBITMQ_CONF_ENV_FILE": env_file, "ERL_EPMD_PORT": str(PORTS["epmd"]),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_DEFAULT_USER": "openstack", "RABBITMQ_DEFAULT_PASS": self.rabbit_password,
        }
        self.rabbit = Daemon("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], "rabbitmq",
                             self.rabbit_env, os.path.join(home, "console.log"))
        self.start_rabbit()

    def stop_rabbit(self) -> None:
        """RabbitMQ, and the epmd it started, which detaches into a session of its own."""
        assert self.rabbit is not None
        self.rabbit.stop()
        for pid in pids_listening(PORTS["epmd"]):
            os.kill(pid, signal.SIGKILL)

    def start_rabbit(self) -> None:
        assert self.rabbit is not None
        self.rabbit.start()
        wait_port(PORTS["rabbit"], 90)

    # OpenStack services ------------------------------------------------------

    def prepare_keystone(self) -> None:
        home = self.dir("keystone", "keystone")
        conf = write(os.path.join(home, "keystone.conf"), f"""[DEFAULT]
log_file = {home}/keystone.log
[database]
connection = {self.db_url('keystone')}
[fernet_tokens]
key_repository = {home}/fernet-keys
[credential]
key_repository = {home}/credential-keys
[token]
provider = fernet
[cache]
enabled = false
""", "keystone")
        self.configs["keystone"] = conf
        manage = ["keystone-manage", "--config-file", conf]
        run_as("keystone", [*manage, "db_sync"])
        run_as("keystone", [*manage, "fernet_setup", "--keystone-user", "keystone",
                            "--keystone-group", "keystone"])
        run_as("keystone", [*manage, "credential_setup", "--keystone-user", "keystone",
                            "--keystone-group", "keystone"])
        run_as("keystone", [*manage, "bootstrap"], env={
            "OS_BOOTSTRAP_PASSWORD": self.admin_password, "OS_BOOTSTRAP_USERNAME": "admin",
            "OS_BOOTSTRAP_PROJECT_NAME": "admin", "OS_BOOTSTRAP_ROLE_NAME": "admin",
            "OS_BOOTSTRAP_SERVICE_NAME": "keystone", "OS_BOOTSTRAP_REGION_ID": "RegionOne",
            "OS_BOOTSTRAP_PUBLIC_URL": self.auth_url})
        self.credentials = write(os.path.join(self.root, "admin-credentials.conf"), f"""[credentials]
auth_url = {self.auth_url}
username = admin
password = {self.admin_password}
project_name = admin
user_domain_name = Default
project_domain_name = Default
""", None, 0o600)

    def prepare_glance(self) -> None:
        home = self.dir("glance", "glance")
        copy_as("/etc/glance/glance-api-paste.ini", os.path.join(home, "glance-api-paste.ini"), "glance")
        os.makedirs(os.path.join(home, "images"), exist_ok=True)
        os.chown(os.path.join(home, "images"), *_ids("glance"))
        conf = write(os.path.join(home, "glance-api.conf"), f"""[DEFAULT]
log_file = {home}/glance-api.log
bind_host = {HOST}
workers = 1
[database]
connection = {self.db_url('glance')}
[paste_deploy]
flavor =
[glance_store]
stores = file
default_store = file
filesystem_store_datadir = {home}/images
[oslo_concurrency]
lock_path = {home}/lock
[os_glance_staging_store]
filesystem_store_datadir = {home}/staging
[os_glance_tasks_store]
filesystem_store_datadir = {home}/tasks
""", "glance")
        self.configs["glance-api"] = conf
        run_as("glance", ["glance-manage", "--config-file", conf, "db_sync"])

    def prepare_nova(self) -> None:
        home = self.dir("nova", "nova")
        copy_as("/etc/nova/api-paste.ini", os.path.join(home, "api-paste.ini"), "nova")
        transport = f"rabbit://openstack:{self.rabbit_password}@{HOST}:{PORTS['rabbit']}/"
        conf = write(os.path.join(home, "nova.conf"), f"""[DEFAULT]
log_file = {home}/nova-api.log
state_path = {home}
enabled_apis = osapi_compute
osapi_compute_workers = 1
transport_url = {transport}
[api]
auth_strategy = noauth2
[api_database]
connection = {self.db_url('nova_api')}
[database]
connection = {self.db_url('nova')}
[oslo_concurrency]
lock_path = {home}/lock
[wsgi]
api_paste_config = {home}/api-paste.ini
""", "nova")
        self.configs["nova-api"] = conf
        manage = ["nova-manage", "--config-file", conf]
        run_as("nova", [*manage, "api_db", "sync"], timeout=300)
        run_as("nova", [*manage, "cell_v2", "map_cell0"])
        run_as("nova", [*manage, "db", "sync"], timeout=300)
        run_as("nova", [*manage, "cell_v2", "create_cell", "--name", "cell1"])

    def keystone_cache_config(self, servers: list[str], name: str = "keystone-cache.conf",
                              **options: str) -> str:
        """A copy of keystone's configuration with ``[cache]`` on the memcached ``servers``
        (``host:port``): KEYSTONE_CACHE, updated with ``options``.

        Users created through a keystone running on it get cheap password hashes (bcrypt's
        minimum of 4 rounds), so that hundreds of token requests measure the cache, not bcrypt.
        """
        import configparser
        import io

        parser = configparser.ConfigParser(interpolation=None)
        parser.read(self.configs["keystone"], encoding="utf-8")
        parser["cache"] = {**KEYSTONE_CACHE, "memcache_servers": ",".join(servers), **options}
        parser["identity"] = {"password_hash_rounds": "4"}
        out = io.StringIO()
        parser.write(out)
        path = os.path.join(os.path.dirname(self.configs["keystone"]), name)
        return write(path, out.getvalue(), "keystone")

    def prepare_neutron(self) -> None:
        """neutron-server with ML2 (flat/vlan, no mechanism driver: no agents needed to list
        networks); the plugin's settings in their own file, as Debian keeps ml2_conf.ini."""
        sql = ["CREATE DATABASE neutron;", f"GRANT ALL ON neutron.* TO 'openstack'@'{HOST}';"]
        subprocess.run(["mariadb", "--no-defaults", f"--socket={self.mysql_socket}", "-uroot"],
                       input="\n".join(sql), text=True, check=True, capture_output=True, timeout=60)
        home = self.dir("neutron", "neutron")
        copy_as("/etc/neutron/api-paste.ini", os.path.join(home, "api-paste.ini"), "neutron")
        transport = f"rabbit://openstack:{self.rabbit_password}@{HOST}:{PORTS['rabbit']}/"
        conf = write(os.path.join(home, "neutron.conf"), f"""[DEFAULT]
log_file = {home}/neutron-server.log
state_path = {home}
core_plugin = ml2
service_plugins =
auth_strategy = noauth
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 0
transport_url = {transport}
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
[database]
connection = {self.db_url('neutron')}
[oslo_concurrency]
lock_path = {home}/lock
""", "neutron")
        from nscluster.apitier import ML2  # the cluster's plugin file: flat networks, no agents

        plugin = write(os.path.join(home, "ml2_conf.ini"), ML2, "neutron")
        self.configs["neutron-server"] = conf
        self.neutron_plugin_config = plugin
        run_as("neutron", ["neutron-db-manage", "--config-file", conf, "--config-file", plugin,
                           "upgrade", "head"], timeout=600)

    def prepare_dashboard(self) -> None:
        """horizon's local_settings for the dashboard agent: keystone of this stack, a SECRET_KEY
        file (0600, the horizon user's: horizon refuses any other mode) and sessions in signed
        cookies (no memcached needed, any worker serves them).  Debian's local_settings.d snippets
        still apply after it (WEBROOT "/", offline-compressed static files, a local-memory cache)."""
        home = self.dir("dashboard", "horizon")
        self.dashboard_port = 27880
        self.dashboard_secret_key = secrets.token_urlsafe(48)
        key_file = write(os.path.join(home, "secret_key"), self.dashboard_secret_key, "horizon", 0o600)
        self.configs["dashboard"] = write(os.path.join(home, "local_settings.py"), f"""\
from horizon.utils import secret_key

DEBUG = False
ALLOWED_HOSTS = ["{HOST}", "localhost"]
SECRET_KEY = secret_key.generate_or_read_from_file("{key_file}")
OPENSTACK_KEYSTONE_URL = "{self.auth_url}"
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
TIME_ZONE = "UTC"
""", "horizon", 0o644)

    def close(self) -> None:
        if self.rabbit is not None:
            self.stop_rabbit()
        if self.mysql is not None:
            self.mysql.stop()
        shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":
    stack = Stack()
    try:
        for step in ("mysql", "rabbit", "keystone", "glance", "nova"):
            began = time.monotonic()
            getattr(stack, f"prepare_{step}")()
            print(step, f"{time.monotonic() - began:.1f}s", flush=True)
        print(stack.root)
        input("enter to clean up")
    finally:
        stack.close()
