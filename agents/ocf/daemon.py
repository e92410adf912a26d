"""The daemon base: what every agent that runs a service process shares.

One ``Daemon`` per resource instance keeps, in its state directory
(``agents.ocf.state``), the identity of the process it started (pid and
start time, see ``agents.ocf.proc``); it spawns the service as its user in a
session of its own, stops it (TERM and CONT, a wait within the action's
budget, KILL, a check that nothing is left, signalling only what is provably
ours), and when the service dies during a start it says how (exit status or
signal) and where to read why (which log, from which byte), never what the
log says: exit reasons land in the CIB, and a log may hold passwords.

Files that root opens on behalf of a service live in places other users may
write to (a log directory belongs to the service's user; a credentials path
is whatever the CIB says), so neither is ever opened through a symbolic link,
and only a regular file is accepted, checked on the *open* descriptor (no
stat-then-open race; a FIFO or device neither hangs nor passes).

* A log is opened as the service's user (effective ids switched for the one
  ``open``): the kernel then refuses whatever that user may not write, links
  in the path are followed with that user's rights only, and a file it
  creates is the user's from birth.  Root never hands an existing file to
  anyone (no ``chown``).
* The credentials rule, one for every agent: a credentials file must be a
  regular file owned by the agent's user (root) and neither readable nor
  writable by group or others (mode 0600 or stricter).  Anything else is a
  problem of this node, never of the cluster: ``ERR_INSTALLED``, so
  Pacemaker runs the resource elsewhere instead of stopping it everywhere
  (``ERR_CONFIGURED`` would).

Whether a process listens on a port is read from the kernel (sock_diag, or
``/proc/net/tcp*``) and matched against the sockets the process of ours (or a
member of its session) holds.
"""

from __future__ import annotations

import os
import stat

from agents.ocf.codes import OCF, OCFError
from agents.ocf.proc import Identity, read_stat, stop_session

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterable, Mapping, Sequence

    from agents.ocf.deadline import Deadline
    from agents.ocf.proc import User
    from agents.ocf.state import StateDir

CREDENTIALS_CODE = OCF.ERR_INSTALLED
CREDENTIALS_MAX_BYTES = 64 * 1024
LOG_MODE = 0o640
SAFE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
LISTEN = "0A"
ESTABLISHED = "01"
WILDCARD_ADDRESSES = frozenset(("0.0.0.0", "::"))  # noqa: S104 - recognised, not bound


class Daemon:
    """The service process of one resource instance, recorded in ``state`` under ``record``."""

    def __init__(self, state: StateDir, what: str, record: str = "identity") -> None:
        self.state = state
        self.what = what
        self.record = record
        self.child: subprocess.Popen[bytes] | None = None
        self.logs: dict[str, int] = {}  # log path -> its size when this start began

    def recorded(self) -> Identity | None:
        text = self.state.read(self.record)
        return Identity.parse(text) if text else None

    def remember(self, identity: Identity) -> None:
        self.state.write(self.record, identity.dump())

    def forget(self) -> None:
        self.state.remove(self.record)

    def spawn(self, argv: Sequence[str], *, user: User | None, log_path: str, env: Mapping[str, str],
              cwd: str = "/", more_logs: Iterable[str] = ()) -> Identity:
        """Start the service, output appended to ``log_path``, and record it.

        ``more_logs`` are the service's own logs, named (with the offset where this start
        began) if it dies before it answers.
        """
        from agents.ocf.proc import launch

        self.logs = {path: file_size(path) for path in (log_path, *more_logs) if path}
        log_fd = open_log(log_path, user)
        try:
            self.child = launch(argv, user=user, log_fd=log_fd, env=env, cwd=cwd)
        finally:
            os.close(log_fd)
        identity = Identity.of(self.child.pid) or Identity(self.child.pid, -1)  # -1: gone already
        self.remember(identity)
        return identity

    def stop(self, deadline: Deadline, identity: Identity | None = None) -> None:
        """Stop the recorded process (or ``identity``) and what it started, then forget it."""
        identity = identity or self.recorded()
        if identity is not None:
            stop_session(identity, deadline, what=self.what)
        self.forget()

    def exited(self) -> str:
        """Why a start failed because the service is gone: how it ended, and where to read why."""
        self.forget()
        return f"{self.what} {self.how_it_ended()}; {self.where_to_look()}"

    def how_it_ended(self) -> str:
        import signal

        status = self.child.poll() if self.child is not None else None
        if status is None:
            return "exited during start"
        if status < 0:
            try:
                name = signal.Signals(-status).name
            except ValueError:
                name = f"signal {-status}"
            return f"was killed by {name} during start"
        return f"exited with status {status} during start"

    def where_to_look(self) -> str:
        if not self.logs:
            return "see its logs"
        return "see " + ", ".join(f"{path} from byte {offset}" for path, offset in self.logs.items())


# Files root opens for a service ------------------------------------------------

class CredentialsError(OCFError):
    def __init__(self, reason: str) -> None:
        super().__init__(CREDENTIALS_CODE, reason)


class Degraded(OCFError):
    """The service works, but something it depends on (or our deep check of it) does not."""

    def __init__(self, reason: str) -> None:
        super().__init__(OCF.DEGRADED, reason)


def open_log(path: str, user: User | None) -> int:
    """A descriptor appending to ``path``, opened as ``user``; raises OCFError(ERR_PERM)."""
    import fcntl

    try:
        with _effective(user):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | SAFE_FLAGS, LOG_MODE)
    except OSError as exc:
        who = f" as {user.name}" if user is not None else ""
        raise OCFError(OCF.ERR_PERM, f"cannot open the log {path}{who}: {_why(exc)}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OCFError(OCF.ERR_PERM, f"the log {path} is not a regular file")
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def read_credentials_text(path: str) -> str:
    """The content of a root-only credentials file; raises CredentialsError."""
    try:
        fd = os.open(path, os.O_RDONLY | SAFE_FLAGS)
    except OSError as exc:
        raise CredentialsError(f"credentials file {path}: {_why(exc)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CredentialsError(f"credentials file {path} is not a regular file")
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise CredentialsError(f"credentials file {path} must be owned by uid {os.geteuid()} and "
                                   f"readable by it alone (mode 0600), not uid {info.st_uid} mode "
                                   f"{info.st_mode & 0o777:04o}")
        data = os.read(fd, CREDENTIALS_MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > CREDENTIALS_MAX_BYTES:
        raise CredentialsError(f"credentials file {path} is larger than {CREDENTIALS_MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialsError(f"credentials file {path} is not UTF-8 text") from None


def read_credentials(path: str, section: str) -> dict[str, str]:
    """The ``[section]`` of a root-only INI credentials file; raises CredentialsError (never its content)."""
    import configparser

    text = read_credentials_text(path)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=path)
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        where = f" at line {line}" if line else ""
        raise CredentialsError(f"cannot parse credentials file {path}{where} "
                               f"({type(exc).__name__})") from None
    if not parser.has_section(section):
        raise CredentialsError(f"credentials file {path} has no [{section}] section")
    return dict(parser.items(section))


def file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _why(exc: OSError) -> str:
    import errno

    if exc.errno == errno.ELOOP:
        return "it is a symbolic link"
    if exc.errno == errno.ENXIO:
        return "it is a FIFO or device without a reader"
    return exc.strerror or type(exc).__name__


class _effective:
    """Switch the effective uid/gid/groups to ``user`` for a block (a no-op unless root)."""

    def __init__(self, user: User | None) -> None:
        self.user = user if user is not None and os.geteuid() == 0 else None
        self.groups: list[int] = []

    def __enter__(self) -> None:
        if self.user is None:
            return
        self.groups = os.getgroups()
        os.setgroups(self.user.groups)
        os.setegid(self.user.gid)
        os.seteuid(self.user.uid)

    def __exit__(self, *exc_info: object) -> None:
        if self.user is None:
            return
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(self.groups)


# Listening sockets ------------------------------------------------------------------

def listening_inodes(host: str, port: int) -> set[str]:
    """Inodes of LISTEN sockets on ``port`` that would serve ``host``."""
    from agents import sockdiag

    wanted = _packed(host)
    try:
        sockets = sockdiag.listening()
    except OSError:
        sockets = list(_proc_listening())
    return {str(inode) for address, bound_port, inode in sockets
            if bound_port == port and _serves(address, wanted)}


def _serves(address: bytes, wanted: bytes | None) -> bool:
    bound = None if address == bytes(len(address)) else address
    return wanted is None or bound in (None, wanted) or _mapped(bound) == wanted


def _proc_listening() -> Iterable[tuple[bytes, int, int]]:
    """The same from /proc/net/tcp{,6}: slower, for kernels without sock_diag."""
    for (address, port), _remote, inode in _proc_tcp(LISTEN):
        yield address, port, inode


def established_connections() -> list[tuple[tuple[bytes, int], int]]:
    """``((remote address, remote port), inode)`` of every ESTABLISHED TCP socket of this network
    namespace; an IPv4-mapped IPv6 peer is given as its IPv4 address."""
    return [((_mapped(address) or address, port), inode)
            for _local, (address, port), inode in _proc_tcp(ESTABLISHED)]


def _proc_tcp(state: str) -> Iterable[tuple[tuple[bytes, int], tuple[bytes, int], int]]:
    """``(local, remote, inode)`` of the sockets in ``state`` (hex, as /proc/net/tcp{,6} print it)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) < 10 or fields[3] != state:
                        continue
                    yield _endpoint_of(fields[1]), _endpoint_of(fields[2]), int(fields[9])
        except OSError:
            continue


def _endpoint_of(field: str) -> tuple[bytes, int]:
    address, _colon, port_hex = field.partition(":")
    return _unhex(address), int(port_hex, 16)


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds."""
    found: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def _packed(host: str) -> bytes | None:
    """The address as bytes, or None for a wildcard (which conflicts with everything)."""
    import _socket

    host = host.strip("[]")
    if host in WILDCARD_ADDRESSES or not host:
        return None
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            return _socket.inet_pton(family, host)
        except OSError:
            continue
    return None


def _unhex(address: str) -> bytes:
    raw = bytes.fromhex(address)
    # /proc/net/tcp* print each 32-bit word in host (little-endian) order.
    return b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))


def _mapped(address: bytes | None) -> bytes | None:
    if address is not None and len(address) == 16 and address[:12] == b"\0" * 10 + b"\xff\xff":
        return address[12:]
    return address


def owns_socket(identity: Identity, inodes: set[str]) -> bool:
    """Whether the process we started (or, failing that, its session) holds one of ``inodes``."""
    if _holds(identity.pid, inodes):
        return True
    return any(_holds(member.pid, inodes) for member in identity.session_members()
               if member.pid != identity.pid)


def _holds(pid: int, inodes: set[str]) -> bool:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
        except OSError:
            continue
    return False


def socket_owner(inodes: set[str]) -> str:
    from agents.ocf.proc import all_stats

    for found in all_stats():
        if _holds(found.pid, inodes):
            now = read_stat(found.pid)
            return f"pid {found.pid} ({now.comm if now else '?'})"
    return "another process"
