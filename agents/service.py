"""The shared base of the OpenStack API agents (keystone, glance-api, nova-api, ...).

An agent for one API service is a subclass that states facts, not code:
its default user, configuration file, port, version document, the ways
Debian runs it (uwsgi, its eventlet binary, its WSGI script's own server),
the options that make the eventlet binary listen where the agent looks, and
which dependencies its deep check looks at.  The parameters, their
meta-data, the launch command lines and the health checks all derive from
those facts here.

Health checks by ``OCF_CHECK_LEVEL``:

* 0: the process we started (pid and start time) is alive, not frozen, and
  owns a listening socket on its port (read from ``/proc``, no connection);
* 10: ``GET`` of the version document answers 200 or 300;
* 20: real work with a token (keystone issues one, glance lists images, nova
  lists flavors) and the dependencies (database, RabbitMQ, keystone).  A
  failing dependency is reported as degraded (190), never as a failure of
  the API itself: a database failover must not restart every API everywhere.

Credentials for depth 20 come from a root-only file (``credentials``), never
from the CIB or a command line.
"""

from __future__ import annotations

import os

from agents.ocf.actions import Advert, action
from agents.ocf.codes import OCF, OCFError
from agents.ocf.daemon import Degraded as _Degraded
from agents.ocf.daemon_agent import HOST_RECORD, CredentialsFile, TCPDaemonAgent
from agents.ocf.params import Param
from agents.ocf.proc import User

TYPE_CHECKING = False
if TYPE_CHECKING:
    import configparser
    from collections.abc import Iterable

    from agents.http import Response
    from agents.ocf.deadline import Deadline
    from agents.ocf.proc import Identity

LAUNCHERS = ("uwsgi", "eventlet", "wsgi-script", "command")
HEALTHY_VERSION_STATUS = frozenset((200, 300))
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEPENDENCY_CAP_S = 5.0
# Kept back from the deep check's API call for the dependency checks: 1.5 s each (a healthy
# database or broker answers in milliseconds), at most 30 % of the budget. The API call gets the rest.
DEPENDENCY_RESERVE_S = 1.5
DEPENDENCY_SHARE_MAX = 0.3
DEFAULT_PORTS = {"http": 80, "https": 443}
# Before instances stop, how long their requests under way may take to finish (a longer one is cut).
DRAIN_WAIT_S = 20.0
VERSION_ASK_CAP_S = 2.0
# SIGTERM stops uWSGI gracefully: a worker finishes the request it serves, then exits (an idle one at
# once), and the master follows its workers. uWSGI 2.0's own TERM is a brutal reload, and --die-on-term
# (kill_them_all) cuts the requests in flight. The daemon base signals the whole session, so the
# workers get TERM too: each makes it a graceful kill once it accepts requests. The stop's deadline
# still ends with KILL (uWSGI's own limit, --worker-reload-mercy, is 60 s).
# A worker's graceful exit is exit() inside its signal handler: without --skip-atexit-teardown that
# tears the interpreter down there (Py_Finalize), which crashes in greenlet's thread state (keystone,
# nova-api, the dashboard: SIGSEGV in 20 of 25 stops, heap corruption when the master's HUP lands
# in it) and once in a while leaves the worker hung until the master's 60 s mercy (stops of 58-62 s).
GRACEFUL_UWSGI = ("--hook-master-start", "unix_signal:15 gracefully_kill_them_all",
                  "--hook-accepting", "unix_signal:15 gracefully_kill")
# Parameters of the retired ocf:openstack:* shell agents that no longer mean anything.
IGNORED_LEGACY = {
    "pid": "process identity is kept by the agent (pid and start time), not in a pid file",
    "client_binary": "health checks speak HTTP themselves, no client program is run",
    "amqp_server_port": "the broker is read from transport_url in the service's configuration",
}


Degraded = _Degraded  # agents.ocf.daemon's: the agents of services import it from here


class ApiService(CredentialsFile, TCPDaemonAgent):
    """Subclasses set the facts below; ``params`` is derived from them."""

    service = ""                      # config/log directory name: keystone, glance, nova
    default_user = ""
    default_config = ""
    default_port = 0
    default_launcher = "uwsgi"
    launchers: dict[str, str] = {}    # launcher -> default binary
    config_env: dict[str, str] = {}   # WSGI entry points' environment: {config}, {config_dir}, {config_name}
    listen_options: tuple[str, str] = ("bind_host", "bind_port")  # eventlet: [DEFAULT] host/port options
    workers_option = "workers"        # eventlet: [DEFAULT] option for the number of workers
    # eventlet: (section, option) naming the paste file, when the service derives it from the last
    # --config-file (glance does): the override points it back beside the service's configuration.
    paste_option: tuple[str, str] | None = None
    # eventlet: more --config-file after the configuration (neutron's ML2 ml2_conf.ini); not None
    # declares the parameter plugin_config with these files as its default.
    plugin_configs: tuple[str, ...] | None = None
    version_path = "/"
    database_options: tuple[tuple[str, str], ...] = (("database", "connection"),)
    uses_rabbit = False
    issues_tokens = False             # keystone: the deep check is issuing a token here
    work_path = ""                    # what the deep check GETs with a token
    legacy_params: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.service and "params" not in vars(cls):
            cls.params = build_params(cls)

    # Actions ---------------------------------------------------------------

    @action("start", timeout=60)
    def start(self) -> OCF:
        return self.start_daemon()

    @action("stop", timeout=30)
    def stop(self) -> OCF:
        self.daemon.stop(self.deadline)
        self.state.remove("listen.conf")
        self.state.remove(HOST_RECORD)
        return OCF.SUCCESS

    @action("monitor", Advert(timeout=20, interval=10), Advert(timeout=20, interval=30, depth=10),
            Advert(timeout=40, interval=60, depth=20))
    def monitor(self) -> OCF:
        return self.monitor_daemon()

    @action("notify", timeout=30)
    def notify(self) -> OCF:
        """With ``haproxy_resource``: before instances stop, the local HAProxy drains them (no new
        requests) and lets their requests under way finish (at most DRAIN_WAIT_S; not those of an
        instance failing its health checks: hung or dead, they never will); once they started, it puts
        them back. Never fails: a front that cannot be told is left to its health checks."""
        proxy = self.config.text("haproxy_resource")
        note = self.env.notify()
        if proxy and note.type == "pre" and note.operation == "stop":
            self.set_front(proxy, note.unames("stop"), "drain")
        elif proxy and note.type == "post" and note.operation == "start":
            self.set_front(proxy, note.unames("start"), "ready")
        return OCF.SUCCESS

    def set_front(self, proxy: str, servers: list[str], state: str) -> None:
        from agents.haproxy import Front, master_socket

        socket_path = master_socket(self.env.rsctmp, proxy)
        if not servers or not os.path.exists(socket_path):
            return
        front = Front(self.deadline, socket_path, self.env.instance)
        try:
            problems = front.set_state(servers, state)
            left = front.wait_idle(servers, DRAIN_WAIT_S) if state == "drain" else {}
        except OCFError as exc:
            self.log.warning(f"HAProxy {proxy} was not told to set {', '.join(servers)} {state}: "
                             f"{exc.reason}")
            return
        for problem in problems:
            self.log.warning(f"HAProxy {proxy} refused to set {state}: {problem}")
        busy = f"; still under way: {left}" if left else ""
        self.log.info(f"HAProxy {proxy}: {self.env.instance} on {', '.join(servers)} set {state}{busy}")

    @action("reload-agent", timeout=20)
    def reload_agent(self) -> OCF:
        # The reloadable parameters (the deep check's credentials) are read by each monitor anew;
        # the running service is left alone.
        return OCF.SUCCESS

    # Hooks -----------------------------------------------------------------

    def validate(self) -> Iterable[OCFError]:
        problems: list[OCFError] = []
        launcher = self.launcher
        if launcher != "command" and launcher not in self.launchers:
            supported = ", ".join([*self.launchers, "command"])
            problems.append(OCFError(OCF.ERR_CONFIGURED, f"launcher {launcher} is not supported by "
                                     f"{self.name} (use one of {supported})"))
            return problems
        for program in self.programs():
            if not os.access(program, os.X_OK):
                problems.append(OCFError(OCF.ERR_INSTALLED, f"{program} is not installed or not executable"))
        config = self.config.text("config")
        missing = [OCFError(OCF.ERR_INSTALLED, f"plugin configuration file {path} does not exist")
                   for path in self.plugin_config_files() if not os.path.isfile(path)]
        problems += missing
        if not os.path.isfile(config):
            problems.append(OCFError(OCF.ERR_INSTALLED, f"configuration file {config} does not exist"))
        elif not missing and self.env.action in ("start", "validate-all"):
            try:
                self.service_options()
            except ConfigBroken as exc:
                problems.append(exc)
        if self.env.action in ("start", "validate-all"):
            problems += self.credentials_problems()  # node-local: ERR_INSTALLED
            # Not on the monitor path: a monitor only looks at the process recorded at start.
            try:
                self.user()
            except OCFError as exc:
                problems.append(exc)
            try:
                self.extra_args()
            except OCFError as exc:
                problems.append(exc)
            problems += self.host_problems()  # node-local: ERR_INSTALLED
        self.warn_legacy()
        return problems

    # Derived facts ------------------------------------------------------------

    @property
    def launcher(self) -> str:
        return self.config.text("launcher")

    @property
    def binary(self) -> str:
        return self.config.text("binary") or self.launchers.get(self.launcher, "")

    def programs(self) -> list[str]:
        binary = self.binary
        if not binary:
            return ["(no binary set)"]
        return [self.config.text("uwsgi_binary"), binary] if self.launcher == "uwsgi" else [binary]

    def plugin_config_files(self) -> list[str]:
        return self.config.text("plugin_config").split() if self.plugin_configs is not None else []

    def user(self) -> User:
        return User.lookup(self.config.text("user"), self.config.text("group") or None)

    def extra_args(self) -> list[str]:
        import shlex

        try:
            return shlex.split(self.config.text("extra_args"))
        except ValueError as exc:
            raise OCFError(OCF.ERR_CONFIGURED, f"extra_args cannot be split: {exc}") from None

    def warn_legacy(self) -> None:
        for name in self.config.given:
            if name in IGNORED_LEGACY:
                self.log.warning(f"parameter {name} is obsolete and ignored: {IGNORED_LEGACY[name]}")
        if "os_password" in self.config.given:
            self.log.warning("parameter os_password keeps a password in the CIB, readable by every "
                             "cluster node and in every CIB backup: move it to a credentials file")

    # Start -------------------------------------------------------------------

    def launch(self) -> Identity:
        user = self.user()
        argv = self.command_line()
        home = user.home if os.path.isdir(user.home) else "/"
        env = {"PATH": SERVICE_PATH, "HOME": home, "LANG": "C.UTF-8", "USER": user.name,
               "LOGNAME": user.name, **self.entry_point_env()}
        log_path = self.console_log()
        self.log.info(f"starting {self.name} on {self.endpoint}: {' '.join(argv)}")
        return self.daemon.spawn(argv, user=user, log_path=log_path, env=env, cwd=home,
                                 more_logs=[self.service_log()])

    def command_line(self) -> list[str]:
        extra = self.extra_args()
        binary = self.binary
        if self.launcher == "uwsgi":
            return [self.config.text("uwsgi_binary"), "--plugins", "python3", "--http-socket", self.endpoint,
                    "--wsgi-file", binary, "--master", *GRACEFUL_UWSGI, "--skip-atexit",
                    "--skip-atexit-teardown", "--lazy-apps", "--enable-threads", "--need-app", "--no-orphans",
                    "--thunder-lock",
                    "--processes", str(self.config.integer("workers")), "--buffer-size", "65535",
                    # --http-socket closes the connection after every answer: say so (HTTP/1.1 §9.6),
                    # or a keep-alive client sends its next request on a closed connection.
                    "--add-header", "Connection: close", *extra]
        if self.launcher == "wsgi-script":
            return [binary, "--host", self.host, "--port", str(self.port), *extra]
        if self.launcher == "eventlet":
            plugins = [arg for path in self.plugin_config_files() for arg in ("--config-file", path)]
            return [binary, "--config-file", self.config.text("config"), *plugins, "--config-file",
                    self.listen_override(), *extra]
        return [binary, *extra]

    def entry_point_env(self) -> dict[str, str]:
        config = self.config.text("config")
        values = {"config": config, "config_dir": os.path.dirname(config),
                  "config_name": os.path.basename(config)}
        return {name: template.format(**values) for name, template in self.config_env.items()}

    def listen_override(self) -> str:
        """A second configuration file so that the eventlet server listens where we look."""
        host_option, port_option = self.listen_options
        lines = ["[DEFAULT]", f"{host_option} = {self.host}", f"{port_option} = {self.port}"]
        if "workers" in self.config.given:
            lines.append(f"{self.workers_option} = {self.config.integer('workers')}")
        if self.paste_option is not None and not self.service_options().has_option(*self.paste_option):
            config = self.config.text("config")
            stem = config[:-5] if config.endswith(".conf") else config
            lines += [f"[{self.paste_option[0]}]", f"{self.paste_option[1]} = {stem}-paste.ini"]
        self.state.write("listen.conf", "\n".join(lines) + "\n", mode=0o644)
        os.chmod(self.state.path, 0o711)  # noqa: S103 - the service user reads this one file
        return self.state.file("listen.conf")

    def console_log(self) -> str:
        path = self.config.text("log_file")
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise OCFError(OCF.ERR_INSTALLED, f"directory {directory} of log_file does not exist")
        return path

    def answering(self, identity: Identity) -> str:
        from agents.http import Unreachable, request

        try:
            response = request(self.deadline, self.host, self.port, self.config.text("version_path"),
                               cap=VERSION_ASK_CAP_S)
        except Unreachable as exc:
            return exc.reason
        if response.status in HEALTHY_VERSION_STATUS:
            return ""
        return f"version document answered {response.status}"

    def service_log(self) -> str:
        options = self.service_options()
        log_file = options.get("DEFAULT", "log_file", fallback="")
        log_dir = options.get("DEFAULT", "log_dir", fallback="")
        return os.path.join(log_dir, log_file) if log_file else ""

    # Monitor -------------------------------------------------------------------

    def check_version(self) -> None:
        from agents.http import Unreachable, request

        path = self.config.text("version_path")
        try:
            response = request(self.deadline, self.host, self.port, path)
        except Unreachable as exc:
            raise OCFError(OCF.ERR_GENERIC, f"version document: {exc.reason}") from None
        if response.status not in HEALTHY_VERSION_STATUS:
            raise OCFError(OCF.ERR_GENERIC, f"GET {path} answered {response.status}")

    def deep_check(self) -> None:
        """Real work, then the dependencies, each in its own share of the budget.

        A hung API must not eat the time of the dependency checks: they would then report a
        healthy database as unreachable, and the hung API would be degraded instead of restarted.
        """
        from agents.ocf.codes import DeadlineExceeded
        from agents.ocf.deadline import Deadline

        failure = ""
        try:
            self.real_work(Deadline(self.deadline.remaining() - self.dependency_reserve()))
        except Degraded:
            raise
        except DeadlineExceeded as exc:
            failure = f"{self.name} did not finish the deep check in time ({exc.reason})"
        except OCFError as exc:
            failure = exc.reason
        problems = self.dependency_problems()
        if problems:
            raise Degraded("; ".join([*([failure] if failure else []), *problems]))
        if failure:
            raise OCFError(OCF.ERR_GENERIC, failure)

    def dependency_reserve(self) -> float:
        checks = len(self.database_options) + int(self.uses_rabbit)
        return min(DEPENDENCY_RESERVE_S * checks, self.deadline.remaining() * DEPENDENCY_SHARE_MAX)

    def real_work(self, deadline: Deadline) -> None:
        credentials = self.credentials()
        if self.issues_tokens:
            issue_token(deadline, credentials, self.host, self.port)
            return
        token = self.foreign_token(credentials, deadline)
        response = self.ask(self.work_path, {"X-Auth-Token": token}, deadline)
        if response.status == 401:
            # keystone has just issued this token: the service could not validate it with keystone,
            # a dependency's problem (restarting the service would not help).
            raise Degraded(f"GET {self.work_path} answered 401 to a token keystone had just issued")
        if response.status != 200:
            raise OCFError(OCF.ERR_GENERIC, f"GET {self.work_path} answered {response.status}")

    def foreign_token(self, credentials: dict[str, str], deadline: Deadline) -> str:
        from urllib.parse import urlsplit

        url = urlsplit(credentials["auth_url"])
        problem = self.auth_url_problem(credentials["auth_url"])
        if problem:
            raise Degraded(problem)
        try:
            return issue_token(deadline, credentials, url.hostname or "",
                               url.port or DEFAULT_PORTS[url.scheme], prefix=url.path.rstrip("/"),
                               tls=url.scheme == "https")
        except OCFError as exc:
            raise Degraded(f"keystone: {exc.reason}") from None

    def auth_url_problem(self, auth_url: str) -> str:
        """Why the deep check may not send its password to ``auth_url``; empty when it may."""
        from urllib.parse import urlsplit

        from agents.http import is_loopback

        try:
            url = urlsplit(auth_url)
            url.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            return "auth_url of the credentials is not a URL"
        if url.scheme not in DEFAULT_PORTS or not url.hostname:
            return "auth_url of the credentials must be an http:// or https:// URL"
        plain_allowed = self.config.boolean("allow_plain_http")
        if url.scheme == "http" and not is_loopback(url.hostname) and not plain_allowed:
            return (f"auth_url {url.scheme}://{url.hostname} would carry the password in clear over the "
                    "network: use https, or set allow_plain_http=true for a trusted network")
        return ""

    def ask(self, path: str, headers: dict[str, str], deadline: Deadline) -> Response:
        from agents.http import Unreachable, request

        try:
            return request(deadline, self.host, self.port, path, headers=headers)
        except Unreachable as exc:
            raise OCFError(OCF.ERR_GENERIC, f"GET {path}: {exc.reason}") from None

    def dependency_problems(self) -> list[str]:
        from agents import dependencies

        try:
            options = self.service_options()
        except ConfigBroken as exc:
            # The running service read its configuration at start; only the next start would fail.
            return [exc.reason]
        checks = [(dependencies.database_problems, url) for url in
                  (options.get(section, option, fallback="") for section, option in self.database_options)
                  if url]
        transport_url = options.get("DEFAULT", "transport_url", fallback="") if self.uses_rabbit else ""
        if transport_url:
            checks.append((dependencies.rabbit_problems, transport_url))
        problems = []
        for done, (check, url) in enumerate(checks):
            # An equal share of what is left for each check still to come: a slow one cannot starve the next.
            cap = min(DEPENDENCY_CAP_S, self.deadline.remaining() / (len(checks) - done))
            problems += check(url, self.deadline, cap, self.log)
        return problems

    def service_options(self) -> configparser.ConfigParser:
        import configparser

        parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\x00none")
        # Read as the service reads them: the configuration, then its plugins' files over it.
        for config in [self.config.text("config"), *self.plugin_config_files()]:
            try:
                parser.read(config, encoding="utf-8")
            except configparser.Error as exc:
                # Where, never what: the offending line may hold a password (the reason lands in the CIB).
                raise ConfigBroken(f"cannot parse {config}{_where(exc)} ({type(exc).__name__})") from None
            except UnicodeDecodeError as exc:
                raise ConfigBroken(f"cannot parse {config}: not UTF-8 (byte {exc.start})") from None
        return parser

    # Credentials -------------------------------------------------------------

    def fallback_credentials(self) -> dict[str, str]:
        if {"os_username", "os_password"} <= self.config.given:  # legacy parameters, when declared
            found = {"username": self.config.text("os_username"),
                     "password": self.config.text("os_password"),
                     "project_name": self.config.text("os_tenant_name") or "admin"}
            if "os_auth_url" in self.config.given:
                found["auth_url"] = self.config.text("os_auth_url")
            return found
        return super().fallback_credentials()

    def required_credentials(self) -> tuple[str, ...]:
        return ("username", "password") if self.issues_tokens else ("username", "password", "auth_url")


class ConfigBroken(OCFError):
    """The service's configuration file cannot be parsed on this node.

    ERR_INSTALLED, not ERR_CONFIGURED: the file is this node's (another node's copy may be
    fine), so Pacemaker should try elsewhere rather than stop the resource everywhere.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(OCF.ERR_INSTALLED, reason)


def _where(exc: configparser.Error) -> str:
    """`` at line N`` (or lines N, M) of a configparser error, without the lines themselves."""
    lines = [number for number, _text in getattr(exc, "errors", [])] or \
        [number for number in [getattr(exc, "lineno", None)] if number]
    if not lines:
        return ""
    return f" at line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:5]))}"


def issue_token(deadline: Deadline, credentials: dict[str, str], host: str, port: int, *,
                prefix: str = "/v3", tls: bool = False) -> str:
    """POST /v3/auth/tokens with a password; the token, or an OCFError saying why not."""
    import json

    from agents.http import Unreachable, request

    user_domain = credentials.get("user_domain_name", "Default")
    project_domain = credentials.get("project_domain_name", "Default")
    auth: dict[str, object] = {"identity": {"methods": ["password"], "password": {"user": {
        "name": credentials["username"], "domain": {"name": user_domain},
        "password": credentials["password"]}}}}
    if credentials.get("project_name"):
        auth["scope"] = {"project": {"name": credentials["project_name"], "domain": {"name": project_domain}}}
    if not prefix.endswith("/v3"):
        prefix += "/v3"
    path = prefix + "/auth/tokens"
    body = json.dumps({"auth": auth}).encode("utf-8")
    try:
        response = request(deadline, host, port, path, method="POST", body=body, tls=tls)
    except Unreachable as exc:
        raise OCFError(OCF.ERR_GENERIC, f"token request: {exc.reason}") from None
    if response.status in (401, 403):
        # The service answered correctly; our credentials are wrong: not a reason to restart it.
        raise Degraded(f"credentials for {credentials['username']} were rejected ({response.status})")
    token = response.headers.get("x-subject-token", "")
    if response.status != 201 or not token:
        raise OCFError(OCF.ERR_GENERIC, f"token request answered {response.status}")
    return token


# Parameters, derived from a subclass's facts ------------------------------------

def build_params(cls: type[ApiService]) -> tuple[Param, ...]:
    log_dir = f"/var/log/{cls.service}"
    launch_defaults = ", ".join(f"{launcher}: {binary}" for launcher, binary in cls.launchers.items())
    params = [
        Param("config", shortdesc="Configuration file of the service", default=cls.default_config,
              check=_check_file_path,
              longdesc=f"The {cls.name} configuration file. Its database and broker settings are what "
                       "the depth-20 monitor checks."),
        Param("user", shortdesc="User the service runs as", default=cls.default_user),
        Param("group", shortdesc="Group the service runs as",
              longdesc="Group the service runs as; empty means the user's primary group.", default=""),
        Param("launcher", "select", choices=LAUNCHERS, default=cls.default_launcher,
              shortdesc="How the service is run",
              longdesc="uwsgi: the WSGI entry point under uWSGI, as Debian runs it; eventlet: the "
                       "service's own eventlet server (host and port are passed in an extra "
                       "--config-file); wsgi-script: the WSGI script's built-in server (--host, --port); "
                       "command: binary and extra_args exactly as given. Supported here: "
                       f"{', '.join(cls.launchers)}, command."),
        Param("binary", shortdesc="The service program or WSGI entry point", check=_check_binary,
              longdesc=f"The service program (the WSGI file for uwsgi). Empty means the default for the "
                       f"launcher ({launch_defaults}).", default=""),
        Param("uwsgi_binary", shortdesc="uWSGI program (launcher uwsgi)", default="/usr/bin/uwsgi",
              check=_check_file_path),
        Param("workers", "integer", minimum=1, maximum=256, default=2,
              shortdesc="Worker processes",
              longdesc="uWSGI processes; for eventlet, the service's worker option when set explicitly."),
        Param("host", shortdesc="Address the service listens on (and is checked on)",
              longdesc="An IPv4 or IPv6 address (0.0.0.0 or :: for all), a host name, or a network in CIDR "
                       "form (10.213.0.0/24, 2001:db8::/64): the service then listens on this node's own "
                       "address in that network (the same parameters for every clone instance; HAProxy "
                       "binds the VIP at the same port). Several addresses of the node in the network: "
                       "primary before secondary (a VIP added into the network is secondary), not "
                       "deprecated (IPv6 preferred_lft 0) before deprecated, a network-length prefix "
                       "before a /32 or /128, then the lowest; the choice is made at start and logged. "
                       "None: the start fails with 5 (not installed), this node cannot run it.",
              default="0.0.0.0", check=_check_host),  # noqa: S104 - the services' own default
        Param("port", "integer", minimum=1, maximum=65535, default=cls.default_port,
              shortdesc="TCP port the service listens on (and is checked on)"),
        Param("version_path", shortdesc="URL path of the version document checked at depth 10",
              longdesc="Starts with /; printable ASCII without spaces (percent-encode anything else).",
              check=_check_url_path,
              default=cls.version_path),
        Param("extra_args", shortdesc="More command-line arguments",
              longdesc="Appended to the command line; split like a POSIX shell would, but never run by one.",
              default=""),
        Param("log_file", shortdesc="File receiving the service's standard output and error",
              check=_check_file_path,
              default=f"{log_dir}/{cls.name}-ocf.log"),
        Param("credentials", shortdesc="Root-only file with the deep-check credentials",
              longdesc="An ini-style file, mode 0600, owned by root, with a section (credentials_section) "
                       "holding auth_url, username, password, project_name, user_domain_name and "
                       "project_domain_name. Used by the depth-20 monitor only; it keeps the password "
                       "out of the CIB and off every command line. Reloadable: it shapes only the "
                       "monitor.", default="", reloadable=True),
        Param("credentials_section", shortdesc="Section of the credentials file", default="credentials",
              reloadable=True),
        Param("haproxy_resource", default="", reloadable=True, check=_check_resource_name,
              shortdesc="The HAProxy resource (this project's haproxy agent) in front of this API",
              longdesc="With notify=true on this clone: before instances of this API stop, the HAProxy of "
                       "every node (this resource's master CLI, on the same node) drains them (no new "
                       "requests) and waits up to 20 s for their requests under way, unless they fail "
                       "their health checks; once they started, it puts them back. The "
                       "backend is named after this resource and its servers after the nodes, as crmtool "
                       "generates them. Empty: no such notifications are acted on (health checks only)."),
        Param("allow_plain_http", "boolean", default=False, reloadable=True,
              shortdesc="Let the deep check send its password over plain http",
              longdesc="The depth-20 check of a service that asks keystone for a token sends the "
                       "credentials' password to auth_url. By default it does so only over https "
                       "(certificate checked against the system's CA store) or over plain http to a "
                       "loopback address. true also allows plain http to another host: only for a "
                       "network where nobody else can listen."),
    ]
    if cls.plugin_configs is not None:
        params.insert(1, Param(
            "plugin_config", shortdesc="The plugins' configuration files",
            longdesc="Absolute paths, separated by spaces, of more configuration files read after config "
                     "(each a --config-file of the eventlet launcher, in this order), such as the ML2 "
                     "plugin's; empty for none. A missing or unparsable file is handled as config is.",
            default=" ".join(cls.plugin_configs),
            check=_check_file_list))
    params += legacy_params(cls)
    return tuple(params)


def _check_file_path(value: object) -> None:
    text = str(value)
    if not text.startswith("/") or not text.isprintable():
        raise ValueError(f"must be an absolute path of printable characters, not {text!r}")


def _check_resource_name(value: object) -> None:
    import re

    if value and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}", str(value)):
        raise ValueError(f"must be a resource id (letters, digits, '_', '.', ':', '-'), not {value!r}")


def _check_file_list(value: object) -> None:
    for path in str(value).split():
        _check_file_path(path)


def _check_binary(value: object) -> None:
    if value:
        _check_file_path(value)


def _check_host(value: object) -> None:
    """An address, a network (CIDR) or a DNS name: it is written into configuration files and
    command lines."""
    from agents.ocf.daemon_agent import check_listen_host

    check_listen_host(value, names=True)


def _check_url_path(value: object) -> None:
    from agents.http import check_path

    check_path(str(value))


def legacy_params(cls: type[ApiService]) -> list[Param]:
    """The retired ocf:openstack:* agents' names, so that an existing CIB keeps working."""
    legacy = {
        "additional_parameters": Param("additional_parameters", deprecated_for="extra_args",
                                       shortdesc="Additional arguments (deprecated)"),
        "os_username": Param("os_username", shortdesc="User for the deep check (deprecated)",
                             longdesc="Deprecated: put username in the credentials file."),
        "os_password": Param("os_password", secret=True, shortdesc="Password for the deep check (deprecated)",
                             longdesc="Deprecated and unsafe: a password in the CIB is readable on every "
                                      "node and in every CIB backup. Put it in the credentials file."),
        "os_tenant_name": Param("os_tenant_name", shortdesc="Project for the deep check (deprecated)",
                                longdesc="Deprecated: put project_name in the credentials file."),
        "os_auth_url": Param("os_auth_url", shortdesc="Keystone URL for the deep check (deprecated)",
                             longdesc="Deprecated: put auth_url in the credentials file."),
        "keystone_get_token_url": Param("keystone_get_token_url", deprecated_for="os_auth_url",
                                        shortdesc="Keystone URL for the deep check (deprecated)"),
    }
    for name, why in IGNORED_LEGACY.items():
        legacy[name] = Param(name, shortdesc=f"Ignored (deprecated): {why}")
    return [legacy[name] for name in cls.legacy_params]


LEGACY_COMMON = ("pid", "client_binary", "additional_parameters", "os_username", "os_password",
                 "os_tenant_name", "os_auth_url")
