"""nova in the namespace cluster: the profile's nova-api, nova-conductor and nova-scheduler clones on
every node, under our agents.

Each node has its own ``/etc/nova``, ``/var/log/nova`` and ``/var/lib/nova`` (``NOVA_DIRS``). nova
reaches its databases (``nova_api``, ``nova``, ``nova_cell0``) through the database VIP, the
brokers through ``transport_url`` (every node's broker, ``nscluster.messaging``), and keystone
through the public VIP to validate tokens (service user ``nova``). ``prepare`` creates the
databases and the service user, writes every node's configuration, and runs the schema migrations
and the cell mappings once, on the node holding the database.

nova-conductor and nova-scheduler (``rpc_overrides``) are enabled in a second push, once the
brokers formed and nova's account exists (a service that cannot log in to a broker fails its start).
One worker each (``[conductor]``/``[scheduler] workers``); their agents read ``transport_url`` from the
same nova.conf. ``[DEFAULT] rpc_ping_enabled`` adds oslo.messaging's ``oslo_rpc_server_ping``
endpoint to both, so a client can time a pure RPC round trip (``nscluster/rpcclient.py``).

Placement. nova-scheduler builds its placement client when it starts (nova 26's
``SchedulerManager.__init__``: an openstacksdk proxy, whose construction discovers the placement
API's version), and exits when that fails; only the later requests are guarded (``safe_connect``).
Measured with this nova, each configuration without a placement service makes the scheduler exit
at its start:

* ``[placement]`` with keystone credentials and no placement endpoint in the catalog:
  ``EndpointNotFound`` ("The placement API endpoint was not found");
* a catalog endpoint (or ``endpoint_override``) where nothing answers: ``NotSupported`` ("exists but
  does not have any supported versions"), or ``AttributeError`` when a version is named.

So the smallest honest configuration is a real placement service with nothing in it: Debian's
``placement-api`` (its WSGI script's own server), run by ``PlacementBesideCluster`` *beside* the
cluster, in its client namespace (it survives the nodes' crashes; no agent of ours runs placement
yet), as user nova, on a SQLite database of its own, validating tokens with keystone through the
public VIP (service user ``placement``). nova's ``[placement]`` is what an operator writes: password
auth through the public VIP with the nova service user, the region, and ``endpoint_override``
naming that placement (it is in no catalog). With no compute node, placement has no allocation
candidate and the scheduler answers NoValidHost: a server create ends in ERROR, "No valid host was
found", after nova-api -> conductor -> scheduler -> conductor over the bus.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from nscluster.cluster import PACKAGE_DIR, SYSTEM_PYTHON, Cluster, ClusterError, netns_inode, wait_until
from nscluster.messaging import CLIENT_USER, OSLO_MESSAGING_RABBIT, AmqpClient, RabbitInCluster, erlang_node
from nscluster.messaging import PORT as BROKER_PORT
from nscluster.openstack import (
    GLANCE_PORT,
    KeystoneInCluster,
    ServiceInCluster,
    api_clone_tables,
    create_database,
    database_section,
    recorded_identity,
    run_as,
    write_private,
)
from nscluster.openstack import (
    PORT as KEYSTONE_PORT,
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
CONDUCTOR = "nova-conductor"
SCHEDULER = "nova-scheduler"
RPC_RESOURCES = (CONDUCTOR, SCHEDULER)
# The RPC topics (and quorum queues) of the two services on the exchange "nova".
RPC_TOPICS = {CONDUCTOR: "conductor", SCHEDULER: "scheduler"}
REGION = "RegionOne"
PLACEMENT_PORT = 18778
PLACEMENT_USER = "placement"


@dataclasses.dataclass
class PlacementBesideCluster:
    """Debian's placement API in the cluster's client namespace (see the module's docstring).

    Files under the run's state directory: ``placement/`` (root's, 0755) holds ``placement.conf``
    (nova's, 0600: it has the service password) and ``console.log`` (root's, the server's request
    lines); ``placement/data/`` (nova's, 0700) the SQLite database and the log, written only by
    placement as nova.
    """

    cluster: Cluster
    keystone: KeystoneInCluster
    password: str = dataclasses.field(default_factory=lambda: "plc-" + secrets.token_hex(12))
    process: subprocess.Popen[bytes] | None = None

    @property
    def home(self) -> Path:
        return self.cluster.spec.state_dir / "placement"

    @property
    def url(self) -> str:
        return f"http://{self.cluster.spec.client_address}:{PLACEMENT_PORT}"

    @property
    def log(self) -> Path:
        return self.home / "data" / "placement.log"

    @property
    def console(self) -> Path:
        """The server's standard output and error (its request lines): root's file, in root's directory."""
        return self.home / "console.log"

    def prepare(self, _mysql_socket: str = "") -> None:
        """Configuration, schema (``placement-manage db sync`` as nova), then the service."""
        began = time.monotonic()
        self.keystone.service_user(PLACEMENT_USER, self.password)
        data = self.home / "data"
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(mode=0o755)
        data.mkdir(mode=0o700)
        shutil.chown(data, USER, USER)
        conf = self.home / "placement.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"[DEFAULT]\nlog_file = {self.log}\n[api]\nauth_strategy = keystone\n"
                         f"{self.keystone.authtoken_section(PLACEMENT_USER, self.password)}"
                         f"[placement_database]\nconnection = sqlite:///{data}/placement.sqlite\n")
        shutil.chown(conf, USER, USER)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": str(data),
               "OS_PLACEMENT_CONFIG_DIR": str(self.home)}
        as_nova = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups"]
        done = subprocess.run([*as_nova, "placement-manage", "--config-file", str(conf), "db", "sync"],
                              env=env, cwd=str(data),
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise ClusterError(f"placement-manage db sync exited {done.returncode}: {done.stderr[-500:]}")
        argv = self.cluster.client_argv([*as_nova, "/usr/bin/placement-api", "--host",
                                         self.cluster.spec.client_address, "--port", str(PLACEMENT_PORT)])
        console = open(self.console, "ab")  # noqa: SIM115 - the service's for its life
        try:
            self.process = subprocess.Popen(argv, env=env, cwd=str(data), stdin=subprocess.DEVNULL,
                                            stdout=console, stderr=subprocess.STDOUT)
        finally:
            console.close()
        wait_until(self.listening, f"placement listening on {self.url}", 60, poll_s=0.5)
        took = time.monotonic() - began
        self.cluster.progress(f"placement beside the cluster on {self.url} in {took:.1f} s")

    def listening(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise ClusterError(f"placement-api exited ({self.process and self.process.returncode}); "
                               f"see {self.home / 'data'}")
        done = subprocess.run(self.cluster.client_argv(["ss", "-Hltn", f"sport = :{PLACEMENT_PORT}"]),
                              capture_output=True, text=True, timeout=30, check=False)
        return f"{self.cluster.spec.client_address}:{PLACEMENT_PORT}" in done.stdout

    def overrides(self) -> dict[str, dict[str, object]]:
        return {}  # no resource of the cluster

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclasses.dataclass
class NovaInCluster(ServiceInCluster):
    rabbit: RabbitInCluster = dataclasses.field(kw_only=True)
    placement: PlacementBesideCluster | None = dataclasses.field(default=None, kw_only=True)

    @property
    def passwords(self) -> tuple[str, ...]:
        extra = (self.placement.password,) if self.placement is not None else ()
        return self.db_password, self.service_password, *extra

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
                # oslo.messaging's oslo_rpc_server_ping endpoint on every RPC server (a client's
                # round trip through the bus to conductor and scheduler, nothing else).
                "rpc_ping_enabled = true\n"
                "[api]\nauth_strategy = keystone\n"
                "[conductor]\nworkers = 1\n[scheduler]\nworkers = 1\n"
                # glance is in no catalog either (keystone's only): the public VIP.
                f"[glance]\nendpoint_override = http://{self.keystone.public_address}:{GLANCE_PORT}\n"
                f"{self.placement_section()}"
                f"{self.rabbit.oslo_section()}"
                f"{database_section('api_database', self.database_url(USER, 'nova_api'))}"
                f"{database_section('database', self.database_url(USER, 'nova'))}"
                f"{self.keystone.authtoken_section(USER, self.service_password)}"
                f"[oslo_concurrency]\nlock_path = {STATE_DIR}/lock\n"
                f"[wsgi]\napi_paste_config = {PASTE}\n")

    def placement_section(self) -> str:
        """``[placement]``: keystone password auth through the public VIP as the nova service user,
        the region, and the placement beside the cluster (in no catalog: ``endpoint_override``)."""
        if self.placement is None:
            return ""
        return (f"[placement]\nauth_type = password\nauth_url = {self.keystone.auth_url}\n"
                f"username = {USER}\npassword = {self.service_password}\nproject_name = service\n"
                "user_domain_name = Default\nproject_domain_name = Default\n"
                f"region_name = {REGION}\nvalid_interfaces = public\n"
                f"endpoint_override = {self.placement.url}\n")

    def rpc_overrides(self) -> dict[str, dict[str, object]]:
        """Site tables enabling the profile's nova-conductor and nova-scheduler clones (one worker
        each, from nova.conf) and their Optional orders after the database and the brokers."""
        tables: dict[str, dict[str, object]] = {}
        for resource in RPC_RESOURCES:
            tables[f"primitive.{resource}"] = {"enabled": True, "ops": [
                {"name": "start", "timeout": "90s"}, {"name": "monitor", "interval": "10s", "timeout": "20s"},
                {"name": "monitor", "interval": "30s", "timeout": "20s", "depth": 10}]}
            tables[f"primitive.{resource}.params"] = {"config": CONFIG, "user": USER}
            tables[f"clone.{resource}-clone"] = {"enabled": True, "resource": resource}
            tables[f"order.{resource}-after-db"] = {"enabled": True}
            tables[f"order.{resource}-after-rabbitmq"] = {"enabled": True}
        return tables

    def identity(self, node: str, resource: str) -> tuple[int, int] | None:
        """(pid inside the node, start time) of ``resource``'s service as our agent recorded it."""
        return recorded_identity(self.cluster, node, resource)

    def overrides(self) -> dict[str, dict[str, object]]:
        tables = api_clone_tables(RESOURCE, {
            "config": CONFIG, "port": PORT, "user": USER, "workers": 1,
            "credentials": str(self.keystone.monitor_credentials)})
        # The profile's Optional order: the brokers start first when both start, a broker's restart
        # leaves nova alone.
        tables[f"order.{RESOURCE}-after-rabbitmq"] = {"enabled": True}
        return tables

    # nova's RPC path from the client namespace ----------------------------------------

    def ping_client(self, topics: tuple[str, ...] = tuple(RPC_TOPICS.values()), seconds: float = 180,
                    interval_s: float = 0.5, call_timeout_s: float = 30) -> AmqpClient:
        """``rpcclient.py ping`` in the client namespace: an ``oslo_rpc_server_ping`` call to each
        of ``topics`` every ``interval_s``, as the test account of the brokers (every broker listed,
        the services' [oslo_messaging_rabbit]); the URL with its password on standard input."""
        inode = netns_inode(self.cluster.spec.bridge_netns)
        argv = self.cluster.client_argv([
            SYSTEM_PYTHON, "-I", "-S", str(PACKAGE_DIR / "rpcclient.py"), str(inode), "ping",
            ",".join(topics), str(seconds), str(interval_s), str(call_timeout_s)])
        brokers = ",".join(f"{CLIENT_USER}:{self.rabbit.client_password}@{address}:{BROKER_PORT}"
                           for address in self.rabbit.addresses)
        return AmqpClient(argv, json.dumps({"url": f"rabbit://{brokers}/", "rabbit": OSLO_MESSAGING_RABBIT}))

    def create_server(self, timeout_s: float = 120) -> dict[str, object]:
        """``rpcclient.py server`` in the client namespace, through the public VIP as the admin: a
        server create that ends in ERROR; ``{"id", "posted", "error"}`` (monotonic times)."""
        inode = netns_inode(self.cluster.spec.bridge_netns)
        argv = self.cluster.client_argv([
            SYSTEM_PYTHON, "-I", "-S", str(PACKAGE_DIR / "rpcclient.py"), str(inode), "server",
            self.keystone.public_address, str(KEYSTONE_PORT), str(self.keystone.credentials),
            str(GLANCE_PORT), str(PORT), str(timeout_s)])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s + 60, check=False)
        if done.returncode != 0:
            raise ClusterError(f"server create through the public VIP: {done.stderr.strip()[-500:]}")
        answer: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
        return answer

    def buried_in_cell0(self, mysql_socket: str, server_id: str) -> tuple[str, str]:
        """``(vm_state, last fault message)`` of the server in cell0 (where the conductor puts a server
        the scheduler found no host for), read through the database holder's socket."""
        uuid.UUID(server_id)  # nothing but a UUID goes into the query
        sql = ("SELECT i.vm_state, COALESCE((SELECT f.message FROM instance_faults f "  # noqa: S608
               "WHERE f.instance_uuid = i.uuid ORDER BY f.id DESC LIMIT 1), '') FROM instances i "
               f"WHERE i.uuid = '{server_id}';")
        (holder,) = self.cluster.status().where("mysql")
        done = self.cluster.run(holder, ["mariadb", f"--socket={mysql_socket}", "-uroot", "-N", "-B",
                                         "nova_cell0"], input_text=sql)
        fields = done.stdout.rstrip("\n").split("\t")
        return (fields[0], fields[1]) if len(fields) == 2 else ("", "")

    def rpc_queue_leaders(self) -> dict[str, str]:
        """The node whose broker leads each RPC topic's quorum queue (``conductor``, ``scheduler``)."""
        return {topic: self.rabbit.queue_leader(topic) for topic in RPC_TOPICS.values()}

    def lead_rpc_queues_from(self, node: str, timeout_s: float = 60) -> None:
        """Move the leaders of the RPC topics' quorum queues to ``node``'s broker."""
        lead_queues_from(self.rabbit, node, tuple(RPC_TOPICS.values()), timeout_s)

    def service_log(self, node: str, resource: str) -> str:
        """The service's log on ``node`` (the agents' default log_file), read as root without following
        a link or opening anything but a regular file (the directory is nova's)."""
        import stat

        path = self.cluster.node_path(node, f"{LOG_DIR}/{resource}.log")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return ""
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return ""
            return handle.read().decode(errors="replace")


def lead_queues_from(rabbit: RabbitInCluster, node: str, queues: tuple[str, ...],
                     timeout_s: float = 60) -> None:
    """Move the leaders of the quorum queues ``queues`` (vhost ``/``) to ``node``'s broker (RabbitMQ's
    own leadership transfer, what its maintenance mode uses; 3.10 has no command for one queue)."""
    via = rabbit.any_broker_node()
    for queue in queues:
        if rabbit.queue_leader(queue) != node:
            record = f'rabbit_misc:r(<<"/">>, queue, <<"{queue}">>)'
            expression = (f"{{ok, Q}} = rabbit_amqqueue:lookup({record}), "
                          f"rabbit_quorum_queue:transfer_leadership(Q, '{erlang_node(node)}').")
            rabbit.ctl(via, "eval", expression)
    wait_until(lambda: {rabbit.queue_leader(queue) for queue in queues} == {node},
               f"{', '.join(queues)} led from {node}", timeout_s, poll_s=1)


def pongs(client: AmqpClient, topic: str, sent_after: float) -> list[float]:
    """Answer times of the pings of ``client`` (``NovaInCluster.ping_client``) to ``topic`` sent
    after ``sent_after``."""
    return sorted(float(e["done"]) for e in list(client.events)  # type: ignore[arg-type]
                  if e.get("event") == "pong" and e.get("topic") == topic
                  and float(e["t"]) >= sent_after)  # type: ignore[arg-type]
