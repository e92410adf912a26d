"""Processes: run commands and daemons without a shell, know them by identity.

A daemon is identified by its pid *and* its start time (``/proc/PID/stat``
field 22), so a pid reused by an unrelated process after a crash is never
taken for ours.  Daemons are spawned as session leaders; everything in that
session is ours, even what was re-parented to init, and stopping means
TERM to the whole session, a wait within the time budget, KILL, and a check
that nothing is left.  Zombies count as dead.
"""

from __future__ import annotations

import os

from agents.ocf.codes import OCF, DeadlineExceeded, OCFError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator, Mapping, Sequence

    from agents.ocf.deadline import Deadline

PROC = "/proc"
DEAD_STATES = frozenset("ZXx")


class ProcStat:
    """The fields of ``/proc/PID/stat`` this module needs."""

    __slots__ = ("comm", "pid", "ppid", "session", "start_time", "state")

    def __init__(self, pid: int, comm: str, state: str, ppid: int, session: int, start_time: int) -> None:
        self.pid = pid
        self.comm = comm
        self.state = state
        self.ppid = ppid
        self.session = session
        self.start_time = start_time

    @property
    def alive(self) -> bool:
        return self.state not in DEAD_STATES


def read_stat(pid: int, proc: str = PROC) -> ProcStat | None:
    try:
        with open(f"{proc}/{pid}/stat", "rb") as handle:
            data = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    # comm may contain spaces and parentheses: it ends at the last ')'.
    open_paren, close_paren = data.find("("), data.rfind(")")
    fields = data[close_paren + 2:].split()
    return ProcStat(pid, data[open_paren + 1:close_paren], fields[0], int(fields[1]), int(fields[3]),
                    int(fields[19]))


def cmdline(pid: int, proc: str = PROC) -> list[str]:
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def all_stats(proc: str = PROC) -> Iterator[ProcStat]:
    for entry in os.listdir(proc):
        if entry.isdigit():
            stat = read_stat(int(entry), proc)
            if stat is not None:
                yield stat


class Identity:
    """A process we started, as (pid, start time)."""

    __slots__ = ("pid", "start_time")

    def __init__(self, pid: int, start_time: int) -> None:
        self.pid = pid
        self.start_time = start_time

    @classmethod
    def of(cls, pid: int) -> Identity | None:
        stat = read_stat(pid)
        return None if stat is None else cls(pid, stat.start_time)

    @classmethod
    def parse(cls, text: str) -> Identity | None:
        parts = text.split()
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            return None
        return cls(int(parts[0]), int(parts[1]))

    def dump(self) -> str:
        return f"{self.pid} {self.start_time}"

    def stat(self) -> ProcStat | None:
        stat = read_stat(self.pid)
        if stat is None or stat.start_time != self.start_time:
            return None
        return stat

    def alive(self) -> bool:
        stat = self.stat()
        return stat is not None and stat.alive

    def stopped(self) -> bool:
        """True when the process is frozen (SIGSTOP or traced)."""
        stat = self.stat()
        return stat is not None and stat.state in "Tt"

    def session_members(self) -> list[ProcStat]:
        """Live processes of the session this process leads (itself included), while it is ours.

        Only a leader that is provably ours (pid *and* start time) vouches for its session.
        A pid held by a process with another start time was reused, and the kernel never
        reuses a pid that still names a live session: nothing of ours is left then.  A
        session whose leader is gone cannot be proved ours either (see ``leaderless``).
        """
        leader = read_stat(self.pid)  # a zombie leader still holds its pid: still proof
        if leader is None or leader.start_time != self.start_time:
            return []
        return [s for s in all_stats() if s.alive and self.pid in (s.pid, s.session)]

    def leaderless(self) -> list[ProcStat]:
        """Live processes of a session whose leader (this identity) is gone: never signalled.

        Once every process of our session had exited, the pid could go to another program
        that started its own session and exited in turn; its children would look the same.
        """
        if read_stat(self.pid) is not None:
            return []
        return [s for s in all_stats() if s.alive and s.session == self.pid
                and s.start_time >= self.start_time]


def run(argv: Sequence[str], deadline: Deadline, *, input_text: str | None = None,
        env: Mapping[str, str] | None = None, cap: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command (argv list, never a shell) within the time budget."""
    import subprocess

    try:
        return subprocess.run(list(argv), input=input_text, capture_output=True, text=True, env=env,
                              timeout=deadline.timeout(cap), check=False, close_fds=True)
    except subprocess.TimeoutExpired:
        raise DeadlineExceeded(f"waiting for {argv[0]}") from None
    except FileNotFoundError:
        raise OCFError(OCF.ERR_INSTALLED, f"{argv[0]} is not installed") from None
    except PermissionError as exc:
        raise OCFError(OCF.ERR_PERM, f"cannot run {argv[0]}: {exc.strerror}") from None


class User:
    """A service account: uid, gid and supplementary groups, looked up once."""

    __slots__ = ("gid", "groups", "home", "name", "uid")

    def __init__(self, name: str, uid: int, gid: int, groups: list[int], home: str) -> None:
        self.name = name
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.home = home

    @classmethod
    def lookup(cls, name: str, group: str | None = None) -> User:
        import grp
        import pwd

        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise OCFError(OCF.ERR_INSTALLED, f"user {name} does not exist") from None
        gid = entry.pw_gid
        if group:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise OCFError(OCF.ERR_INSTALLED, f"group {group} does not exist") from None
        groups = os.getgrouplist(name, gid)
        return cls(name, entry.pw_uid, gid, groups, entry.pw_dir)


def launch(argv: Sequence[str], *, user: User | None, log_fd: int, env: Mapping[str, str],
           cwd: str = "/") -> subprocess.Popen[bytes]:
    """Start a daemon in a new session, as ``user`` (ids dropped in the child before exec),
    its output going to ``log_fd`` (see ``agents.ocf.daemon.open_log``)."""
    import subprocess

    kwargs: dict[str, object] = {}
    if user is not None and os.geteuid() == 0:
        kwargs = {"user": user.uid, "group": user.gid, "extra_groups": user.groups}
    try:
        child: subprocess.Popen[bytes] = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, cwd=cwd, env=dict(env),
            start_new_session=True, close_fds=True, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError:
        raise OCFError(OCF.ERR_INSTALLED, f"{argv[0]} is not installed") from None
    except PermissionError as exc:
        raise OCFError(OCF.ERR_PERM, f"cannot run {argv[0]}: {exc.strerror}") from None
    return child


def spawn(argv: Sequence[str], *, user: User | None, log_path: str, env: Mapping[str, str],
          cwd: str = "/") -> Identity:
    """``launch`` with the log opened safely; the identity of the new daemon."""
    from agents.ocf.daemon import open_log

    log_fd = open_log(log_path, user)
    try:
        child = launch(argv, user=user, log_fd=log_fd, env=env, cwd=cwd)
    finally:
        os.close(log_fd)
    identity = Identity.of(child.pid)
    if identity is None:  # exited before we could look: report it as such
        child.wait()
        return Identity(child.pid, -1)
    return identity


def signal_all(members: Sequence[ProcStat], signum: int) -> None:
    """Signal each member that is still the process we saw (same pid and start time)."""
    import signal  # not at module level: its enums cost 1.5 ms on every monitor

    for member in members:
        now = read_stat(member.pid)
        if now is None or now.start_time != member.start_time:
            continue
        try:
            os.kill(member.pid, signum)
            if signum == signal.SIGTERM:
                os.kill(member.pid, signal.SIGCONT)  # a frozen process cannot act on TERM
        except ProcessLookupError:
            pass


class Session:
    """The processes of a session proved ours while its leader was (pid + start time each)."""

    def __init__(self, leader: Identity) -> None:
        self.leader = leader
        self.seen: dict[int, ProcStat] = {}

    def alive(self) -> list[ProcStat]:
        for member in self.leader.session_members():  # empty once the leader is gone or not ours
            self.seen.setdefault(member.pid, member)
        alive = []
        for pid, member in list(self.seen.items()):
            now = read_stat(pid)
            if now is None or now.start_time != member.start_time or not now.alive:
                del self.seen[pid]
            else:
                alive.append(now)
        return alive


def stop_session(identity: Identity, deadline: Deadline, term_grace_s: float | None = None,
                 what: str = "process") -> None:
    """TERM the whole session, wait, KILL what is left, and verify it is gone.

    Only processes proved ours are signalled: the leader by pid and start time, the other
    members while that leader is alive (each then known by its own pid and start time).
    ``term_grace_s`` bounds the polite phase; by default it may use all of the budget but
    the last second, which is kept for KILL and the final check.
    """
    import signal

    session = Session(identity)
    members = session.alive()
    if not members:
        _await_leaderless(identity, deadline, what)
        return
    signal_all(members, signal.SIGTERM)
    grace = max(deadline.remaining() - 1.0, 0.0)
    if term_grace_s is not None:
        grace = min(grace, term_grace_s)
    try:
        deadline.wait_for(lambda: not session.alive(), f"stopping {what}", cap=grace)
        return
    except DeadlineExceeded:
        pass
    signal_all(session.alive(), signal.SIGKILL)
    deadline.wait_for(lambda: not session.alive(), f"killing {what}")


LEADERLESS_WAIT_S = 5.0


def _await_leaderless(identity: Identity, deadline: Deadline, what: str) -> None:
    """Give the workers of a crashed leader a moment to exit on their own (they watch their
    parent); they are not provably ours, so they are never signalled."""
    if not identity.leaderless():
        return
    try:
        deadline.wait_for(lambda: not identity.leaderless(), f"the workers of a dead {what} to exit",
                          cap=min(LEADERLESS_WAIT_S, max(deadline.remaining() - 1.0, 0.0)))
    except DeadlineExceeded:
        pass
