"""The shared base of nova's RPC services (nova-conductor, nova-scheduler): no port of their own,
a connection to the message bus instead.

An agent for one of them is a subclass that declares its name, program and descriptions; the
parameters, the command line and the checks are the same for both and derive from that here.
On the daemon base (``agents.ocf.daemon``, ``agents.ocf.daemon_agent``): the service is spawned
as its user (``nova``, never root) with ``--config-file <config>`` and ``--log-file <log_file>``
(its console output goes to the same file), in a session of its own, recorded by pid and start
time, and stopped by TERM (oslo.service's graceful shutdown), a wait, then KILL of what is
provably ours.

"Up" means connected to the message bus: an ESTABLISHED TCP connection held by the service's
processes (the one we started or a worker of its session) to one of the brokers of the
``transport_url`` in ``[DEFAULT]`` of its configuration. That is where both services receive
their work (nova-api → conductor → scheduler → conductor) and what oslo.messaging does first
once the service is ready. The brokers (host and port only; never the credentials) are read with
configparser at start and recorded beside the identity: the monitors look where the running
process was told to connect, even if the file changed since. Host names are looked up within
the action's deadline. The connections are read from the kernel (``/proc/net/tcp{,6}``) and
matched against the sockets the session holds: no connection is made, no broker is asked.

Health checks by ``OCF_CHECK_LEVEL``:

* 0: the process we started (pid and start time) is alive and not frozen (stopped by a signal);
* 10: it is connected to a broker of ``transport_url``. Not connected is degraded (190), never a
  failure: oslo.messaging reconnects by itself (``kombu_reconnect_delay``, then to the next broker
  of the list), and when every broker is down a restart would not help; it would only throw
  away the reconnection under way and the work in flight.

The password of ``transport_url`` is never logged, put in an exit reason, a command line or an
environment: the service reads it from its configuration file itself.
"""

from __future__ import annotations

import os

from agents.ocf.actions import Advert, action
from agents.ocf.codes import OCF, OCFError
from agents.ocf.daemon import Degraded
from agents.ocf.daemon_agent import DaemonAgent
from agents.ocf.params import Param

TYPE_CHECKING = False
if TYPE_CHECKING:
    import configparser
    from collections.abc import Iterable

    from agents.ocf.proc import Identity

SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BROKERS_RECORD = "brokers"  # the state file: one "host port" line per broker of transport_url
START_POLL_S = 0.1
START_REPORT_RESERVE_S = 2.0  # kept back at the end of a start to say why it failed
REACH_CAP_S = 1.0  # per broker, when a failed start says whether the brokers accept connections
RESOLVE_CAP_S = 2.0
CONFIG_MAX_BYTES = 1024 * 1024


class NovaRpcService(DaemonAgent):
    """Subclasses declare ``name``, ``default_binary`` and the descriptions; ``params`` derive from them."""

    default_binary = ""
    default_user = "nova"
    default_config = "/etc/nova/nova.conf"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.default_binary and "params" not in vars(cls):
            cls.params = build_params(cls)

    # Actions ---------------------------------------------------------------

    @action("start", timeout=60)
    def start(self) -> OCF:
        identity = self.daemon.recorded()
        brokers = self.recorded_brokers()
        running = identity is not None and identity.alive()
        if not running or not brokers:
            brokers = self.configured_brokers()
            self.state.write(BROKERS_RECORD, "".join(f"{host} {port}\n" for host, port in brokers))
        if identity is None or not running:  # never started, or died since: start anew
            identity = self.launch()
        broker = self.wait_until_connected(identity, brokers)
        self.log.info(f"{self.name} (pid {identity.pid}) is connected to the broker {broker} after "
                      f"{self.deadline.elapsed():.1f} s")
        return OCF.SUCCESS

    # oslo.service waits up to graceful_shutdown_timeout (60 s by default) for the work in flight.
    @action("stop", timeout=90)
    def stop(self) -> OCF:
        self.daemon.stop(self.deadline)
        self.state.remove(BROKERS_RECORD)
        return OCF.SUCCESS

    @action("monitor", Advert(timeout=20, interval=10), Advert(timeout=20, interval=30, depth=10))
    def monitor(self) -> OCF:
        identity = self.daemon.recorded()
        if identity is None:
            return OCF.NOT_RUNNING
        self.check_alive(identity)
        if self.env.check_level >= 10:
            self.check_connected(identity)
        return OCF.SUCCESS

    # Hooks -----------------------------------------------------------------

    def validate(self) -> Iterable[OCFError]:
        problems = self.binary_problems()
        config = self.config.text("config")
        if not os.path.isfile(config):
            problems.append(OCFError(OCF.ERR_INSTALLED, f"configuration file {config} does not exist"))
        if self.env.action not in ("start", "validate-all"):
            return problems  # a monitor only looks at the process and the brokers recorded at start
        if not problems:
            try:
                if not self.transport_url():
                    problems.append(OCFError(OCF.ERR_CONFIGURED, f"transport_url is not set in [DEFAULT] of "
                                             f"{config}"))
            except OCFError as exc:
                problems.append(exc)
        problems += self.unprivileged_user_problems(f"{self.name} must not run as root")
        directory = os.path.dirname(self.config.text("log_file"))
        if not os.path.isdir(directory):
            problems.append(OCFError(OCF.ERR_INSTALLED, f"directory {directory} of log_file does not exist"))
        return problems

    # The configuration ---------------------------------------------------------

    def service_options(self) -> configparser.ConfigParser:
        """The configuration as the service reads it; raises OCFError (ERR_INSTALLED: this node's file).

        Opened without following a link and only as a regular file: it may lie in a directory
        the service's user can write."""
        import configparser

        from agents.ocf.daemon import SAFE_FLAGS, _why

        path = self.config.text("config")
        try:
            fd = os.open(path, os.O_RDONLY | SAFE_FLAGS)
        except OSError as exc:
            raise OCFError(OCF.ERR_INSTALLED, f"cannot read the configuration file {path}: "
                           f"{_why(exc)}") from None
        try:
            import stat

            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OCFError(OCF.ERR_INSTALLED, f"the configuration file {path} is not a regular file")
            data = os.read(fd, CONFIG_MAX_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > CONFIG_MAX_BYTES:
            raise OCFError(OCF.ERR_INSTALLED, f"the configuration file {path} is larger than "
                           f"{CONFIG_MAX_BYTES} bytes")
        parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\x00none")
        try:
            parser.read_string(data.decode("utf-8"), source=path)
        except configparser.Error as exc:
            # Where, never what: the offending line may hold a password (the reason lands in the CIB).
            line = getattr(exc, "lineno", None)
            where = f" at line {line}" if line else ""
            raise OCFError(OCF.ERR_INSTALLED, f"cannot parse {path}{where} ({type(exc).__name__})") from None
        except UnicodeDecodeError as exc:
            raise OCFError(OCF.ERR_INSTALLED, f"cannot parse {path}: not UTF-8 (byte {exc.start})") from None
        return parser

    def transport_url(self) -> str:
        """``[DEFAULT] transport_url``; its passwords (as written and decoded) become secrets of the log."""
        from urllib.parse import unquote

        url = self.service_options().get("DEFAULT", "transport_url", fallback="").strip()
        for secret in _passwords(url):
            if secret:
                self.log.add_secret(secret)
                self.log.add_secret(unquote(secret))
        return url

    def configured_brokers(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every broker of ``transport_url``, in its order."""
        from agents.dependencies import parse_transport_url

        url = self.transport_url()
        if not url:
            raise OCFError(OCF.ERR_CONFIGURED, f"transport_url is not set in [DEFAULT] of "
                           f"{self.config.text('config')}")
        try:
            brokers, _vhost = parse_transport_url(url)
        except ValueError:
            raise OCFError(OCF.ERR_CONFIGURED, "transport_url cannot be parsed") from None
        for _user, password, _host, _port in brokers:
            self.log.add_secret(password)
        return [(host, port) for _user, _password, host, port in brokers]

    def recorded_brokers(self) -> list[tuple[str, int]]:
        found = []
        for line in (self.state.read(BROKERS_RECORD) or "").splitlines():
            host, _space, port = line.rpartition(" ")
            if host and port.isdigit():
                found.append((host, int(port)))
        return found

    # Start -------------------------------------------------------------------

    def launch(self) -> Identity:
        user = self.user()
        log_file = self.config.text("log_file")
        argv = [self.config.text("binary"), "--config-file", self.config.text("config"),
                "--log-file", log_file]
        home = user.home if os.path.isdir(user.home) else "/"
        env = {"PATH": SERVICE_PATH, "HOME": home, "LANG": "C.UTF-8", "USER": user.name, "LOGNAME": user.name}
        self.log.info(f"starting {self.name}: {' '.join(argv)}")
        return self.daemon.spawn(argv, user=user, log_path=log_file, env=env, cwd=home)

    def wait_until_connected(self, identity: Identity, brokers: list[tuple[str, int]]) -> str:
        """The broker the service connected to, once it has, within the start's deadline."""
        while True:
            if not identity.alive():
                raise OCFError(OCF.ERR_GENERIC, self.daemon.exited())
            broker = self.connected_to(identity, brokers)
            if broker:
                return broker
            if self.deadline.remaining() <= START_REPORT_RESERVE_S + START_POLL_S:
                break
            self.deadline.sleep(START_POLL_S)
        reachable = self.reachable(brokers)
        listed = ", ".join(_endpoint(host, port) for host, port in brokers)
        if not reachable:
            why = f"no broker of transport_url ({listed}) accepts connections"
        else:
            why = (f"not connected to any broker of transport_url, though {', '.join(reachable)} accepts "
                   "connections")
        raise OCFError(OCF.ERR_GENERIC, f"{self.name} did not connect to the message bus within "
                       f"{self.deadline.elapsed():.0f} s: {why}; {self.daemon.where_to_look()}")

    def reachable(self, brokers: list[tuple[str, int]]) -> list[str]:
        """The brokers a TCP connection reaches now (a failed start says whether the bus is down)."""
        from agents.http import connect

        found = []
        for host, port in brokers:
            if self.deadline.remaining() <= 0.2:
                break
            try:
                connect(self.deadline, host, port, REACH_CAP_S).close()
            except (OSError, OCFError):
                continue
            found.append(_endpoint(host, port))
        return found

    # Monitor -------------------------------------------------------------------

    def check_connected(self, identity: Identity) -> None:
        """Depth 10: an ESTABLISHED connection of the session to a broker; else degraded."""
        brokers = self.recorded_brokers()
        if not brokers:
            brokers = self.configured_brokers()
        if not self.connected_to(identity, brokers):
            listed = ", ".join(_endpoint(host, port) for host, port in brokers)
            raise Degraded(f"not connected to any broker of transport_url ({listed})")

    def connected_to(self, identity: Identity, brokers: list[tuple[str, int]]) -> str:
        """``host:port`` of a broker the service holds an ESTABLISHED connection to; empty if none."""
        wanted: dict[tuple[bytes, int], str] = {}
        for host, port in brokers:
            for address in self.addresses(host, port):
                wanted.setdefault((address, port), _endpoint(host, port))
        from agents.ocf.daemon import established_connections, socket_inodes

        inodes = {inode: wanted[remote] for remote, inode in established_connections() if remote in wanted}
        if not inodes:
            return ""
        for pid in [identity.pid, *(m.pid for m in identity.session_members() if m.pid != identity.pid)]:
            for inode in socket_inodes(pid):
                if inode in inodes:
                    return inodes[inode]
        return ""

    def addresses(self, host: str, port: int) -> list[bytes]:
        """``host`` as packed addresses: a literal as it is, a name looked up within the deadline."""
        import _socket

        from agents.http import literal_family, resolve

        bare = host.strip("[]")
        family = literal_family(bare)
        if family is not None:
            return [_socket.inet_pton(family, bare)]
        try:
            found = resolve(bare, port, self.deadline, RESOLVE_CAP_S)
        except (OSError, OCFError):
            self.log.warning(f"the broker {_endpoint(host, port)} of transport_url cannot be resolved")
            return []
        return [_socket.inet_pton(family, sockaddr[0]) for family, _kind, _proto, _name, sockaddr in found]


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _passwords(url: str) -> list[str]:
    """The password of every ``user:password@`` of a transport URL (to be redacted from the log)."""
    _scheme, _sep, rest = url.partition("://")
    hosts = rest.split("?", 1)[0]
    at = hosts.rfind("@")
    slash = hosts.find("/", at + 1)
    hosts = hosts if slash < 0 else hosts[:slash]
    found = []
    for entry in hosts.split(","):
        userinfo, at_sign, _hostport = entry.rpartition("@")
        if at_sign:
            found.append(userinfo.partition(":")[2])
    return found


# Parameters, declared once for every RPC service ---------------------------------

def build_params(cls: type[NovaRpcService]) -> tuple[Param, ...]:
    return (
        Param("binary", shortdesc=f"The {cls.name} program", default=cls.default_binary,
              check=_check_file_path),
        Param("config", shortdesc="Configuration file of the service", default=cls.default_config,
              check=_check_file_path,
              longdesc=f"The nova configuration file, given to {cls.name} as --config-file (the only one). "
                       "Its [DEFAULT] transport_url names the brokers; the depth-10 monitor checks the "
                       "service is connected to one of them. It should list every broker of the cluster "
                       "(rabbit://nova:PASSWORD@ctl1:5672,nova:PASSWORD@ctl2:5672,nova:PASSWORD@ctl3:5672/"
                       "nova), with [oslo_messaging_rabbit] rabbit_quorum_queue = true."),
        Param("user", shortdesc="User the service runs as", default=cls.default_user,
              longdesc=f"{cls.name} is started as this user (never root: the start refuses it)."),
        Param("log_file", shortdesc="The service's log file",
              longdesc="Given to the service as --log-file (overriding the configuration's log_file) and "
                       "receiving its standard output and error: one log of its own, opened as user, never "
                       "through a symbolic link.",
              default=f"/var/log/nova/{cls.name}.log", check=_check_file_path),
    )


def _check_file_path(value: object) -> None:
    text = str(value)
    if not text.startswith("/") or not text.isprintable():
        raise ValueError(f"must be an absolute path of printable characters, not {text!r}")


LONGDESC = (
    "Runs {name} as user nova (never root) with --config-file and a log file of its own, in a session of "
    "its own; stop ends only what it started (TERM, a wait, KILL). Start returns once the service holds "
    "an ESTABLISHED TCP connection to one of the brokers of [DEFAULT] transport_url of its configuration "
    "(read at start, its password never logged): that is where its work arrives. Checks by depth: 0, the "
    "process we started is alive and not frozen; 10, it is connected to a broker of transport_url. Not "
    "connected is reported as degraded (190), not as a failure: oslo.messaging reconnects by itself, to "
    "the same broker or the next of the list, and when the brokers are down a restart would not help, "
    "it would only drop the reconnection under way and the work in flight. Meant as a clone on every "
    "controller, with transport_url listing every broker and rabbit_quorum_queue = true.")
