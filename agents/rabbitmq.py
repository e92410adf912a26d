"""OCF agent for RabbitMQ (Debian's rabbitmq-server 3.10), the message bus of nova and neutron.

A user of the daemon base (``agents.ocf.daemon``, ``agents.ocf.daemon_agent``): the broker's
Erlang VM is spawned as user ``rabbitmq`` in a session of its own, recorded by pid and start
time, and stopped by SIGTERM (RabbitMQ 3.10 takes it as a graceful shutdown: connections
closed, queues and message stores flushed) with KILL only when the stop's budget runs out.

Start writes the broker's configuration (``rabbitmq.conf``: partition handling, heartbeat,
logging; an empty ``enabled_plugins`` and ``rabbitmq-env.conf``) into ``config_dir``, a
directory only root may write, and copies the Erlang cookie from the root-only ``cookie_file``
into the broker's HOME (``base_dir/.erlang.cookie``, mode 0400, owned by the broker's user,
written to a fresh temporary file opened with O_EXCL and O_NOFOLLOW, then renamed). The
cookie is never in a command line, an environment or a log. Debian's
``/usr/lib/rabbitmq/bin/rabbitmq-server`` script is run with its environment variables (node
name, address, ports, directories) and ``RABBITMQ_ALLOW_INPUT`` plus ``-noinput``, so the
script ``exec``\\ s the Erlang VM: the process recorded is the broker itself.

**Peers.** ``peers`` when given; else one per other node of the Pacemaker cluster (``crm_node
-l``: every node, whatever its state) through the ``nodename`` template, ``%h`` standing for a
Pacemaker node name's short form (``CRM_meta_on_node`` for this node). Outside a cluster (no answer
from crm_node) and without ``peers`` the node runs alone.

**No wipe, ever.** Start never deletes or resets a node's data (``base_dir/mnesia/<nodename>``): a
node with data starts with it, its durable queues and their messages. Alone while a peer runs, a node
that had no data before this start joins the first running peer (``rabbitmqctl join_cluster``,
whose reset then drops only the defaults it just created); when that cluster still lists it (its
data was destroyed) it is forgotten there first (``forget_cluster_node``) and its quorum-queue
replicas are grown back after the join (``rabbitmq-queues grow``). New nodes started together
form one cluster: the first by name of those Pacemaker does not show down starts it, the others
wait before launching until it runs and join one at a time in name order (``await_cluster``).
A node clustered already keeps
its membership; a node alone with data of its own is never reset: its start fails and says so
(``join_peers``). The one exception to "never touched": a node whose running peers no longer list
it (someone ran ``forget_cluster_node``), which RabbitMQ would refuse to boot: its data is moved
aside, never deleted, to ``<data dir>.forgotten-<UTC time>`` and it joins as a new node
(``prepare_boot``).

**Power loss.** A clustered node that did not stop last waits at boot for its peers, then gives up
and exits: the agent makes that wait fit the start's budget (``table_wait``), so a start that
cannot complete ends with a reason of its own. When Pacemaker shows every other member of the
node's data down (not an online member), the boot is forced (``rabbitmqctl force_boot``); when all
are online they are coming back too, and nodes starting together find each other; when some are
down and some online, the first of those coming back by node name forces its boot, the others
wait for it (they would wait for the lost ones otherwise).

Health checks by ``OCF_CHECK_LEVEL`` (0 and 10 boot no Erlang VM, no ``rabbitmqctl``):

* 0: the broker's VM we started (pid and start time) is alive, not frozen, and holds a LISTEN
  socket on ``host:port``;
* 10: the AMQP handshake: the protocol header sent, ``Connection.Start`` read back;
* 20 (with ``credentials``): a login, a publish with publisher confirms into a durable quorum
  queue of the monitor's own (``ocf-monitor.<nodename>``) and the message consumed back. A
  failure after a successful handshake (no quorum for the queue, a memory or disk alarm
  blocking publishers, rejected credentials) is the cluster's or the monitor's, not this
  process's: degraded (190). Then the cluster's health, from two Erlang CLI tools run beside the
  round trip (``rabbitmqctl cluster_status``, ``rabbitmq-diagnostics
  check_if_node_is_quorum_critical``): a partition, a memory or disk alarm, quorum queues that
  would lose their majority without this node (a member is down): 190, naming them. While
  Pacemaker shows a peer's node lost (crashed, fenced, not back yet) neither runs: 190 at once,
  naming it (a dark link would hold both until it is dropped, and with them the notification that
  drops it: seen 11 s).
"""

from __future__ import annotations

import functools
import os

from agents.ocf.actions import Advert, action
from agents.ocf.codes import OCF, OCFError
from agents.ocf.daemon_agent import CredentialsFile, TCPDaemonAgent
from agents.ocf.params import Param
from agents.ocf.proc import User

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterable
    from xml.etree import ElementTree

    import pika

    from agents.ocf.deadline import Deadline
    from agents.ocf.proc import Identity

SERVICE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
DIR_MODE = 0o750
CONFIG_DIR_MODE = 0o755
CONFIG_FILE_MODE = 0o644
COOKIE_FILE = ".erlang.cookie"
COOKIE_MODE = 0o400
COOKIE_MAX = 255
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
START_ASK_CAP_S = 1.0
DEEP_CHECK_CAP_S = 10.0
CTL_CAP_S = 60.0
RESOLVE_CAP_S = 5.0
CONSUME_POLL_S = 0.05
CRM_NODE_CAP_S = 5.0
CLUSTER_NODES_FILE = "cluster_nodes.config"  # in the data directory: every member, the disc members
PRIVATE_FILE_MAX = 1 << 16
# The boot's wait for peers' tables: what is left of the start's budget less what a boot and a join
# take here (a broker answers 5-9 s after launch on a busy 2-CPU box), in steps of about 10 s.
BOOT_RESERVE_S = 25.0
JOIN_RESERVE_S = 30.0  # what a new node's join (stop_app, join_cluster, start_app, grow) is left
PEER_POLL_S = 2.0
JOIN_QUEUE_S = 60.0  # what a new node waits at most for the new nodes before it by name to join
# What a new node waits before it may judge that a peer Pacemaker shows online is not being started
# with it (``idle_peers``): the peers' starts of the same transition record theirs within this.
IDLE_SETTLE_S = 10.0
CIB_CAP_S = 5.0
PENDING = "-1"  # op-status of an operation under way (Pacemaker's record-pending)
IDLE, STARTING, ACTIVE = "idle", "starting", "active"  # an instance in the CIB's status
STOP_RESERVE_S = 10.0  # a boot waiting for its peers is stopped by the agent this long before the deadline
TABLE_WAIT_PHASES = 2
TABLE_WAIT_MIN_S = 5.0
TABLE_WAIT_STEP_S = 10.0
# The AMQP 0-9-1 protocol header, and the start of the broker's answer: a method frame on
# channel 0 whose payload begins with class 10 (connection), method 10 (start).
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD = 1
CONNECTION_START = b"\x00\x0a\x00\x0a"
ANSWER_BYTES = 11
PARTITION_HANDLING = ("pause_minority", "autoheal", "ignore")
NODE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def _absolute(value: object) -> None:
    text = str(value)
    if not text.startswith("/") or not text.isprintable() or "\n" in text:
        raise ValueError(f"must be an absolute path of printable characters, not {text!r}")


def _address(value: object) -> None:
    from agents.ocf.daemon_agent import check_listen_host

    check_listen_host(value)


def _node_name(value: object) -> None:
    text = str(value)
    name, at, host = text.partition("@")
    valid = bool(name) and set(name.replace("%h", "h")) <= NODE_NAME_CHARS - {"."} and \
        (not at or (bool(host) and set(host.replace("%h", "h")) <= NODE_NAME_CHARS))
    if not valid:
        raise ValueError(f"must be NAME@HOST (letters, digits, '-', '_'; %h stands for this node's "
                         f"short Pacemaker node name), not {text!r}")


def _peers(value: object) -> None:
    for peer in str(value).split():
        if "%h" in peer or "@" not in peer:
            raise ValueError(f"must list NAME@HOST node names, not {peer!r}")
        _node_name(peer)


class RabbitMQ(CredentialsFile, TCPDaemonAgent):
    fresh: bool | None = None  # set by a launch: no data before it
    name = "rabbitmq"
    shortdesc = "RabbitMQ, the message bus of the OpenStack services"
    longdesc = ("Runs Debian's rabbitmq-server as its own user with a configuration the agent writes, the "
                "Erlang cookie copied from a root-only file, and checks it by depth without booting an "
                "Erlang VM at depths 0 and 10 (0: process and listening socket, 10: the AMQP handshake, "
                "20: a confirmed publish and consume on a quorum queue, then partitions, alarms and "
                "quorum-critical queues, all of which are degraded). The peers come from Pacemaker's node "
                "list; after a power loss the boot is forced when Pacemaker shows the other members down "
                "(some down: on the first of the nodes coming back); "
                "start never wipes a node's data (a node its cluster forgot has it moved aside). Meant as a "
                "clone on every controller.")
    params = (
        Param("nodename", shortdesc="Erlang node name of the broker", default="rabbit@%h", check=_node_name,
              longdesc="NAME@HOST; %h stands for the short form of this node's Pacemaker name "
                       "(CRM_meta_on_node; outside Pacemaker the host name), so one value serves every node "
                       "of a clone, and the peers' node names are derived from it (peers). HOST must resolve "
                       "to this node on every broker of the cluster. The broker's data lives in "
                       "base_dir/mnesia/<nodename>: changing it starts an empty broker beside the old data."),
        Param("binary", shortdesc="rabbitmq-server start script", check=_absolute,
              default="/usr/lib/rabbitmq/bin/rabbitmq-server",
              longdesc="Debian's script under /usr/lib/rabbitmq/bin (not the /usr/sbin wrapper, which "
                       "switches users itself); it execs the Erlang VM."),
        Param("user", shortdesc="User the broker runs as", default="rabbitmq",
              longdesc="Never root. Owns base_dir, log_dir and the copy of the cookie."),
        Param("host", shortdesc="Address the broker listens on for AMQP (and is checked on)",
              default="0.0.0.0", check=_address,  # noqa: S104 - a default, bound by the broker
              longdesc="An IPv4 or IPv6 address; 0.0.0.0 or :: for every address of the node; or a network "
                       "in CIDR form (10.213.0.0/24): this node's own address in it, chosen at start "
                       "(primary before secondary such as a VIP, then the lowest; none: start fails with 5). "
                       "With an IPv4 address, Erlang distribution listens on that address too."),
        Param("port", "integer", minimum=1, maximum=65535, default=5672,
              shortdesc="AMQP port (and the port the monitor checks)"),
        Param("dist_port", "integer", minimum=1, maximum=65535, default=25672,
              shortdesc="Erlang distribution port (clustering and the CLI tools)"),
        Param("epmd_port", "integer", minimum=1, maximum=65535, default=4369,
              shortdesc="Port of the Erlang port mapper (epmd)",
              longdesc="epmd is started by the first Erlang node of the host and shared by all of them; "
                       "stopping the broker leaves it running."),
        Param("cookie_file", shortdesc="Root-only file holding the Erlang cookie", check=_absolute,
              default="/etc/openstack-ha/rabbitmq.cookie",
              longdesc="A regular file owned by root, mode 0600 or 0400, holding the cluster's Erlang cookie "
                       "(one line, printable, no spaces, at most 255 characters; the same on every node). It "
                       "is copied at start into base_dir/.erlang.cookie for the broker; it never appears in "
                       "the CIB, a command line, an environment or a log. Missing or with other rights: 5 "
                       "(this node's problem, the broker may run elsewhere)."),
        Param("base_dir", shortdesc="The broker's HOME and data directory", default="/var/lib/rabbitmq",
              check=_absolute,
              longdesc="HOME of the broker (its .erlang.cookie) and the parent of its data, base_dir/mnesia. "
                       "Owned by user (or root), writable by nobody else; created for user (mode 0750) when "
                       "missing and its parent exists. Its data is never deleted by the agent."),
        Param("config_dir", shortdesc="Directory of the configuration written by the agent", check=_absolute,
              default="/etc/openstack-ha/rabbitmq",
              longdesc="rabbitmq.conf, enabled_plugins and rabbitmq-env.conf are written here at every start "
                       "(edits are overwritten); an advanced.config placed here by the operator is read by "
                       "the broker. Owned by root and writable by root alone; created (mode 0755) when "
                       "missing and its parent exists."),
        Param("log_dir", shortdesc="Directory of the broker's logs", default="/var/log/rabbitmq",
              check=_absolute,
              longdesc="The broker's own log (<nodename>.log) and its standard output and error "
                       "(<nodename>-ocf.log), opened as user. Created for user (mode 0750) when missing and "
                       "its parent exists."),
        Param("peers", shortdesc="Node names of the other brokers of the cluster", default="", check=_peers,
              longdesc="Space-separated NAME@HOST node names. A new node (no data in base_dir) joins the "
                       "first running one at start; a node clustered already keeps its membership; a node "
                       "with data of its own, alone while a peer runs, is never reset: its start fails. "
                       "Empty (the normal case): every other node of the Pacemaker cluster (crm_node -l) "
                       "through the nodename template; outside a cluster, none: the node runs alone."),
        Param("partition_handling", "select", choices=PARTITION_HANDLING, default="pause_minority",
              shortdesc="cluster_partition_handling of the broker",
              longdesc="pause_minority: a node that sees a minority of the cluster pauses (stops serving) "
                       "until the partition heals, so a netsplit never yields two diverging halves."),
        Param("heartbeat", "integer", minimum=0, maximum=3600, default=10,
              shortdesc="AMQP heartbeat timeout the broker suggests to clients (seconds)",
              longdesc="Clients that accept the broker's suggestion detect a dead connection after about "
                       "twice this; 0 disables heartbeats."),
        Param("credentials", shortdesc="Root-only file with the depth-20 monitor's AMQP account",
              check=_absolute, default="", reloadable=True,
              longdesc="An ini-style file, mode 0600, owned by root, with a section (credentials_section) "
                       "holding username, password and optionally vhost (default /). Depth 20 logs in with "
                       "it; the account needs configure, write and read rights on the queue "
                       "ocf-monitor.<nodename>."),
        Param("credentials_section", shortdesc="Section of the credentials file", default="credentials",
              reloadable=True),
    )

    # Actions ---------------------------------------------------------------

    @action("start", timeout=120)
    def start(self) -> OCF:
        code = self.start_daemon()
        if self.fresh is not None and self.peers():  # launched by this start, not found running
            self.join_peers()
        return code

    @action("stop", timeout=120)
    def stop(self) -> OCF:
        self.daemon.stop(self.deadline)
        return OCF.SUCCESS

    @action("monitor", Advert(timeout=20, interval=10), Advert(timeout=20, interval=30, depth=10),
            Advert(timeout=30, interval=60, depth=20))
    def monitor(self) -> OCF:
        return self.monitor_daemon()

    @action("notify", timeout=30)
    def notify(self) -> OCF:
        """With notify=true on the clone: after instances stopped on nodes Pacemaker no longer has as
        members (fenced), this broker drops its Erlang link to their brokers at once. A crashed node's
        link goes dark without a reset, and until the link is dropped (Erlang's net_ticktime) the
        quorum queues it led elect no new leader and the cluster's metadata waits for it. Never
        fails: the link is dropped by net_ticktime anyway."""
        note = self.env.notify()
        if note.type == "post" and note.operation == "stop":
            self.drop_links(note.unames("stop"))
        return OCF.SUCCESS

    @action("reload-agent", timeout=20)
    def reload_agent(self) -> OCF:
        # The reloadable parameters (the deep check's credentials) are read by each monitor anew.
        return OCF.SUCCESS

    # Hooks -----------------------------------------------------------------

    def validate(self) -> Iterable[OCFError]:
        problems = self.binary_problems()
        if self.env.action in ("start", "validate-all"):
            # Not on the monitor path: a monitor only looks at the process recorded at start.
            problems += self.unprivileged_user_problems("the broker must not run as root")
            try:
                self.cookie()
            except OCFError as exc:
                problems.append(exc)
            problems += self.credentials_problems()
            problems += self.host_problems()
            problems += self.node_host_problems()
            for param in ("base_dir", "config_dir", "log_dir"):
                directory = self.config.text(param)
                if not os.path.isdir(directory) and not os.path.isdir(os.path.dirname(directory)):
                    problems.append(OCFError(OCF.ERR_INSTALLED, f"neither {param} {directory} nor its parent "
                                             "exists"))
        return problems

    def node_host_problems(self) -> list[OCFError]:
        """The host part of the node name must resolve here (else Erlang gives up after a minute)."""
        from agents.http import resolve

        host = self.nodename.partition("@")[2]
        if not host:
            return []
        try:
            resolve(host, self.config.integer("dist_port"), self.deadline, RESOLVE_CAP_S)
        except TimeoutError:
            return [OCFError(OCF.ERR_INSTALLED, f"the host {host} of nodename {self.nodename} did not "
                             f"resolve within {RESOLVE_CAP_S:.0f} s on this node")]
        except OSError:
            return [OCFError(OCF.ERR_INSTALLED, f"the host {host} of nodename {self.nodename} does not "
                             "resolve on this node (/etc/hosts or DNS)")]
        return []

    # Derived facts -----------------------------------------------------------

    @property
    def nodename(self) -> str:
        return self.node_for(self.pacemaker_name)

    @property
    def pacemaker_name(self) -> str:
        """This node's name in Pacemaker (``CRM_meta_on_node``; else the host name), short form."""
        if self.env.node:
            return short_name(self.env.node)
        import socket

        return short_name(socket.gethostname())

    def node_for(self, pacemaker_name: str) -> str:
        """The Erlang node name of the broker on Pacemaker node ``pacemaker_name`` (the template)."""
        return self.config.text("nodename").replace("%h", short_name(pacemaker_name))

    def cookie(self) -> str:
        """The Erlang cookie from ``cookie_file`` (root-only); raises CredentialsError (5)."""
        from agents.ocf.daemon import CredentialsError, read_credentials_text

        path = self.config.text("cookie_file")
        text = read_credentials_text(path).strip()
        if not text or len(text) > COOKIE_MAX or not text.isascii() or not text.isprintable() or " " in text:
            raise CredentialsError(f"cookie file {path} must hold one line of 1 to {COOKIE_MAX} printable "
                                   "ASCII characters without spaces")
        return text

    def dist_interface(self) -> str:
        """``-kernel inet_dist_use_interface`` for an IPv4 ``host``; empty for a wildcard or IPv6."""
        import _socket

        try:
            packed = _socket.inet_pton(_socket.AF_INET, self.host)
        except OSError:
            return ""
        if packed == bytes(4):
            return ""
        return "{" + ",".join(str(byte) for byte in packed) + "}"

    launched_at = 0.0  # when the broker was spawned, on the deadline's clock

    def broker_config(self) -> str:
        retry_ms, retries = self.table_wait()
        return (
            "# Written by ocf:openstack:rabbitmq at every start: edits are overwritten.\n"
            f"cluster_partition_handling = {self.config.text('partition_handling')}\n"
            f"heartbeat = {self.config.integer('heartbeat')}\n"
            "log.console = false\n"
            "log.file.level = info\n"
            "# How long a node with cluster data waits at boot for its peers: within this start's budget.\n"
            f"mnesia_table_loading_retry_timeout = {retry_ms}\n"
            f"mnesia_table_loading_retry_limit = {retries}\n"
        )

    def table_wait(self) -> tuple[int, int]:
        """``(retry timeout ms, retry limit)`` of the broker's wait at boot for its peers' tables.

        RabbitMQ 3.10 waits 10 x 30 s, and does so once per boot phase that needs the tables (the
        quorum_queue feature flag's migration, then the tables themselves: TABLE_WAIT_PHASES), then
        gives up. The agent makes those waits fit the start's budget (``OCF_RESKEY_CRM_meta_timeout``,
        what is left of it at launch) less the time a boot and a stop take (BOOT_RESERVE_S); should
        the broker still not answer, ``wait_until_answering`` stops it before the deadline, so a
        start that cannot complete fails with a reason of ours, never killed by Pacemaker.
        """
        import math

        wait = max((self.deadline.remaining() - BOOT_RESERVE_S) / TABLE_WAIT_PHASES, TABLE_WAIT_MIN_S)
        retries = max(1, math.ceil(wait / TABLE_WAIT_STEP_S))
        return int(wait * 1000 / retries), retries

    # Start -------------------------------------------------------------------

    def check_port_free(self) -> None:
        super().check_port_free()
        from agents.ocf.daemon import listening_inodes, socket_owner

        dist_port = self.config.integer("dist_port")
        dist_host = self.host if self.dist_interface() else "0.0.0.0"  # noqa: S104 - checked, not bound
        inodes = listening_inodes(dist_host, dist_port)
        if inodes:
            raise OCFError(OCF.ERR_GENERIC, f"cannot start {self.name}: its distribution port {dist_port} is "
                           f"already in use by {socket_owner(inodes)}")

    def broker_env(self, user: User) -> dict[str, str]:
        """The environment of the broker (and of rabbitmqctl, which needs the same HOME and ports)."""
        base_dir = self.config.text("base_dir")
        config_dir = self.config.text("config_dir")
        erl_args = "-noinput"
        if self.dist_interface():
            erl_args += f" -kernel inet_dist_use_interface {self.dist_interface()}"
        return {
            "PATH": SERVICE_PATH, "HOME": base_dir, "LANG": "C.UTF-8",
            "USER": user.name, "LOGNAME": user.name,
            # With ALLOW_INPUT the script execs the VM (the recorded process is the broker), -noinput
            # keeps the VM from reading its standard input all the same.
            "RABBITMQ_ALLOW_INPUT": "true", "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": erl_args,
            "RABBITMQ_NODENAME": self.nodename, "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.config.integer("dist_port")),
            "ERL_EPMD_PORT": str(self.config.integer("epmd_port")),
            "RABBITMQ_MNESIA_BASE": os.path.join(base_dir, "mnesia"),
            "RABBITMQ_LOG_BASE": self.config.text("log_dir"),
            "RABBITMQ_CONFIG_FILE": os.path.join(config_dir, "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(config_dir, "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(config_dir, "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(config_dir, "rabbitmq-env.conf"),
        }

    @property
    def data_dir(self) -> str:
        return os.path.join(self.config.text("base_dir"), "mnesia", self.nodename)

    def launch(self) -> Identity:
        user = self.user()
        base_dir = self.config.text("base_dir")
        log_dir = self.config.text("log_dir")
        for directory in (base_dir, log_dir):
            owned_directory(directory, user)
        write_cookie(base_dir, user, self.cookie())
        node = self.nodename
        self.fresh = not os.path.isdir(self.data_dir)
        if not self.fresh:
            self.prepare_boot()
        if self.fresh and self.peers():
            self.await_cluster()
        write_config(self.config.text("config_dir"), {
            "rabbitmq.conf": self.broker_config(), "enabled_plugins": "[].\n",
            "rabbitmq-env.conf": "# Written by ocf:openstack:rabbitmq: empty.\n"})
        kept = "without data yet (a new node)" if self.fresh else "with its existing data"
        self.launched_at = self.deadline.elapsed()
        self.log.info(f"starting RabbitMQ node {node} on {self.endpoint} {kept}")
        return self.daemon.spawn([self.config.text("binary")], user=user,
                                 log_path=os.path.join(log_dir, f"{node}-ocf.log"), env=self.broker_env(user),
                                 cwd=base_dir, more_logs=(os.path.join(log_dir, f"{node}.log"),))

    # Peers and Pacemaker ----------------------------------------------------------------

    @functools.cached_property
    def pacemaker(self) -> dict[str, bool] | None:
        """Erlang node name of the broker on each Pacemaker node (the nodename template) -> whether
        that node is an online member of the Pacemaker cluster; None outside a cluster."""
        nodes = pacemaker_nodes(self.deadline)
        if nodes is None:
            return None
        found: dict[str, bool] = {}
        for name, online in nodes.items():
            node = self.node_for(name)
            try:
                _node_name(node)
            except ValueError:
                self.log.warning(f"Pacemaker node {name} gives no valid broker node name; ignored")
                continue
            found[node] = found.get(node, False) or online
        return found

    def peers(self) -> list[str]:
        """The other brokers of the cluster: ``peers`` when given, else one per other Pacemaker node
        (``crm_node -l``, every member whatever its state) through the ``nodename`` template.
        Outside a cluster (no answer from crm_node) and without ``peers``: none, the node runs alone."""
        given = self.config.text("peers").split()
        if given:
            return [peer for peer in given if peer != self.nodename]
        if self.pacemaker is None:
            return []
        return sorted(node for node in self.pacemaker if node != self.nodename)

    idle: frozenset[str] = frozenset()  # peers online in Pacemaker but neither running nor starting

    def idle_peers(self, peers: list[str]) -> frozenset[str]:
        """Of ``peers``, those Pacemaker shows online whose instance of this resource is neither
        active nor being started (the CIB's status: ``instance_state``), once this start has waited
        ``IDLE_SETTLE_S``. Pacemaker starts every instance of a transition at once unless it limits
        its actions (``batch-limit``, or a load above ``load-threshold``: one action at a time across
        the cluster): then a peer's start waits behind this one, and waiting for it would hold both.
        Empty when that cannot be told: no answer from the CIB, or this very start is not recorded
        there as under way (``record-pending`` off: a peer's start would not be either)."""
        states = cib_instance_states(self.deadline, self.env.instance.split(":", 1)[0])
        if states is None or states.get(self.pacemaker_name) != STARTING:
            return frozenset()
        return frozenset(node for name, state in states.items() if state == IDLE
                         and (node := self.node_for(name)) in peers and not self.known_down(node))

    def known_down(self, node: str) -> bool:
        """Pacemaker knows the node of broker ``node`` and it is not an online member (down for good
        as far as this start can tell). Unknown nodes and answers outside a cluster: False."""
        return self.pacemaker is not None and self.pacemaker.get(node) is False

    def drop_links(self, stopped: list[str]) -> None:
        """``erlang:disconnect_node`` on this broker for the brokers of those of ``stopped`` (Pacemaker
        node names) that Pacemaker shows lost: fenced, never alive behind a link that still works;
        then an election by this broker's member of every quorum queue whose leader was on one of
        them (Ra would wait 2.5-4.7 s more after the link drops, measured)."""
        gone = sorted(node for node in {self.node_for(name) for name in stopped}
                      if node != self.nodename and self.known_down(node))
        if not gone or self.daemon.recorded() is None:
            return
        # One survivor calls the elections (the first online by name): two at once may split the vote.
        online = sorted(node for node, up in (self.pacemaker or {}).items() if up)
        elect = bool(online) and online[0] == self.nodename
        try:
            done = self.ctl("eval", fenced_peers_expression(gone, elect))
        except OCFError as exc:
            self.log.warning(f"links to {', '.join(gone)} not dropped ({exc.reason}); net_ticktime will")
            return
        answer = done.stdout.strip()
        elections = f"; elections called for {answer} quorum queue(s) they led" if answer.isdigit() else ""
        self.log.info(f"dropped the links to {', '.join(gone)}: Pacemaker shows their nodes lost{elections}")

    # Before a boot with data -------------------------------------------------------------

    awaiting: tuple[str, ...] = ()  # peers the boot waits for (set by prepare_boot)
    rejoin = ""  # why this node joins as a new one although the cluster knew it: "wiped", "forgotten"

    def prepare_boot(self) -> None:
        """Before launching a node with data that lists other cluster members.

        A running member that answers and knows this node: boot as is (it syncs from it). A running
        member that no longer lists this node (``forget_cluster_node``): 3.10 would refuse to boot
        (inconsistent_cluster), so the data is moved aside and the node joins as a new one. No member
        answers: when Pacemaker says every one of them is down (not an online member), the boot is
        forced (``rabbitmqctl force_boot``) so it does not wait for them; when all are online
        (coming back), it is not: they find each other, within the wait ``table_wait`` sets. Some
        down and some online: those coming back would wait for the lost ones forever (3.10, after
        ``kill -9`` of all), so the first of them by node name forces its boot and the others wait
        for it.
        """
        others = sorted(self.data_members() - {self.nodename})
        if not others:
            return
        coming = [node for node in others if not self.known_down(node)]
        for peer in coming:
            status = self.peer_status(peer)
            if status is None:
                continue
            if self.nodename in status.get("disk_nodes", []) + status.get("ram_nodes", []):
                self.log.info(f"node {self.nodename} boots with its data: its peer {peer} runs and knows it")
                return
            self.move_data_aside(peer)
            return
        down = [node for node in others if node not in coming]
        if not coming:
            self.log.warning(f"every other member of node {self.nodename}'s cluster ({', '.join(others)}) is "
                             "down in Pacemaker: forcing its boot (rabbitmqctl force_boot) so it does not "
                             "wait for them")
            self.ctl("force_boot")
            return
        if down and self.nodename < min(coming):
            self.log.warning(f"{', '.join(down)} of node {self.nodename}'s cluster: down in Pacemaker; "
                             f"{', '.join(coming)}: online. The nodes coming back would all wait for the "
                             "lost ones, so the first of them by name, this one, forces its boot "
                             "(rabbitmqctl force_boot) and the others wait for it")
            self.ctl("force_boot")
            return
        self.awaiting = tuple(coming)
        lead = f" ({min(coming)} forces its boot)" if down else ""
        self.log.info(f"no member of node {self.nodename}'s cluster answers; {', '.join(coming)} "
                      f"{'is' if len(coming) == 1 else 'are'} online in Pacemaker (coming back{lead}): the "
                      "node boots without forcing and waits for them, within the start's budget")

    def data_members(self) -> set[str]:
        """The cluster members recorded in this node's data (``cluster_nodes.config``)."""
        import re

        text = read_private_file(self.data_dir, CLUSTER_NODES_FILE)
        return {quoted or bare for quoted, bare in re.findall(r"'([^']+@[^']+)'|([\w.-]+@[\w.-]+)", text)}

    def peer_status(self, peer: str, quiet: bool = False) -> dict[str, list[str]] | None:
        """``cluster_status`` of ``peer`` when its broker runs (lists itself running); else None."""
        done = self.ctl("cluster_status", "--formatter", "json", node=peer, check=False)
        if done.returncode != 0:
            if not quiet:
                self.log.info(f"peer {peer} does not answer (rabbitmqctl exited {done.returncode})")
            return None
        status = node_lists(done.stdout)
        if status is None or peer not in status.get("running_nodes", []):
            if not quiet:
                self.log.info(f"peer {peer} answers but its broker is not running")
            return None
        return status

    def move_data_aside(self, peer: str) -> None:
        """The data of a node its cluster forgot, moved aside (never deleted); it joins as a new node."""
        aside = self.rename_data("forgotten")
        self.fresh = True
        self.rejoin = "forgotten"
        self.log.warning(f"NODE {self.nodename} WAS FORGOTTEN BY ITS CLUSTER (its running peer {peer} no "
                         f"longer lists it): its data was moved aside to {aside} "
                         "(kept, not deleted); it joins as a new node and its quorum queue replicas are "
                         "grown back")

    def rename_data(self, label: str) -> str:
        """Rename the data directory to ``<data_dir>.<label>-<UTC time>``; the new path."""
        import time

        parent, name = os.path.split(self.data_dir)
        aside = f"{name}.{label}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        dir_fd = open_directory(parent)
        try:
            os.rename(name, aside, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            raise OCFError(OCF.ERR_GENERIC, f"the data of node {self.nodename} could not be moved aside "
                           f"({label}): {exc.strerror}") from None
        finally:
            os.close(dir_fd)
        return os.path.join(parent, aside)

    def unjoined(self, reason: str) -> OCFError:
        """A new node that did not join: its broker stopped and the data this start created moved aside
        (``.unjoined-<time>``), so that the next start is a new node's again, not one "with data of its
        own" that would never join; the error to raise."""
        self.daemon.stop(self.deadline)  # never a cluster of its own beside the running one
        try:
            aside = self.rename_data("unjoined")
            self.log.warning(f"new node {self.nodename} did not join: the data its start created was moved "
                             f"aside to {aside}, so that the next start joins anew")
        except OCFError as exc:
            self.log.warning(exc.reason)
        return OCFError(OCF.ERR_GENERIC, reason)

    # After the boot: joining -------------------------------------------------------------

    def join_peers(self) -> None:
        """After a start that launched the broker: join a running peer when the rules allow it.

        Clustered with a running peer, or with peers that are all down: nothing to do (a node
        keeps its membership). Alone, and no peer answers: a node with data, or the first new node
        by name (``bootstrapper``), stays alone, the first node of the cluster; another new node
        waited for a running peer before its launch (``await_cluster``): if none runs now, its broker
        is stopped and the start fails. Alone while a peer runs: a new node (no data
        before this start, or data moved aside by ``prepare_boot``) joins it (``join_cluster``
        resets the node, which then holds nothing but the defaults it just created); when the
        running cluster still lists this node (its data was destroyed), it is forgotten there first
        (``forget_cluster_node``); after such a rejoin its quorum queue replicas are grown back. A
        node *with data of its own* is never reset: the broker is stopped and the start fails and
        says so.
        """
        peers = self.peers()
        status = self.cluster_status()
        running = set(status.get("running_nodes", [])) - {self.nodename}
        members = set(status.get("disk_nodes", [])) | set(status.get("ram_nodes", []))
        if running & set(peers):
            self.log.info(f"node {self.nodename} is clustered with running {', '.join(sorted(running))}")
            return
        if members - {self.nodename}:
            self.log.info(f"node {self.nodename} keeps its cluster membership "
                          f"({', '.join(sorted(members))}); no member is running yet")
            return
        peer, peer_status = self.running_peer(peers)
        if not peer and (not self.fresh or self.bootstrapper(peers) == self.nodename):
            data = "" if self.fresh else ", with its data"
            self.log.info(f"no peer of {self.nodename} answers ({', '.join(peers)}): it runs as the "
                          f"first node of the cluster{data}")
            return
        if not peer:
            raise self.unjoined(f"new node {self.nodename} found no running peer to join; "
                                f"{self.bootstrapper(peers)}, the first node by name, starts the cluster")
        if not self.fresh:
            self.daemon.stop(self.deadline)
            raise OCFError(OCF.ERR_GENERIC, f"node {self.nodename} has data of its own and is not "
                           f"clustered with its running peer {peer}: it is never reset by the agent; "
                           f"to join, move {self.data_dir} aside (or rabbitmqctl reset) and start again")
        self.ctl("stop_app")
        if self.nodename in peer_status.get("disk_nodes", []) + peer_status.get("ram_nodes", []):
            self.rejoin = self.rejoin or "wiped"
            self.log.warning(f"the cluster of {peer} still lists node {self.nodename}, whose data is gone: "
                             f"forgetting it there (forget_cluster_node) before it joins anew")
            forgot = self.ctl("forget_cluster_node", self.nodename, node=peer, check=False)
            if forgot.returncode != 0:
                self.log.warning(f"forget_cluster_node {self.nodename} on {peer} failed (rabbitmqctl exited "
                                 f"{forgot.returncode}): {' '.join(forgot.stderr.split())[:300]}")
                raise self.unjoined(f"node {self.nodename}, whose data is gone, is still a member of the "
                                    f"cluster of {peer}, which did not forget it (rabbitmqctl exited with "
                                    f"status {forgot.returncode}); see the agent's log")
        done = self.ctl("join_cluster", peer, check=False)
        if done.returncode != 0:
            self.log.warning(f"joining {peer} failed (rabbitmqctl exited {done.returncode}): "
                             f"{' '.join(done.stderr.split())[:300]}")
            raise self.unjoined(f"new node {self.nodename} could not join its running peer {peer} "
                                f"(rabbitmqctl exited with status {done.returncode}); see the agent's log")
        self.ctl("start_app")
        self.log.info(f"new node {self.nodename} joined the cluster of {peer}")
        if self.rejoin:
            self.grow_replicas()

    def grow_replicas(self) -> None:
        """``rabbitmq-queues grow <me> all``: a replica of every quorum queue on this node again."""
        done = self.ctl("grow", self.nodename, "all", "--formatter", "json", tool="rabbitmq-queues",
                        check=False)
        if done.returncode != 0:
            self.log.warning(f"growing the quorum queue replicas onto {self.nodename} failed "
                             f"(rabbitmq-queues exited {done.returncode}): "
                             f"{' '.join(done.stderr.split())[:300]}")
            return
        grown = queue_names(done.stdout)
        self.log.warning(f"rejoined node {self.nodename} ({self.rejoin}): quorum queue replicas grown back "
                         f"on it: {', '.join(grown) if grown else 'none'}")

    def bootstrapper(self, peers: list[str]) -> str:
        """The node that starts a new cluster when no broker runs yet: the first by name of this one and
        its peers not known to be down nor idle (``idle_peers``), so that new nodes started together
        form one cluster, not one each."""
        return min([self.nodename, *(peer for peer in peers
                                     if not self.known_down(peer) and peer not in self.idle)])

    def await_cluster(self) -> None:
        """Before launching a new node that does not start the cluster (``bootstrapper``): wait for a
        running peer to join, so that its broker, alone, is never taken for the cluster's first one.

        New nodes join one at a time, in name order: two joins at once to one node fail (measured:
        one ``join_cluster`` refused, the other node's ``start_app`` hung past a minute). So it waits
        until a peer runs whose cluster holds every peer before it by name that Pacemaker does not
        show down, for ``JOIN_QUEUE_S`` at most (a peer online but not starting, in standby say, must
        not keep it out), leaving the boot and the join their share of the budget. No running peer
        by then: the start fails, no broker launched.

        Peers whose start is held back behind this one (``idle_peers``) are not waited for: without
        a running peer, and first by name of the others, this node starts the cluster itself (they
        join it when their turn comes).
        """
        import time

        peers = self.peers()
        first = self.bootstrapper(peers)
        if first == self.nodename:
            return
        before = {peer for peer in peers if peer < self.nodename and not self.known_down(peer)}
        waited_from = self.deadline.elapsed()
        logged = False
        while True:
            peer, status = self.running_peer(peers, quiet=True)
            missing = before - set(status.get("running_nodes", [])) - self.idle
            if peer and not missing:
                return
            if not peer and self.bootstrapper(peers) == self.nodename:
                self.log.warning(f"new node {self.nodename} starts the cluster: no broker runs and "
                                 f"{', '.join(sorted(self.idle))} (online in Pacemaker) neither run nor are "
                                 "being started: Pacemaker runs their starts after this one")
                return
            left = min(self.deadline.remaining() - BOOT_RESERVE_S - JOIN_RESERVE_S,
                       waited_from + JOIN_QUEUE_S - self.deadline.elapsed())
            if left <= 0:
                break
            if not logged:
                self.log.info(f"new node {self.nodename} waits before booting until its cluster runs with "
                              f"{', '.join(sorted(before))} ({first}, the first node by name, starts it)")
                logged = True
            time.sleep(min(PEER_POLL_S, left))
            if self.deadline.elapsed() - waited_from >= IDLE_SETTLE_S:
                self.idle = self.idle_peers(peers)
        if peer:
            self.log.warning(f"new node {self.nodename} joins {peer} without waiting any longer for "
                             f"{', '.join(sorted(missing))} (online in Pacemaker, not running a broker)")
            return
        raise OCFError(OCF.ERR_GENERIC, f"new node {self.nodename} found no running peer to join within its "
                       f"start's budget; {self.bootstrapper(peers)}, the first node by name, starts the "
                       "cluster")

    def running_peer(self, peers: list[str], quiet: bool = False) -> tuple[str, dict[str, list[str]]]:
        """The first peer whose broker runs and answers ``cluster_status``, and its answer; empty
        when none does."""
        for peer in peers:
            status = self.peer_status(peer, quiet)
            if status is not None:
                return peer, status
        return "", {}

    def cluster_status(self) -> dict[str, list[str]]:
        done = self.ctl("cluster_status", "--formatter", "json")
        status = node_lists(done.stdout)
        if status is None:
            raise OCFError(OCF.ERR_GENERIC, "rabbitmqctl cluster_status did not answer a JSON object")
        return status

    def ctl(self, *args: str, node: str = "", check: bool = True,
            tool: str = "rabbitmqctl") -> subprocess.CompletedProcess[str]:
        """``TOOL -n NODE ARGS`` (rabbitmqctl, rabbitmq-queues, rabbitmq-diagnostics) as the broker's
        user, with its HOME (the cookie) and ports; NODE is this broker unless ``node`` names another."""
        import subprocess

        user = self.user()
        argv = [os.path.join(os.path.dirname(self.config.text("binary")), tool),
                "-n", node or self.nodename, *args]
        env = self.broker_env(user)
        del env["RABBITMQ_ALLOW_INPUT"], env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
        ids: dict[str, object] = {}
        if os.geteuid() == 0:
            ids = {"user": user.uid, "group": user.gid, "extra_groups": user.groups}
        try:
            done: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
                argv, capture_output=True, text=True, env=env, cwd=self.config.text("base_dir"),
                stdin=subprocess.DEVNULL, timeout=self.deadline.timeout(CTL_CAP_S), check=False, **ids)
        except subprocess.TimeoutExpired:
            raise OCFError(OCF.ERR_GENERIC, f"{tool} {args[0]} did not finish in time") from None
        except OSError as exc:
            raise OCFError(OCF.ERR_INSTALLED, f"cannot run {tool}: {exc.strerror}") from None
        if check and done.returncode != 0:
            self.log.warning(f"{tool} {args[0]} exited {done.returncode}: "
                             f"{' '.join(done.stderr.split())[:300]}")
            raise OCFError(OCF.ERR_GENERIC, f"{tool} {args[0]} exited with status {done.returncode}; "
                           "see the agent's log")
        return done

    def wait_until_answering(self, identity: Identity) -> None:
        """As the daemon base waits; a boot waiting for its peers is given up by the agent itself,
        STOP_RESERVE_S before the start's deadline (RabbitMQ 3.10 waits once per boot phase and may
        not exit when it gives up): the broker is stopped and the start fails saying why."""
        if not self.awaiting:
            super().wait_until_answering(identity)
            return
        from agents.ocf.deadline import Deadline

        whole = self.deadline
        self.deadline = Deadline(max(whole.remaining() - STOP_RESERVE_S, 0.0))
        try:
            super().wait_until_answering(identity)
            return
        except OCFError:
            pass
        finally:
            self.deadline = whole
        waited = self.deadline.elapsed() - self.launched_at
        if identity.alive():
            self.daemon.stop(self.deadline)
        raise OCFError(OCF.ERR_GENERIC, f"node {self.nodename} waited {waited:.0f} s at boot for its cluster "
                       f"peers {', '.join(self.awaiting)} (online in Pacemaker, so its boot was not forced) "
                       "and none came back within the start's budget; the broker was stopped: start them, "
                       "or take their nodes out of the Pacemaker cluster so this one boots without them; "
                       f"{self.daemon.where_to_look()}") from None

    def answering(self, identity: Identity) -> str:
        return self.answering_once_listening(identity, lambda: self.check_version(cap=START_ASK_CAP_S))

    # Monitor -------------------------------------------------------------------

    def check_version(self, cap: float | None = None) -> None:
        """Depth 10: the AMQP protocol header answered by ``Connection.Start``."""
        from agents.http import client_address, connect

        address = client_address(self.host)
        where = f"[{address}]:{self.port}" if ":" in address else f"{address}:{self.port}"
        began = self.deadline.elapsed()
        answer = b""
        try:
            sock = connect(self.deadline, address, self.port, cap)
            try:
                sock.settimeout(max(self.deadline.timeout(cap), 0.001))
                sock.sendall(AMQP_HEADER)
                while len(answer) < ANSWER_BYTES:
                    left = self.deadline.timeout(cap)
                    if left <= 0:
                        raise TimeoutError
                    sock.settimeout(left)
                    chunk = sock.recv(ANSWER_BYTES - len(answer))
                    if not chunk:
                        break
                    answer += chunk
            finally:
                sock.close()
        except TimeoutError:
            raise OCFError(OCF.ERR_GENERIC, f"RabbitMQ on {where} did not answer the AMQP handshake within "
                           f"{self.deadline.elapsed() - began:.1f} s") from None
        except ConnectionRefusedError:
            raise OCFError(OCF.ERR_GENERIC, f"RabbitMQ on {where} refused the connection") from None
        except OSError as exc:
            raise OCFError(OCF.ERR_GENERIC, f"RabbitMQ on {where}: the AMQP handshake failed: "
                           f"{exc.strerror or type(exc).__name__}") from None
        if len(answer) < ANSWER_BYTES or answer[0] != FRAME_METHOD or answer[7:11] != CONNECTION_START:
            shown = answer[:ANSWER_BYTES].hex() or "nothing"
            raise OCFError(OCF.ERR_GENERIC, f"RabbitMQ on {where} answered the AMQP protocol header with "
                           f"{shown}, not Connection.Start")

    def deep_check(self) -> None:
        """The confirmed round trip, then the cluster's health (two CLI tools, run beside it)."""
        from concurrent.futures import ThreadPoolExecutor

        from agents.ocf.daemon import Degraded

        lost = [peer for peer in self.peers() if self.known_down(peer)]
        if lost:
            # A crashed node's link stays open and silent until it is dropped: a round trip or a
            # CLI query touching it would wait for it, and hold up the notification that drops it.
            raise Degraded(f"Pacemaker shows the node of {', '.join(lost)} lost: the publish and consume "
                           "check and the cluster's health wait until it is back")
        credentials = self.credentials()
        with ThreadPoolExecutor(2) as pool:
            status = pool.submit(self.ctl, "cluster_status", "--formatter", "json", check=False)
            critical = pool.submit(self.ctl, "check_if_node_is_quorum_critical", "--formatter", "json",
                                   tool="rabbitmq-diagnostics", check=False)
            problem = confirmed_round_trip(self.deadline, self.host, self.port, credentials,
                                           f"ocf-monitor.{self.nodename}")
            try:
                problems = health_problems(status.result().stdout, critical.result())
            except OCFError as exc:
                problems = [exc.reason]
        if problem:  # after the cluster's problems, which explain it more often than not
            problems.append(problem)
        if problems:
            raise Degraded("; ".join(problems))


# Pacemaker's view, and what the CLI tools answer ------------------------------------------------

def fenced_peers_expression(gone: list[str], elect: bool) -> str:
    """Erlang for ``rabbitmqctl eval``: drop the links to the ``gone`` brokers (names checked by
    _node_name: no quotes); with ``elect``, then trigger an election by the local member of each
    quorum queue recorded with its leader on one of them and answer their number (``skipped``
    when the broker's internal API differs: the links are dropped all the same)."""
    names = ", ".join(f"'{node}'" for node in gone)
    drop = f"Gone = [{names}], [erlang:disconnect_node(N) || N <- Gone], "
    if not elect:
        return drop + "dropped."
    return (drop + "try length([catch ra:trigger_election({Name, node()}, 5000) "
            "|| Q <- rabbit_amqqueue:list_local_quorum_queues(), "
            "{Name, Leader} <- [amqqueue:get_pid(Q)], lists:member(Leader, Gone)]) "
            "catch _:_ -> skipped end.")


def pacemaker_nodes(deadline: Deadline) -> dict[str, bool] | None:
    """Pacemaker's membership from ``crm_node -l`` (lines ``ID NAME STATE``): node name -> online
    (state ``member``). None when there is no answer (not in a cluster, no crm_node, no time).

    The agent's one question to Pacemaker. crm_node is found on the agent's PATH: the tests put a
    stub of it first there (``harness/pacemaker_stub/crm_node``, printing the same lines from a file).
    """
    from agents.ocf.proc import run

    try:
        done = run(["crm_node", "-l"], deadline, cap=CRM_NODE_CAP_S)
    except OCFError:
        return None
    if done.returncode != 0:
        return None
    nodes: dict[str, bool] = {}
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] != "(null)":
            nodes[fields[1]] = nodes.get(fields[1], False) or fields[2] == "member"
    return nodes or None


def cib_instance_states(deadline: Deadline, resource: str) -> dict[str, str] | None:
    """Each node in the CIB's status -> the state of ``resource`` there (``instance_state``); None
    without an answer (not in a cluster, no cibadmin, no time)."""
    from agents.ocf.proc import run

    try:
        done = run(["cibadmin", "--query", "--scope", "status"], deadline, cap=CIB_CAP_S)
    except OCFError:
        return None
    if done.returncode != 0:
        return None
    return instance_states(done.stdout, resource)


def instance_states(status_xml: str, resource: str) -> dict[str, str] | None:
    """From the CIB's status section: each node (``uname``) -> the state of ``resource`` there. None
    when the text is not that XML."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(status_xml)  # noqa: S314 - the CIB manager's answer to root
    except ElementTree.ParseError:
        return None
    states = {}
    for node in root.iter("node_state"):
        last = None
        for entry in node.iter("lrm_resource"):
            if entry.get("id") == resource:
                last = entry.find(f"lrm_rsc_op[@id='{resource}_last_0']")
        states[node.get("uname", "")] = instance_state(last)
    states.pop("", None)
    return states


def instance_state(last: ElementTree.Element | None) -> str:
    """What a resource's last operation on a node (``<id>_last_0``; None: none recorded) says of it.
    IDLE, neither active nor on its way: nothing recorded, a completed or pending stop, a probe that
    found it stopped, a start that failed (a stop follows). STARTING: a start under way (``op-status``
    -1, Pacemaker's record-pending). ACTIVE: anything else, whatever is not understood included."""
    if last is None:
        return IDLE
    operation, status, rc = last.get("operation"), last.get("op-status"), last.get("rc-code")
    if status == PENDING:
        return IDLE if operation == "stop" else STARTING if operation == "start" else ACTIVE
    stopped = (status == "0" and ((operation == "stop" and rc == "0") or (operation == "start" and rc != "0")
                                  or (operation == "monitor" and rc == "7" and last.get("interval") == "0")))
    return IDLE if stopped else ACTIVE


def short_name(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


def read_private_file(directory: str, name: str) -> str:
    """A small file root reads in a directory the broker's user writes: never through a symbolic
    link, only a regular file; empty when missing."""
    import stat

    try:
        dir_fd = os.open(directory, DIR_FLAGS)
    except OSError:
        return ""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return ""
    finally:
        os.close(dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, PRIVATE_FILE_MAX).decode("utf-8", "replace")
    finally:
        os.close(fd)


def json_answer(text: str) -> object:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return None


def node_lists(text: str) -> dict[str, list[str]] | None:
    """The lists of ``cluster_status --formatter json`` (running_nodes, disk_nodes...); None if not JSON."""
    found = json_answer(text)
    if not isinstance(found, dict):
        return None
    return {key: [str(node) for node in value] for key, value in found.items() if isinstance(value, list)}


def queue_names(text: str) -> list[str]:
    """Queue names in a CLI tool's JSON answer (a list of rows, or an object with ``queues``)."""
    found = json_answer(text)
    if isinstance(found, dict):
        found = found.get("queues", [])
    names = []
    for row in found if isinstance(found, list) else []:
        if isinstance(row, dict) and row.get("name") is not None:
            names.append(str(row["name"]))
    return names


def names_shown(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def health_problems(status_text: str, critical: subprocess.CompletedProcess[str]) -> list[str]:
    """Partitions and alarms (``cluster_status --formatter json``) and quorum-critical queues
    (``rabbitmq-diagnostics check_if_node_is_quorum_critical --formatter json``), names only.

    Quorum-critical counts while a cluster member is down: a queue of two members is always
    critical (each one is half of it), which is its design, not a failure."""
    problems = []
    status = json_answer(status_text)
    if not isinstance(status, dict):
        problems.append("rabbitmqctl cluster_status did not answer a JSON object")
        status = {}
    partitions = status.get("partitions") or {}
    if partitions:
        seen = sorted(partitions) if isinstance(partitions, dict) else [str(partitions)[:100]]
        problems.append(f"network partition seen by {names_shown([str(node) for node in seen])}")
    alarms = []
    for alarm in status.get("alarms") or []:
        if isinstance(alarm, dict):
            kind = alarm.get("resource") or alarm.get("type") or alarm.get("alarm") or "resource"
            alarms.append(f"{kind} alarm on {alarm.get('node', '?')}")
        else:
            alarms.append(f"alarm {str(alarm)[:80]}")
    if alarms:
        problems.append(names_shown(alarms))
    members = {str(node) for key in ("disk_nodes", "ram_nodes") for node in status.get(key) or []}
    down = sorted(members - {str(node) for node in status.get("running_nodes") or []})
    if critical.returncode != 0:
        queues = queue_names(critical.stdout) or queue_names(critical.stderr)  # 3.10: on stderr
        if queues and down:
            problems.append(f"quorum-critical ({names_shown(down)} down; they would lose their majority "
                            f"without this node): {names_shown(queues)}")
        elif not queues:
            problems.append("rabbitmq-diagnostics check_if_node_is_quorum_critical exited "
                            f"{critical.returncode}")
    return problems


# The depth-20 round trip ------------------------------------------------------------

def confirmed_round_trip(deadline: Deadline, host: str, port: int, credentials: dict[str, str],
                         queue: str) -> str:
    """Publish with confirms into the durable quorum queue ``queue`` and consume it back.

    Empty when it worked, else why not (one line, the broker's reply code and text at most).
    pika runs in a thread the caller stops waiting for when the budget is spent.
    """
    import logging

    from agents.http import client_address, within

    logging.getLogger("pika").addHandler(logging.NullHandler())
    logging.getLogger("pika").propagate = False
    timeout = deadline.timeout(DEEP_CHECK_CAP_S)
    if timeout <= 0:
        return "no time left for the publish and consume check"
    address = client_address(host)
    nonce = os.urandom(8).hex().encode()

    def work() -> str:
        return _round_trip(deadline, address, port, credentials, queue, nonce, timeout)

    try:
        return within(timeout, work)
    except TimeoutError:
        return f"publish and consume on quorum queue {queue} did not complete within {timeout:.1f} s"


def _round_trip(deadline: Deadline, address: str, port: int, credentials: dict[str, str], queue: str,
                nonce: bytes, timeout: float) -> str:
    import pika
    import pika.exceptions as errors

    params = pika.ConnectionParameters(
        host=address, port=port, virtual_host=credentials.get("vhost") or "/",
        credentials=pika.PlainCredentials(credentials["username"], credentials["password"]),
        socket_timeout=timeout, stack_timeout=timeout, blocked_connection_timeout=timeout,
        connection_attempts=1, retry_delay=0, heartbeat=0)
    try:
        conn = pika.BlockingConnection(params)
    except (errors.ProbableAuthenticationError, errors.AuthenticationError, errors.ProbableAccessDeniedError):
        return f"credentials for {credentials['username']} were rejected"
    except (errors.AMQPError, OSError) as exc:
        return f"login failed: {type(exc).__name__}"
    steps: list[str] = []
    try:
        return _publish_consume(deadline, conn, queue, nonce, steps)
    except (errors.AMQPError, OSError) as exc:
        return _failure(exc, steps[-1] if steps else "open a channel", queue)
    finally:
        try:
            conn.close()
        except (errors.AMQPError, OSError):
            pass


def _publish_consume(deadline: Deadline, conn: pika.BlockingConnection, queue: str, nonce: bytes,
                     steps: list[str]) -> str:
    import time

    import pika

    steps.append("open a channel")
    channel = conn.channel()
    channel.confirm_delivery()
    steps.append(f"declare quorum queue {queue}")
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    steps.append(f"publish to quorum queue {queue}")
    channel.basic_publish("", queue, nonce, pika.BasicProperties(delivery_mode=2), mandatory=True)
    steps.append(f"consume from quorum queue {queue}")
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=False)
        if method is not None:
            channel.basic_ack(method.delivery_tag)  # ours, or left over by an interrupted check
            if body == nonce:
                return ""
            continue
        if deadline.remaining() <= CONSUME_POLL_S:
            return f"the message published to quorum queue {queue} did not come back"
        time.sleep(CONSUME_POLL_S)


def _failure(exc: BaseException, step: str, queue: str) -> str:
    import pika.exceptions as errors

    if isinstance(exc, errors.ConnectionBlockedTimeout):
        return f"the broker blocks publishers (a memory or disk alarm) at: {step}"
    if isinstance(exc, errors.NackError):
        return f"the broker refused (nack) the message published to quorum queue {queue}"
    if isinstance(exc, errors.UnroutableError):
        return f"the message published to quorum queue {queue} was returned unroutable"
    if isinstance(exc, errors.ChannelClosedByBroker):
        return f"the broker closed the channel at: {step}: {exc.reply_code} {exc.reply_text[:120]}"
    return f"failed to {step}: {type(exc).__name__}"


# Files root writes for the broker -------------------------------------------------------

def open_directory(path: str) -> int:
    """A descriptor of the directory ``path`` itself (never through a symbolic link)."""
    try:
        return os.open(path, DIR_FLAGS)
    except OSError as exc:
        import errno

        link = exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path)
        why = "it is a symbolic link" if link else exc.strerror
        raise OCFError(OCF.ERR_INSTALLED, f"cannot open the directory {path}: {why}") from None


def owned_directory(path: str, user: User) -> None:
    """``path`` made for ``user`` when missing; an existing one must be user's or root's, and
    writable by its owner alone (root writes the cookie into it)."""
    try:
        os.mkdir(path, DIR_MODE)
        if os.geteuid() == 0:
            os.lchown(path, user.uid, user.gid)
    except FileExistsError:
        pass
    except OSError as exc:
        raise OCFError(OCF.ERR_INSTALLED, f"cannot create the directory {path}: {exc.strerror}") from None
    fd = open_directory(path)
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if info.st_uid not in (0, user.uid) or info.st_mode & 0o022:
        raise OCFError(OCF.ERR_PERM, f"the directory {path} must belong to {user.name} or root and be "
                       f"writable by its owner alone, not uid {info.st_uid} mode {info.st_mode & 0o7777:04o}")


def write_cookie(base_dir: str, user: User, cookie: str) -> None:
    """``base_dir/.erlang.cookie`` for ``user``, mode 0400: a fresh file (O_EXCL, O_NOFOLLOW) renamed."""
    dir_fd = open_directory(base_dir)
    try:
        _replace(dir_fd, base_dir, COOKIE_FILE, cookie.encode("ascii"), COOKIE_MODE, user)
    finally:
        os.close(dir_fd)


def write_config(path: str, files: dict[str, str]) -> None:
    """The agent's files in ``path``, a directory owned by root and writable by root alone
    (checked and written through one descriptor of it)."""
    try:
        os.mkdir(path, CONFIG_DIR_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise OCFError(OCF.ERR_INSTALLED, f"cannot create config_dir {path}: {exc.strerror}") from None
    dir_fd = open_directory(path)
    try:
        info = os.fstat(dir_fd)
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise OCFError(OCF.ERR_PERM, f"config_dir {path} must belong to uid {os.geteuid()} and be "
                           f"writable by it alone, not uid {info.st_uid} mode {info.st_mode & 0o7777:04o}")
        for name, text in files.items():
            _replace(dir_fd, path, name, text.encode("utf-8"), CONFIG_FILE_MODE, None)
    finally:
        os.close(dir_fd)


def _replace(dir_fd: int, directory: str, name: str, data: bytes, mode: int, owner: User | None) -> None:
    tmp = f".{name}.ocf-{os.urandom(6).hex()}"
    try:
        fd = os.open(tmp, NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        raise OCFError(OCF.ERR_PERM, f"cannot write {name} in {directory}: {exc.strerror}") from None
    try:
        try:
            if owner is not None and os.geteuid() == 0:
                os.fchown(fd, owner.uid, owner.gid)
            os.fchmod(fd, mode)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise OCFError(OCF.ERR_PERM, f"cannot write {name} in {directory}: {exc.strerror}") from None


AGENT = RabbitMQ

if __name__ == "__main__":
    AGENT.main()
