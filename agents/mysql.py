"""MariaDB/MySQL whose datadir lives on a replicated block device.

The server binary (``mariadbd``/``mysqld``) runs directly, as its own user,
in a session of its own: no ``mysqld_safe`` that would restart it behind the
cluster's back.  The agent knows the server by pid and start time, and
cross-checks it against the socket: the kernel tells who listens there
(``SO_PEERCRED``), so a stale socket or a stranger's server is never taken
for ours.

Two servers on one datadir destroy it, so ``start`` refuses when the datadir
is not on the configured device (the filesystem is not mounted, or a
Secondary's device could not be mounted), when another server process works
in that datadir, or when InnoDB's lock on ``ibdata1`` is held (which also
catches a server in another PID namespace).

Credentials for the deeper checks are read from a root-only option file
(``[client]`` ``user``/``password``); they never appear on a command line or
in the CIB.
"""

from __future__ import annotations

import os

from agents.ocf.actions import Advert, action
from agents.ocf.codes import OCF, DeadlineExceeded, OCFError
from agents.ocf.daemon_agent import DaemonAgent
from agents.ocf.params import Param
from agents.ocf.proc import Identity, read_stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Iterable, Iterator, Sequence
    from typing import Any

SERVER_NAMES = frozenset(("mariadbd", "mysqld"))
# mysqld_safe is a shell loop that restarts the server on its own; the
# cluster must be the only one doing that, so the real server is run instead.
WRAPPER_NAMES = frozenset(("mysqld_safe", "safe_mysqld", "mariadbd-safe"))
SERVER_CANDIDATES = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld")
STATE_FILE = "server"
HANDSHAKE_V10 = 10
ERR_PACKET = 0xFF
ER_CON_COUNT_ERROR = 1040  # too many connections: the server is alive, only full
ER_NO_SUCH_TABLE = 1146
ER_BAD_DB_ERROR = 1049
READY_POLL_S = 0.005
SERVER_ENV_KEEP = ("TZ", "LANG", "LC_ALL")
IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")


def _absolute(value: object) -> None:
    if not str(value).startswith("/"):
        raise ValueError(f"must be an absolute path, not {value!r}")


def _table_name(value: object, need_database: bool) -> None:
    parts = str(value).split(".")
    if len(parts) > 2 or (need_database and len(parts) != 2) or not all(
            part and set(part) <= IDENTIFIER_CHARS for part in parts):
        form = "database.table" if need_database else "[database.]table"
        raise ValueError(f"must be a table name of the form {form} (letters, digits, _ and $), not {value!r}")


def _heartbeat_table(value: object) -> None:
    _table_name(value, need_database=True)


def _test_table(value: object) -> None:
    _table_name(value, need_database=False)


def _quoted(table: str) -> str:
    return ".".join(f"`{part}`" for part in table.split("."))


class Mount:
    __slots__ = ("major", "minor", "options", "point", "source")

    def __init__(self, point: str, major: int, minor: int, source: str, options: set[str]) -> None:
        self.point = point
        self.major = major
        self.minor = minor
        self.source = source
        self.options = options


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts(path: str = "/proc/self/mountinfo") -> Iterator[Mount]:
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            fields = line.split()
            sep = fields.index("-")
            major, minor = fields[2].split(":")
            yield Mount(_unescape(fields[4]), int(major), int(minor), _unescape(fields[sep + 2]),
                        set(fields[5].split(",")))


def mount_of(path: str) -> Mount:
    """The mount a path lives on: the longest mount point above it, the last one mounted there."""
    real = os.path.realpath(path)
    best: Mount | None = None
    for mount in mounts():
        point = mount.point.rstrip("/") or "/"
        inside = real == point or real.startswith(point + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = mount
    if best is None:
        raise OCFError(OCF.ERR_GENERIC, f"no mount found for {path}")
    return best


def innodb_lock_held(datadir: str) -> bool:
    """True when some process holds InnoDB's lock on ``ibdata1`` (any PID namespace).

    A shared lock is tried and released at once; the file is opened read-only.
    """
    import fcntl

    try:
        fd = os.open(os.path.join(datadir, "ibdata1"), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def servers_in(datadir: str) -> list[int]:
    """Live server processes whose working directory is ``datadir`` (the server chdirs there)."""
    from agents.ocf.proc import all_stats

    real = os.path.realpath(datadir)
    found = []
    for stat in all_stats():
        if stat.alive and stat.comm in SERVER_NAMES:
            try:
                if os.path.realpath(f"/proc/{stat.pid}/cwd") == real:
                    found.append(stat.pid)
            except OSError:
                continue
    return found


class Greeting:
    __slots__ = ("error", "peer_pid", "version")

    def __init__(self, peer_pid: int, version: str, error: tuple[int, str] | None) -> None:
        self.peer_pid = peer_pid
        self.version = version
        self.error = error


def _recv_exactly(sock: _socket.socket, count: int, until: float) -> bytes:
    """``count`` bytes, all of them by the monotonic time ``until`` (TimeoutError otherwise)."""
    import time

    data = b""
    while len(data) < count:
        left = until - time.monotonic()
        if left <= 0:
            raise TimeoutError("the greeting did not arrive in time")
        sock.settimeout(left)
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionResetError("connection closed before the greeting")
        data += chunk
    return data


def read_packet(sock: _socket.socket, until: float) -> bytes:
    """The payload of the next protocol packet, whole by the monotonic time ``until``.

    A server that trickles its greeting byte by byte cannot stretch the wait past it.
    """
    header = _recv_exactly(sock, 4, until)
    return _recv_exactly(sock, int.from_bytes(header[:3], "little"), until)


def read_greeting(path: str, timeout: float) -> Greeting:
    """Connect to the server's UNIX socket and read its initial handshake packet.

    Raises OSError (``TimeoutError`` when nothing arrives in time).  Uses the
    C ``_socket`` module: ``socket`` adds 2-3 ms of enum set-up to every monitor.
    """
    import _socket
    import sys
    import time

    until = time.monotonic() + timeout
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(max(timeout, 0.001))
        sock.connect(path)
        cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # struct ucred: pid, uid, gid
        peer_pid = int.from_bytes(cred[:4], sys.byteorder, signed=True)
        payload = read_packet(sock, until)
    finally:
        sock.close()
    if payload[0] == ERR_PACKET:
        code = int.from_bytes(payload[1:3], "little")
        return Greeting(peer_pid, "", (code, payload[3:].decode("utf-8", "replace").lstrip("#")))
    if payload[0] != HANDSHAKE_V10:
        raise ConnectionError(f"unexpected handshake protocol {payload[0]}")
    end = payload.find(b"\0", 1)
    return Greeting(peer_pid, payload[1:end].decode("ascii", "replace"), None)


def read_option_file(path: str, groups: Sequence[str] = ("client",)) -> dict[str, str]:
    """``key = value`` pairs of the given groups of a root-only MySQL option file (quotes removed)."""
    from agents.ocf.daemon import read_credentials_text

    values: dict[str, str] = {}
    current = ""
    for raw in read_credentials_text(path).splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            continue
        if current not in groups or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.replace("_", "-")] = value
    return values


def _path(name: str, default: str, shortdesc: str, longdesc: str = "", unique: bool = False) -> Param:
    return Param(name, shortdesc=shortdesc, longdesc=longdesc, default=default, unique=unique,
                 check=_absolute)


class MySQL(DaemonAgent):
    name = "mysql"
    version = "1.0"
    shortdesc = "MariaDB/MySQL server on a replicated datadir"
    longdesc = (
        "Runs mariadbd (or mysqld) directly, as its own user, with the given option file, datadir, "
        "socket and pid file. start refuses when the datadir is not mounted from the expected device "
        "or another server holds it, and waits until the server answers (crash recovery included). "
        "monitor depth 0 checks the process identity and the server's greeting on its socket; "
        "depth 10 runs SELECT 1; depth 20 writes and reads back a heartbeat row. Credentials come "
        "from a root-only option file, never from the CIB. Parameter names of ocf:heartbeat:mysql "
        "are accepted where they mean the same."
    )
    params = (
        _path("binary", SERVER_CANDIDATES[0], "Server binary",
              "The server executable (mariadbd or mysqld). A mysqld_safe wrapper given here (as "
              "ocf:heartbeat:mysql expects) is replaced by the server binary installed beside it."),
        Param("client_binary", shortdesc="Ignored (compatibility)",
              longdesc="Accepted so that a resource written for ocf:heartbeat:mysql keeps working; "
                       "this agent needs no client program."),
        _path("config", "/etc/mysql/my.cnf", "Option file", "Passed as --defaults-file."),
        _path("datadir", "/var/lib/mysql", "Data directory", unique=True),
        _path("socket", "/run/mysqld/mysqld.sock", "UNIX socket of the server", unique=True),
        _path("pid", "/run/mysqld/mysqld.pid", "Server pid file",
              "Passed to the server; the agent itself identifies the server by pid and start time.",
              unique=True),
        _path("log", "/var/log/mysql/error.log", "Error log",
              "The server's error log (--log-error); its last lines explain a failed start."),
        Param("user", shortdesc="User the server runs as", default="mysql"),
        Param("group", shortdesc="Group the server runs as", default="mysql"),
        Param("port", "integer", shortdesc="TCP port", minimum=1, maximum=65535,
              longdesc="Passed as --port when set; otherwise the option file decides."),
        Param("device", shortdesc="Block device the datadir must be mounted from",
              longdesc="When set, start refuses unless the filesystem holding the datadir is mounted "
                       "read-write from this device (compared by device number), e.g. /dev/drbd0.",
              check=_absolute),
        Param("credentials", shortdesc="Option file with the monitoring account",
              longdesc="A MySQL option file readable by root only (mode 0600) with user= and password= "
                       "in its [client] group, used by monitor depths 10 and 20.",
              check=_absolute),
        Param("test_user", shortdesc="Monitoring user when no credentials file names one", default="root"),
        Param("test_passwd", shortdesc="Deprecated: password of test_user", secret=True,
              longdesc="Deprecated: a password in the CIB is readable by every cluster administrator "
                       "and appears in reports. Use credentials instead."),
        Param("test_table", shortdesc="Table read by monitor depth 10 in addition to SELECT 1",
              check=_test_table),
        Param("heartbeat_table", shortdesc="Table written by monitor depth 20",
              longdesc="database.table; created when missing (the monitoring account needs CREATE, "
                       "INSERT, DELETE and SELECT on that database).",
              default="ocf_monitor.heartbeat", check=_heartbeat_table),
        Param("additional_parameters", shortdesc="Extra server options",
              longdesc="Split like a shell would split words (quotes respected), never run by a shell."),
    )

    daemon_what = "server"
    daemon_record = STATE_FILE

    # Helpers ---------------------------------------------------------------

    def server_binary(self) -> str:
        binary = self.config.text("binary")
        if os.path.basename(binary) not in WRAPPER_NAMES:
            return binary
        for candidate in (os.path.join(os.path.dirname(os.path.dirname(binary)), "sbin", name)
                          for name in ("mariadbd", "mysqld")):
            if os.access(candidate, os.X_OK):
                return candidate
        for candidate in SERVER_CANDIDATES:
            if os.access(candidate, os.X_OK):
                return candidate
        return binary

    def validate(self) -> Iterable[OCFError]:
        binary = self.server_binary()
        if not os.access(binary, os.X_OK):
            yield OCFError(OCF.ERR_INSTALLED, f"server binary {binary} is not installed")
        config = self.config.text("config")
        if not os.path.isfile(config):
            yield OCFError(OCF.ERR_INSTALLED, f"option file {config} does not exist")
        yield from self._check_accounts()
        credentials = self.config.text("credentials")
        if credentials:
            yield from self._check_credentials_file(credentials)

    def _check_accounts(self) -> Iterator[OCFError]:
        # Existence only: the supplementary groups (a walk over every group) are looked up at start.
        import grp
        import pwd

        try:
            pwd.getpwnam(self.config.text("user"))
        except KeyError:
            yield OCFError(OCF.ERR_INSTALLED, f"user {self.config.text('user')} does not exist")
        try:
            grp.getgrnam(self.config.text("group"))
        except KeyError:
            yield OCFError(OCF.ERR_INSTALLED, f"group {self.config.text('group')} does not exist")

    def _check_credentials_file(self, path: str) -> Iterator[OCFError]:
        from agents.ocf.daemon import CredentialsError

        try:
            read_option_file(path)
        except CredentialsError as problem:
            yield problem

    def _recorded(self) -> Identity | None:
        identity = self.daemon.recorded()
        return identity if identity is not None and identity.alive() else None

    def _running(self) -> Identity | None:
        """Our server: the one recorded at start, else one found working in our datadir.

        Adopting a server found in the datadir lets a resource move from
        ocf:heartbeat:mysql to this agent without a restart, and a stop never
        leaves a server behind because a state file was lost.
        """
        identity = self._recorded()
        if identity is not None:
            return identity
        for pid in servers_in(self.config.text("datadir")):
            found = Identity.of(pid)
            if found is not None:
                self.log.info(f"adopting server pid {pid} running in {self.config.text('datadir')}")
                self.daemon.remember(found)
                return found
        return None

    def _greet(self, identity: Identity) -> Greeting:
        socket_path = self.config.text("socket")
        try:
            greeting = read_greeting(socket_path, self.deadline.timeout())
        except TimeoutError:
            frozen = " (the process is stopped)" if identity.stopped() else ""
            raise OCFError(OCF.ERR_GENERIC, f"server pid {identity.pid} sent no greeting on {socket_path} "
                                            f"within {self.deadline.elapsed():.1f} s{frozen}") from None
        except OSError as exc:
            raise OCFError(OCF.ERR_GENERIC, f"server pid {identity.pid} does not answer on {socket_path}: "
                                            f"{exc.strerror or exc}") from None
        if greeting.peer_pid != identity.pid:
            raise OCFError(OCF.ERR_GENERIC, f"{socket_path} is served by pid {greeting.peer_pid}, "
                                            f"not by our server pid {identity.pid}")
        if greeting.error is not None:
            code, message = greeting.error
            if code != ER_CON_COUNT_ERROR:
                raise OCFError(OCF.ERR_GENERIC, f"server refuses connections: {code} {message}")
            self.log.warning(f"server pid {identity.pid} is alive but full: {message}")
        return greeting

    # start -----------------------------------------------------------------

    @action("start", timeout=120)
    def start(self) -> OCF:
        if self.config.text("test_passwd"):
            self.log.warning("test_passwd is deprecated: a password in the CIB is visible to every "
                             "cluster administrator; use the credentials option file instead")
        identity = self._recorded()
        if identity is None:
            self._refuse_unsafe_datadir()
            argv = self._server_argv()
            self._prepare_files()
            identity = self._spawn(argv)
        self._wait_ready(identity)
        return OCF.SUCCESS

    def _refuse_unsafe_datadir(self) -> None:
        datadir = self.config.text("datadir")
        device = self.config.text("device")
        if device:
            self._require_device(datadir, device)
        if not os.path.isdir(datadir):
            raise OCFError(OCF.ERR_INSTALLED, f"datadir {datadir} does not exist")
        others = servers_in(datadir)
        if others:
            raise OCFError(OCF.ERR_GENERIC, f"refusing to start: another server (pid "
                                            f"{', '.join(map(str, others))}) is running in {datadir}")
        if innodb_lock_held(datadir):
            raise OCFError(OCF.ERR_GENERIC, f"refusing to start: {datadir}/ibdata1 is locked by another "
                                            "server (possibly in another namespace)")

    def _require_device(self, datadir: str, device: str) -> None:
        try:
            rdev = os.stat(device).st_rdev
        except OSError as exc:
            raise OCFError(OCF.ERR_GENERIC, f"refusing to start: device {device}: {exc.strerror}") from None
        mount = mount_of(datadir)
        if (mount.major, mount.minor) != (os.major(rdev), os.minor(rdev)):
            raise OCFError(OCF.ERR_GENERIC, f"refusing to start: datadir {datadir} is on {mount.source} "
                                            f"(mounted at {mount.point}), not on {device}; is its "
                                            "filesystem mounted?")
        if "ro" in mount.options:
            raise OCFError(OCF.ERR_GENERIC, f"refusing to start: {device} is mounted read-only at "
                                            f"{mount.point}")

    def _server_argv(self) -> list[str]:
        import shlex

        text = self.config.text
        binary = self.server_binary()
        if binary != text("binary"):
            self.log.warning(f"binary {text('binary')} is a wrapper; running {binary} instead")
        argv = [binary, f"--defaults-file={text('config')}", f"--datadir={text('datadir')}",
                f"--socket={text('socket')}", f"--pid-file={text('pid')}", f"--log-error={text('log')}"]
        port = self.config.optional_integer("port")
        if port is not None:
            argv.append(f"--port={port}")
        try:
            argv += shlex.split(self.config.text("additional_parameters"))
        except ValueError as exc:
            raise OCFError(OCF.ERR_CONFIGURED, f"additional_parameters: {exc}") from None
        return argv

    def _prepare_files(self) -> None:
        from agents.ocf.proc import User

        user = User.lookup(self.config.text("user"), self.config.text("group"))
        for path in (self.config.text("socket"), self.config.text("pid"), self.config.text("log")):
            directory = os.path.dirname(path)
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o755)
                os.chown(directory, user.uid, user.gid)

    def _spawn(self, argv: list[str]) -> Identity:
        from agents.ocf.proc import User

        user = User.lookup(self.config.text("user"), self.config.text("group"))
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        env.update({key: os.environ[key] for key in SERVER_ENV_KEEP if key in os.environ})
        self.log.info(f"starting {' '.join(argv)}")
        return self.daemon.spawn(argv, user=user, log_path=self.config.text("log"), env=env, cwd="/")

    def _wait_ready(self, identity: Identity) -> None:
        socket_path = self.config.text("socket")
        while True:
            if not identity.alive():
                raise OCFError(OCF.ERR_GENERIC, self.daemon.exited())
            try:
                greeting = read_greeting(socket_path, self.deadline.timeout(1.0))
                if greeting.peer_pid == identity.pid:
                    self.log.info(f"server {greeting.version} pid {identity.pid} ready after "
                                  f"{self.deadline.elapsed():.2f} s")
                    return
            except OSError:
                pass
            if self.deadline.expired():
                raise DeadlineExceeded(f"waiting for the server to answer on {socket_path} "
                                       f"({self.daemon.where_to_look()})")
            self.deadline.sleep(READY_POLL_S)

    # stop ------------------------------------------------------------------

    @action("stop", timeout=120)
    def stop(self) -> OCF:
        identity = self._running()
        if identity is not None:
            self._stop_server(identity)
        return OCF.SUCCESS

    def stop_unconfigured(self, problems: Sequence[OCFError]) -> OCF:
        identity = self._running() if self._datadir_trusted() else self._recorded()
        if identity is not None:
            self._stop_server(identity)
        return OCF.SUCCESS

    def probe_unconfigured(self, problems: Sequence[OCFError]) -> OCF:
        """A server of ours running on a node where the configuration is broken is a failed one.

        Answering "not running" would let the cluster start a second server.
        """
        identity = self._running() if self._datadir_trusted() else self._recorded()
        if identity is None:
            return OCF.NOT_RUNNING
        self.log.error(f"server pid {identity.pid} runs although the configuration is invalid")
        return OCF.ERR_GENERIC

    def _datadir_trusted(self) -> bool:
        """The datadir is the one configured (a parse error would fall back to the default)."""
        raw = self.env.raw.get("OCF_RESKEY_datadir", "")
        return raw in ("", self.config.text("datadir"))

    def _stop_server(self, identity: Identity) -> None:
        stat = read_stat(identity.pid)
        self.daemon.what = f"{stat.comm if stat else 'server'} pid {identity.pid}"
        self.daemon.stop(self.deadline, identity)
        self.log.info(f"stopped {self.daemon.what} after {self.deadline.elapsed():.2f} s")

    # monitor ---------------------------------------------------------------

    @action("monitor", Advert(timeout=20, interval=20), Advert(timeout=30, interval=60, depth=10))
    def monitor(self) -> OCF:
        identity = self._running()
        if identity is None:
            return OCF.NOT_RUNNING
        self._greet(identity)
        level = self.env.check_level
        if level >= 10:
            self._query(heartbeat=level >= 20)
        return OCF.SUCCESS

    def _credentials(self) -> tuple[str, str]:
        user, password = self.config.text("test_user"), self.config.text("test_passwd")
        path = self.config.text("credentials")
        if path:
            options = read_option_file(path)
            user = options.get("user", user)
            password = options.get("password", password)
        self.log.add_secret(password)
        return user, password

    def _query(self, heartbeat: bool) -> None:
        user, password = self._credentials()
        pymysql = _import_pymysql()
        timeout = self.deadline.remaining()
        if timeout <= 0:
            raise DeadlineExceeded("before connecting to the server")
        try:
            with Alarm(timeout, "waiting for the server to answer the check queries"):
                # PyMySQL applies its timeouts to each read and write; the alarm bounds their sum.
                connection = pymysql.connect(
                    unix_socket=self.config.text("socket"), user=user, password=password, autocommit=True,
                    ssl_disabled=True, connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout)
                try:
                    with connection.cursor() as cursor:
                        self._select_one(cursor)
                        if heartbeat:
                            self._heartbeat(cursor, pymysql)
                finally:
                    connection.close()
        except pymysql.MySQLError as exc:
            raise OCFError(OCF.ERR_GENERIC, f"query as {user} failed: {exc}") from None

    def _select_one(self, cursor: Any) -> None:
        cursor.execute("SELECT 1")
        row = cursor.fetchone()
        if row is None or row[0] != 1:
            raise OCFError(OCF.ERR_GENERIC, f"SELECT 1 returned {row!r}")
        table = self.config.text("test_table")
        if table:
            cursor.execute(f"SELECT 1 FROM {_quoted(table)} LIMIT 1")  # noqa: S608

    def _heartbeat(self, cursor: Any, pymysql: Any) -> None:
        import secrets

        table = _quoted(self.config.text("heartbeat_table"))
        node = self.env.node or os.uname().nodename
        token = secrets.randbelow(2**62)
        write = f"REPLACE INTO {table} (node, token) VALUES (%s, %s)"  # noqa: S608
        try:
            cursor.execute(write, (node, token))
        except pymysql.MySQLError as exc:
            if exc.args[0] not in (ER_NO_SUCH_TABLE, ER_BAD_DB_ERROR):
                raise
            self._create_heartbeat_table(cursor)
            cursor.execute(write, (node, token))
        cursor.execute(f"SELECT token FROM {table} WHERE node = %s", (node,))  # noqa: S608
        row = cursor.fetchone()
        if row is None or row[0] != token:
            raise OCFError(OCF.ERR_GENERIC, f"heartbeat row in {table} reads back {row!r}, wrote {token}")

    def _create_heartbeat_table(self, cursor: Any) -> None:
        database = self.config.text("heartbeat_table").split(".")[0]
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {_quoted(self.config.text('heartbeat_table'))} ("
            "node VARCHAR(255) NOT NULL PRIMARY KEY, token BIGINT NOT NULL, "
            "written TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)"
            ") ENGINE=InnoDB")


class Alarm:
    """Raise DeadlineExceeded in this (single-threaded) agent when ``seconds`` have passed."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = max(seconds, 0.001)
        self.what = what
        self.previous: object = None

    def _expired(self, signum: int, frame: object) -> None:
        raise DeadlineExceeded(self.what)

    def __enter__(self) -> None:
        import signal

        self.previous = signal.signal(signal.SIGALRM, self._expired)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc_info: object) -> None:
        import signal

        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)  # type: ignore[arg-type]


# PyMySQL imports these only for TLS and for RSA password exchange over
# unencrypted TCP.  The agent talks to a local UNIX socket with TLS disabled,
# where the password is sent as is, so keeping them out saves ~25 ms per check.
UNUSED_BY_PYMYSQL_ON_A_SOCKET = ("cryptography", "ssl")


def _import_pymysql() -> Any:
    import sys

    blocked = [name for name in UNUSED_BY_PYMYSQL_ON_A_SOCKET if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import pymysql
    except ImportError:
        raise OCFError(OCF.ERR_INSTALLED, "monitor depth 10 and 20 need PyMySQL (python3-pymysql)") from None
    finally:
        for name in blocked:
            del sys.modules[name]
    return pymysql


AGENT = MySQL

if __name__ == "__main__":
    MySQL.main()
