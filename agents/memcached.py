"""OCF agent for memcached, keystone's token cache: one per controller, run as a clone.

A thin user of the daemon base (``agents.ocf.daemon``, ``agents.ocf.daemon_agent``):
the base spawns Debian's ``/usr/bin/memcached`` in the foreground as its user (so
without ``-u``), in a session of its own, records it by pid and start time, refuses
a port another process holds, waits until it answers, checks depth 0, and stops only
what is provably ours.  This file states memcached's command line and speaks its
text protocol for the deeper checks.

Health checks by ``OCF_CHECK_LEVEL``:

* 0: the process we started (pid and start time) is alive, not frozen, and
  holds a LISTEN socket on ``host:port`` (the kernel's socket table and the
  process's descriptors; no connection);
* 10: ``version`` over TCP answers ``VERSION ...`` within the deadline;
* 20: ``set``, ``get`` and ``delete`` of a key of its own (random, and
  expiring by itself should the delete never arrive).

memcached depends on nothing, so nothing here is ever degraded.  It has no
authentication either: ``host`` decides who may read and write the cache.
"""

from __future__ import annotations

import os

from agents.ocf.actions import Advert, action
from agents.ocf.codes import OCF, OCFError
from agents.ocf.daemon_agent import TCPDaemonAgent
from agents.ocf.params import Param
from agents.ocf.proc import User

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Iterable

    from agents.ocf.deadline import Deadline
    from agents.ocf.proc import Identity

SERVICE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
START_ASK_CAP_S = 1.0
LOG_DIR_MODE = 0o750
CHECK_KEY_TTL_S = 60  # the depth-20 key expires by itself if its delete never arrives
MAX_KEY_BYTES = 250  # memcached's limit
MAX_ANSWER_BYTES = 64 * 1024
ERROR_LINES = (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")


def _absolute(value: object) -> None:
    text = str(value)
    if not text.startswith("/") or not text.isprintable():
        raise ValueError(f"must be an absolute path of printable characters, not {text!r}")


def _address(value: object) -> None:
    from agents.ocf.daemon_agent import check_listen_host

    check_listen_host(value)


class Memcached(TCPDaemonAgent):
    name = "memcached"
    shortdesc = "memcached, the cache of keystone's tokens"
    longdesc = ("Runs memcached in the foreground as its own user and checks it by depth (0: process and "
                "listening socket, 10: the version command, 20: a set, get and delete of a key of its own). "
                "Meant as a clone on every controller, each keystone listing all of them in its [cache] "
                "memcache_servers.")
    params = (
        Param("binary", shortdesc="memcached program", default="/usr/bin/memcached", check=_absolute),
        Param("user", shortdesc="User memcached runs as", default="memcache",
              longdesc="memcached is started as this user (never root: memcached refuses it)."),
        Param("host", shortdesc="Address memcached listens on (and is checked on)",
              longdesc="An IPv4 or IPv6 address; 0.0.0.0 or :: for every address of the node; or a network "
                       "in CIDR form (10.213.0.0/24): this node's own address in it, chosen at start by the "
                       "rule of the API agents' host (primary before secondary such as a VIP, then the "
                       "lowest; none: start fails with 5). memcached "
                       "has no authentication: whoever reaches this address may read and write the cache "
                       "(keystone's tokens). The default serves this node alone; for a cache shared by the "
                       "controllers listen on their management network and keep the port firewalled from "
                       "everything else.",
              default="127.0.0.1", check=_address),
        Param("port", "integer", minimum=1, maximum=65535, default=11211,
              shortdesc="TCP port memcached listens on (and is checked on)"),
        Param("memory_mb", "integer", minimum=2, maximum=1048576, default=64,
              shortdesc="Item memory in megabytes (-m)"),
        Param("max_connections", "integer", minimum=64, maximum=65536, default=1024,
              shortdesc="Simultaneous connections (-c)",
              longdesc="memcached raises its open-file limit to this (plus its own descriptors); below "
                       "about 30 it cannot start its threads."),
        Param("log_file", shortdesc="File receiving memcached's standard output and error",
              longdesc="Opened as user, never through a symbolic link. Its directory is created (owned by "
                       "user, mode 0750) at start when it is missing and its parent exists.",
              default="/var/log/memcached/memcached-ocf.log", check=_absolute),
    )

    # Actions ---------------------------------------------------------------

    @action("start", timeout=20)
    def start(self) -> OCF:
        return self.start_daemon()

    @action("stop", timeout=20)
    def stop(self) -> OCF:
        self.daemon.stop(self.deadline)
        return OCF.SUCCESS

    @action("monitor", Advert(timeout=10, interval=10), Advert(timeout=10, interval=30, depth=10),
            Advert(timeout=10, interval=60, depth=20))
    def monitor(self) -> OCF:
        return self.monitor_daemon()

    # Hooks -----------------------------------------------------------------

    def validate(self) -> Iterable[OCFError]:
        problems = self.binary_problems()
        if self.env.action in ("start", "validate-all"):
            # Not on the monitor path: a monitor only looks at the process recorded at start.
            problems += self.unprivileged_user_problems("memcached refuses to run as root")
            problems += self.host_problems()
            directory = os.path.dirname(self.config.text("log_file"))
            if not os.path.isdir(directory) and not os.path.isdir(os.path.dirname(directory)):
                problems.append(OCFError(OCF.ERR_INSTALLED, f"neither the directory {directory} of log_file "
                                         "nor its parent exists"))
        return problems

    # Derived facts -----------------------------------------------------------

    def command_line(self) -> list[str]:
        # memcached takes an IPv6 address in brackets (a bare one reads as host:port); UDP stays off.
        listen = f"[{self.host}]" if ":" in self.host else self.host
        integer = self.config.integer
        return [self.config.text("binary"), "-U", "0", "-l", listen, "-p", str(self.port),
                "-m", str(integer("memory_mb")), "-c", str(integer("max_connections"))]

    # Start -------------------------------------------------------------------

    def launch(self) -> Identity:
        user = self.user()
        argv = self.command_line()
        env = {"PATH": SERVICE_PATH, "HOME": "/", "LANG": "C.UTF-8", "USER": user.name, "LOGNAME": user.name}
        self.log.info(f"starting memcached on {self.endpoint}: {' '.join(argv)}")
        return self.daemon.spawn(argv, user=user, log_path=self.log_path(user), env=env, cwd="/")

    def log_path(self, user: User) -> str:
        """``log_file``, its directory made for ``user`` when missing (Debian's package has none)."""
        path = self.config.text("log_file")
        directory = os.path.dirname(path)
        if os.path.isdir(directory):
            return path
        try:
            os.mkdir(directory, LOG_DIR_MODE)
        except FileExistsError:
            return path  # made meanwhile by someone else: used as it is, never handed over
        except OSError as exc:
            raise OCFError(OCF.ERR_INSTALLED, f"cannot create the directory {directory} of log_file: "
                           f"{exc.strerror}") from None
        if os.geteuid() == 0:
            os.lchown(directory, user.uid, user.gid)
        return path

    def answering(self, identity: Identity) -> str:
        return self.answering_once_listening(identity, lambda: self.check_version(cap=START_ASK_CAP_S))

    # Monitor -------------------------------------------------------------------

    def check_version(self, cap: float | None = None) -> None:
        with Connection(self.deadline, self.host, self.port, cap) as conn:
            answer = conn.ask(b"version\r\n", "version")
        if not answer.startswith(b"VERSION "):
            raise OCFError(OCF.ERR_GENERIC, f"memcached on {self.endpoint} answered version with "
                           f"{_shown(answer)}")

    def deep_check(self) -> None:
        nonce = os.urandom(8).hex()
        instance = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.:") else "_"
                           for ch in self.env.instance)
        key = f"ocf-monitor:{instance}:{nonce}".encode()[-MAX_KEY_BYTES:]
        value = os.urandom(8).hex().encode()
        with Connection(self.deadline, self.host, self.port) as conn:
            steps = (
                ("set", b"set %s 0 %d %d\r\n%s\r\n" % (key, CHECK_KEY_TTL_S, len(value), value),
                 b"STORED\r\n"),
                ("get", b"get %s\r\n" % key, b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value)),
                ("delete", b"delete %s\r\n" % key, b"DELETED\r\n"),
            )
            for what, command, expected in steps:
                answer = conn.ask(command, what, b"END\r\n" if what == "get" else b"\r\n")
                if answer != expected:
                    raise OCFError(OCF.ERR_GENERIC, f"memcached on {self.endpoint} answered {what} of its "
                                   f"check key with {_shown(answer)}")


class Connection:
    """The memcached text protocol on one TCP connection; every wait within the deadline.

    ``_socket`` rather than ``socket``: the latter costs milliseconds of imports on every monitor.
    """

    def __init__(self, deadline: Deadline, host: str, port: int, cap: float | None = None) -> None:
        from agents.http import client_address

        self.deadline = deadline
        self.cap = cap
        self.address = client_address(host)
        self.port = port
        self.where = f"[{self.address}]:{port}" if ":" in self.address else f"{self.address}:{port}"
        self.began = deadline.elapsed()
        self.sock: _socket.socket  # connected on entering

    def __enter__(self) -> Connection:
        from agents.http import connect

        try:
            self.sock = connect(self.deadline, self.address, self.port, self.cap)
        except OSError as exc:
            raise self._failure("the connection", exc) from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def ask(self, command: bytes, what: str, end: bytes = b"\r\n") -> bytes:
        """Send ``command``; its answer, read until it ends with ``end`` or is an error line."""
        answer = b""
        try:
            self._budget(self.sock)
            self.sock.sendall(command)
            while not (answer.endswith(end) or (answer.startswith(ERROR_LINES) and answer.endswith(b"\r\n"))):
                self._budget(self.sock)
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionResetError(0, "closed the connection")
                answer += chunk
                if len(answer) > MAX_ANSWER_BYTES:
                    break
        except OSError as exc:
            raise self._failure(what, exc) from None
        return answer

    def _budget(self, sock: _socket.socket) -> None:
        left = self.deadline.timeout(self.cap)
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)

    def _failure(self, what: str, exc: OSError) -> OCFError:
        if isinstance(exc, TimeoutError):
            waited = self.deadline.elapsed() - self.began
            return OCFError(OCF.ERR_GENERIC, f"memcached on {self.where} did not answer {what} within "
                            f"{waited:.1f} s")
        if isinstance(exc, ConnectionRefusedError):
            return OCFError(OCF.ERR_GENERIC, f"memcached on {self.where} refused the connection")
        return OCFError(OCF.ERR_GENERIC, f"memcached on {self.where}: {what} failed: "
                        f"{exc.strerror or type(exc).__name__}")


def _shown(answer: bytes) -> str:
    """The start of an unexpected answer, printable (memcached's own words, never file content)."""
    return repr(answer[:60].decode("ascii", "replace")) if answer else "nothing"


AGENT = Memcached

if __name__ == "__main__":
    AGENT.main()
