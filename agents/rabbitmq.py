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

**No wipe, ever.** Start never deletes, resets or moves the broker's data
(``base_dir/mnesia``): a node with data starts with it, its durable queues and their messages.
With ``peers``, a node that had no data before this start and is alone joins the first running
peer (``rabbitmqctl join_cluster``, whose reset then drops only the defaults it just created);
a node clustered already keeps its membership; a node alone with data of its own is never
reset: its start fails and says so (``join_peers``). A node the cluster forgot is not
recognised yet, and the peers are not yet derived from Pacemaker.

Health checks by ``OCF_CHECK_LEVEL``, none of which boots an Erlang VM (no ``rabbitmqctl``):

* 0: the broker's VM we started (pid and start time) is alive, not frozen, and holds a LISTEN
  socket on ``host:port``;
* 10: the AMQP handshake: the protocol header sent, ``Connection.Start`` read back;
* 20 (with ``credentials``): a login, a publish with publisher confirms into a durable quorum
  queue of the monitor's own (``ocf-monitor.<nodename>``) and the message consumed back. A
  failure after a successful handshake (no quorum for the queue, a memory or disk alarm
  blocking publishers, rejected credentials) is the cluster's or the monitor's, not this
  process's: degraded (190).
"""

from __future__ import annotations

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
    valid = bool(name) and set(name) <= NODE_NAME_CHARS - {"."} and \
        (not at or (bool(host) and set(host.replace("%h", "h")) <= NODE_NAME_CHARS))
    if not valid:
        raise ValueError(f"must be NAME@HOST (letters, digits, '-', '_'; HOST may be %h, this node's "
                         f"short host name), not {text!r}")


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
                "Erlang VM (0: process and listening socket, 10: the AMQP handshake, 20: a confirmed publish "
                "and consume on a quorum queue, failures of which are degraded). Start never wipes a node's "
                "data. Meant as a clone on every controller.")
    params = (
        Param("nodename", shortdesc="Erlang node name of the broker", default="rabbit@%h", check=_node_name,
              longdesc="NAME@HOST; %h stands for this node's short host name (the name Pacemaker normally "
                       "knows the node by), so one value serves every node of a clone. HOST must resolve to "
                       "this node on every broker of the cluster. The broker's data lives in "
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
                       "Empty: the node runs alone (deriving the peers from Pacemaker's node list is not "
                       "done yet)."),
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
        given = self.config.text("nodename")
        if "%h" not in given:
            return given
        import socket

        return given.replace("%h", socket.gethostname().split(".")[0])

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

    def broker_config(self) -> str:
        return (
            "# Written by ocf:openstack:rabbitmq at every start: edits are overwritten.\n"
            f"cluster_partition_handling = {self.config.text('partition_handling')}\n"
            f"heartbeat = {self.config.integer('heartbeat')}\n"
            "log.console = false\n"
            "log.file.level = info\n"
        )

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
        write_config(self.config.text("config_dir"), {
            "rabbitmq.conf": self.broker_config(), "enabled_plugins": "[].\n",
            "rabbitmq-env.conf": "# Written by ocf:openstack:rabbitmq: empty.\n"})
        node = self.nodename
        self.fresh = not os.path.isdir(self.data_dir)
        kept = "without data yet (a new node)" if self.fresh else "with its existing data"
        self.log.info(f"starting RabbitMQ node {node} on {self.endpoint} {kept}")
        return self.daemon.spawn([self.config.text("binary")], user=user,
                                 log_path=os.path.join(log_dir, f"{node}-ocf.log"), env=self.broker_env(user),
                                 cwd=base_dir, more_logs=(os.path.join(log_dir, f"{node}.log"),))

    # Joining the peers -------------------------------------------------------------

    def peers(self) -> list[str]:
        return [peer for peer in self.config.text("peers").split() if peer != self.nodename]

    def join_peers(self) -> None:
        """After a start that launched the broker: join a running peer when the rules allow it.

        Clustered with a running peer, or with peers that are all down: nothing to do (a node
        keeps its membership). Alone, and no peer answers: it stays alone, the first node of the
        cluster (with its data, if it has some). Alone while a peer runs: a new node (no data
        before this start) joins it (``join_cluster`` resets the node, which then holds nothing but
        the defaults it just created); a node *with data of its own* is never reset: the broker is
        stopped and the start fails and says so.
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
        peer = self.running_peer(peers)
        if not peer:
            data = "" if self.fresh else ", with its data"
            self.log.info(f"no peer of {self.nodename} answers ({', '.join(peers)}): it runs as the first "
                          f"node of the cluster{data}")
            return
        if not self.fresh:
            self.daemon.stop(self.deadline)
            raise OCFError(OCF.ERR_GENERIC, f"node {self.nodename} has data of its own and is not "
                           f"clustered with its running peer {peer}: it is never reset by the agent; "
                           f"to join, move {self.data_dir} aside (or rabbitmqctl reset) and start again")
        self.ctl("stop_app")
        done = self.ctl("join_cluster", peer, check=False)
        if done.returncode != 0:
            self.log.warning(f"joining {peer} failed (rabbitmqctl exited {done.returncode}): "
                             f"{' '.join(done.stderr.split())[:300]}")
            self.daemon.stop(self.deadline)  # never a second cluster beside the running one
            raise OCFError(OCF.ERR_GENERIC, f"new node {self.nodename} could not join its running peer "
                           f"{peer} (rabbitmqctl exited with status {done.returncode}); see the agent's log")
        self.ctl("start_app")
        self.log.info(f"new node {self.nodename} joined the cluster of {peer}")

    def running_peer(self, peers: list[str]) -> str:
        """The first peer whose broker answers ``cluster_status``; empty when none does."""
        for peer in peers:
            done = self.ctl("cluster_status", "--formatter", "json", node=peer, check=False)
            if done.returncode == 0:
                return peer
            self.log.info(f"peer {peer} does not answer (rabbitmqctl exited {done.returncode})")
        return ""

    def cluster_status(self) -> dict[str, list[str]]:
        import json

        done = self.ctl("cluster_status", "--formatter", "json")
        try:
            found = json.loads(done.stdout)
        except ValueError:
            raise OCFError(OCF.ERR_GENERIC, "rabbitmqctl cluster_status did not answer JSON") from None
        if not isinstance(found, dict):
            raise OCFError(OCF.ERR_GENERIC, "rabbitmqctl cluster_status did not answer a JSON object")
        return {key: [str(node) for node in value] for key, value in found.items()
                if isinstance(value, list)}

    def ctl(self, *args: str, node: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n NODE ARGS`` as the broker's user, with its HOME (the cookie) and ports;
        NODE is this broker unless ``node`` names another."""
        import subprocess

        user = self.user()
        argv = [os.path.join(os.path.dirname(self.config.text("binary")), "rabbitmqctl"),
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
            raise OCFError(OCF.ERR_GENERIC, f"rabbitmqctl {args[0]} did not finish in time") from None
        except OSError as exc:
            raise OCFError(OCF.ERR_INSTALLED, f"cannot run rabbitmqctl: {exc.strerror}") from None
        if check and done.returncode != 0:
            self.log.warning(f"rabbitmqctl {args[0]} exited {done.returncode}: "
                             f"{' '.join(done.stderr.split())[:300]}")
            raise OCFError(OCF.ERR_GENERIC, f"rabbitmqctl {args[0]} exited with status {done.returncode}; "
                           "see the agent's log")
        return done

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
        from agents.ocf.daemon import Degraded

        credentials = self.credentials()
        problem = confirmed_round_trip(self.deadline, self.host, self.port, credentials,
                                       f"ocf-monitor.{self.nodename}")
        if problem:
            raise Degraded(problem)


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
