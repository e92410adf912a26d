"""OCF agent for HAProxy, the load-balanced front of the APIs on the public VIP: a clone on every controller.

A user of the daemon base (``agents.ocf.daemon``, ``agents.ocf.daemon_agent``): Debian's
``/usr/sbin/haproxy`` runs in master-worker mode in the foreground (``-W -db``), started by the
base in a session of its own and recorded by pid and start time.  The master stays root: it binds
the public VIP with ``transparent`` binds on nodes that do not hold the address, and re-executes
itself on a reload; the configuration's ``global user/group`` drops the workers' privileges.  The
agent talks to the master through its CLI socket (``-S``) in the state directory, never through a
stats socket the configuration may or may not declare.

* start: ``haproxy -c`` checks the file first (a failing check is ``ERR_CONFIGURED``, its first
  error's line number in the exit reason, haproxy's own words in the log only), then the master is
  spawned and start waits until its CLI answers ``show proc`` with a worker.  A master that dies
  on the way (a listening address held by another process, typically) is reported with its exit
  status, the address and its holder when haproxy said which, and where its log starts.
* monitor depth 0: the master is ours (pid and start time), alive, not frozen, its CLI answers
  within the deadline, and it has a live worker that is not frozen either.  Depth 10: the worker's
  ``show stat``, read through the master CLI: a backend whose servers are all down, or a server
  down, is *degraded* (190), never a failure, even when no backend has a server left.  HAProxy
  cannot bring an API back by restarting, and failing it on every node would stop the public VIP
  with it, so the operator is told which backends and servers are missing while the front keeps
  answering (with 503 for the empty backends).  A configuration without any server is healthy.
  The unchecked backup twins crmtool generates (``FALLBACK_SUFFIX``) are left out of the verdict.
* reload-agent: Pacemaker calls it when ``config_digest`` (the sha256 crmtool writes of the
  configuration it generated) changes.  The file is checked, then the master CLI's ``reload``
  re-executes the master (same pid): new workers take over the listening sockets and the old ones
  finish their connections, so no connection is refused or dropped.  Reload waits until the new
  generation of workers is up.  A new file that fails the check (or that the master refuses) is not
  loaded: the running workers go on serving the previous configuration, reload-agent succeeds and
  every monitor is degraded, naming the refusal, until a later reload or start succeeds.  Pacemaker
  records a reload-agent result as the resource's start: ``ERR_CONFIGURED`` would stop the clone
  on every node and ``ERR_GENERIC`` would ban it from this node as a failed start (and every node
  has the same file), so either would take the front down for a file the running proxy never
  loaded.
* stop: SIGUSR1 to the master (soft stop: the workers stop listening and finish their
  connections), bounded by the stop's budget, then the base's TERM and KILL of what is provably
  ours; the master socket is removed.
* with a broken configuration, stop still stops what we started, and a probe reports what we
  started as a depth-0 monitor would.
"""

from __future__ import annotations

import os

from agents.ocf.actions import Advert, action
from agents.ocf.codes import OCF, OCFError
from agents.ocf.daemon_agent import DaemonAgent
from agents.ocf.params import Param

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Iterable, Sequence

    from agents.ocf.deadline import Deadline
    from agents.ocf.proc import Identity

SERVICE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SOCKET_NAME = "master.sock"
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes; haproxy appends a suffix while it binds
REFUSED = "refused-configuration"  # state file: why the running proxy still serves an older file
START_POLL_S = 0.05
ASK_CAP_S = 2.0  # one CLI question while waiting in a loop
CHECK_CAP_S = 30.0
MAX_ANSWER_BYTES = 8 * 1024 * 1024
MAX_LOGGED_LINES = 20
MAX_NAMED = 5  # backends or servers named in an exit reason, then "and N more"
SOFT_STOP_RESERVE_S = 5.0  # kept from the stop's budget for TERM, KILL and the final check
LOG_TAIL_BYTES = 64 * 1024
# Server states that take traffic: an UP server (possibly failing its checks: "UP 1/3"), or one
# without health checks, which HAProxy uses as long as it is not in maintenance.
UP_STATES = ("UP", "no check")
# crmtool gives each server of a generated backend an unchecked backup twin named with this suffix (a
# node's name never holds a ':'). HAProxy sends requests to the twins only when every checked server
# of the backend fails its checks: servers slowed down (a database away, a busy machine) answer their
# checks late, behind the requests, and a request then waits for them instead of getting a 503 at
# once. The twins say nothing of health; they are drained and readied with their servers.
FALLBACK_SUFFIX = ":fallback"
NO_SUCH_SERVER = "No such server."


def _absolute(value: object) -> None:
    text = str(value)
    if not text.startswith("/") or not text.isprintable():
        raise ValueError(f"must be an absolute path of printable characters, not {text!r}")


def _digest(value: object) -> None:
    text = str(value)
    if len(text) > 200 or not all(ch.isascii() and (ch.isalnum() or ch in ":-_") for ch in text):
        raise ValueError("must be a digest: letters, digits, ':', '-' and '_' (or empty)")


class HAProxy(DaemonAgent):
    name = "haproxy"
    daemon_what = "haproxy"
    shortdesc = "HAProxy in master-worker mode, the load-balanced front of the APIs"
    longdesc = ("Runs HAProxy (master-worker, the master as root, the workers as the configuration's global "
                "user) and checks it by depth (0: master process, its CLI and a worker; 10: the servers of "
                "every backend, a backend or server down being reported as degraded, never as a failure). "
                "A change of config_digest makes Pacemaker call reload-agent, a graceful reload that keeps "
                "every connection; a new file that fails haproxy's check is not loaded (the previous one "
                "keeps serving and monitors report degraded). Meant as a clone on every controller, in "
                "front of the API clones, colocated with nothing: it binds the public VIP with "
                "transparent binds wherever it runs.")
    params = (
        Param("config", shortdesc="HAProxy configuration file", default="/etc/haproxy/haproxy.cfg",
              longdesc="Checked with haproxy -c before every start and reload; the same file on every node "
                       "(crmtool generates it).",
              check=_absolute),
        Param("binary", shortdesc="haproxy program", default="/usr/sbin/haproxy", check=_absolute),
        Param("config_digest", shortdesc="Digest of the configuration file (sets off a reload)", default="",
              reloadable=True, check=_digest,
              longdesc="crmtool sets it to the sha256 of the configuration it generated, so a changed "
                       "configuration makes Pacemaker call reload-agent on every node (a graceful reload, "
                       "no connection lost) instead of restarting the clone. The agent does not compare it "
                       "with the file: it is a trigger."),
        Param("log_file", shortdesc="File receiving the standard output and error of the master",
              longdesc="Opened by root, never through a symbolic link; its directory must exist. HAProxy's "
                       "own traffic logs go wherever the configuration's log lines send them.",
              default="/var/log/haproxy-ocf.log", check=_absolute),
    )

    # Actions ---------------------------------------------------------------

    @action("start", timeout=60)
    def start(self) -> OCF:
        identity = self.daemon.recorded()
        if identity is None or not identity.alive():  # never started, or died since: start anew
            identity = self.launch()
        elif identity.stopped():
            raise OCFError(OCF.ERR_GENERIC, f"haproxy (pid {identity.pid}) is frozen (stopped by a signal)")
        self.wait_until_serving(identity)
        self.state.remove(REFUSED)
        self.log.info(f"haproxy runs (master pid {identity.pid})")
        return OCF.SUCCESS

    @action("stop", timeout=60)
    def stop(self) -> OCF:
        identity = self.daemon.recorded()
        if identity is not None and identity.alive():
            self.soft_stop(identity)
        self.daemon.stop(self.deadline, identity)
        self._remove_socket()
        self.state.remove(REFUSED)
        return OCF.SUCCESS

    @action("monitor", Advert(timeout=20, interval=10), Advert(timeout=20, interval=20, depth=10))
    def monitor(self) -> OCF:
        identity = self.daemon.recorded()
        if identity is None:
            return OCF.NOT_RUNNING
        self.check_alive(identity)
        problems: list[str] = []
        if self.env.check_level >= 10:
            problems += self.backend_problems()
        refused = self.state.read(REFUSED)
        if refused:
            problems.insert(0, refused)
        if problems:
            raise OCFError(OCF.DEGRADED, "; ".join(problems))
        return OCF.SUCCESS

    @action("reload-agent", timeout=60)
    def reload_agent(self) -> OCF:
        identity = self.daemon.recorded()
        if identity is None or not identity.alive():
            raise OCFError(OCF.NOT_RUNNING, "haproxy is not running: nothing to reload")
        self.check_alive(identity)
        failure = self.config_check()
        if failure:
            return self.refuse(f"haproxy serves its previous configuration: the new one {failure}")
        before = self.processes()
        self._send_reload()
        after = self.wait_for_reload(identity, before)
        if after.failed > before.failed:
            return self.refuse("haproxy serves its previous configuration: the master refused the new one "
                               f"at reload; see {self.config.text('log_file')}")
        self.state.remove(REFUSED)
        self.log.info(f"haproxy reloaded: workers {', '.join(map(str, after.workers))} serve "
                      f"{self.config.text('config')}")
        return OCF.SUCCESS

    # Hooks -----------------------------------------------------------------

    def validate(self) -> Iterable[OCFError]:
        problems: list[OCFError] = []
        binary = self.config.text("binary")
        if not os.access(binary, os.X_OK):
            problems.append(OCFError(OCF.ERR_INSTALLED, f"{binary} is not installed or not executable"))
        if self.env.action not in ("start", "validate-all", "reload-agent"):
            return problems  # a monitor looks at the process recorded at start, not at the files
        config = self.config.text("config")
        if not os.path.isfile(config):
            problems.append(OCFError(OCF.ERR_INSTALLED, f"configuration file {config} does not exist"))
        directory = os.path.dirname(self.config.text("log_file"))
        if not os.path.isdir(directory):
            problems.append(OCFError(OCF.ERR_INSTALLED, f"the directory {directory} of log_file does not "
                                     "exist"))
        if not problems and self.env.action != "reload-agent":  # reload checks it itself: no refusal there
            failure = self.config_check()
            if failure:
                problems.append(OCFError(OCF.ERR_CONFIGURED, f"the configuration {failure}"))
        return problems

    # The configuration check -------------------------------------------------

    def config_check(self) -> str:
        """Empty when ``haproxy -c`` accepts the file; else what to say of it (never its content)."""
        from agents.ocf.proc import run

        config = self.config.text("config")
        done = run([self.config.text("binary"), "-c", "-f", config], self.deadline,
                   env={"PATH": SERVICE_PATH, "LANG": "C.UTF-8"}, cap=CHECK_CAP_S)
        if done.returncode == 0:
            return ""
        output = (done.stdout + done.stderr).splitlines()
        # haproxy's words may quote the file: the log may hold them, an exit reason never does.
        self.log.error(f"haproxy -c -f {config} exited {done.returncode}:\n"
                       + "\n".join(output[:MAX_LOGGED_LINES]))
        line = first_error_line(output, config)
        where = f" (first error at line {line})" if line else ""
        return f"fails haproxy's check{where}; the agent's log has haproxy's messages"

    def refuse(self, reason: str) -> OCF:
        self.log.error(reason)
        self.state.write(REFUSED, reason)
        return OCF.SUCCESS

    # Start -------------------------------------------------------------------

    @property
    def socket_path(self) -> str:
        return master_socket(self.env.rsctmp, self.env.instance)

    def launch(self) -> Identity:
        os.makedirs(self.state.path, mode=0o700, exist_ok=True)
        self._remove_socket()  # left by a master that was killed: haproxy would bind beside it anyway
        argv = [self.config.text("binary"), "-W", "-db", "-f", self.config.text("config"),
                "-S", f"{self.socket_path},mode,600"]
        env = {"PATH": SERVICE_PATH, "HOME": "/", "LANG": "C.UTF-8"}
        self.log.info(f"starting haproxy: {' '.join(argv)}")
        return self.daemon.spawn(argv, user=None, log_path=self.config.text("log_file"), env=env, cwd="/")

    def wait_until_serving(self, identity: Identity) -> None:
        """Until the master's CLI lists a worker, the master dies, or the start's deadline is spent."""
        last = "no answer yet"
        while True:
            if not identity.alive():
                raise OCFError(OCF.ERR_GENERIC, self.death_reason())
            try:
                procs = self.processes(cap=ASK_CAP_S)
            except OCFError as exc:
                last = exc.reason
            else:
                if procs.workers:
                    return
                last = "no worker yet"
            if self.deadline.remaining() <= START_POLL_S:
                break
            self.deadline.sleep(START_POLL_S)
        raise OCFError(OCF.ERR_GENERIC, f"haproxy did not start in time ({last}); "
                       f"{self.daemon.where_to_look()}")

    def death_reason(self) -> str:
        """How the master ended during start, and the address it could not bind, with its holder."""
        how = self.daemon.how_it_ended()
        where = self.daemon.where_to_look()
        self.daemon.forget()
        self._remove_socket()
        taken = self._unbindable()
        if taken:
            return f"haproxy {how}: {taken}; {where}"
        return f"haproxy {how}; {where}"

    def _unbindable(self) -> str:
        """``host:port is already in use by pid N (comm)`` when haproxy said it could not bind one."""
        import re
        import stat

        from agents.ocf.daemon import SAFE_FLAGS, file_size, listening_inodes, socket_owner

        log = self.config.text("log_file")
        offset = self.daemon.logs.get(log, 0)
        try:  # as the base opened it: no symbolic link, a regular file; a pattern is sought, nothing quoted
            fd = os.open(log, os.O_RDONLY | SAFE_FLAGS)
        except OSError:
            return ""
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return ""
            os.lseek(fd, max(offset, file_size(log) - LOG_TAIL_BYTES), os.SEEK_SET)
            text = os.read(fd, LOG_TAIL_BYTES).decode("utf-8", "replace")
        except OSError:
            return ""
        finally:
            os.close(fd)
        found = re.search(r"cannot bind socket \(([A-Za-z ]{1,60})\) for \[([0-9A-Fa-f.:]{2,45}):(\d{1,5})\]",
                          text)
        if found is None:
            return ""
        why, host, port = found.group(1), found.group(2), int(found.group(3))
        endpoint = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if why != "Address already in use":
            return f"it could not bind {endpoint} ({why})"
        inodes = listening_inodes(host, port)
        owner = socket_owner(inodes) if inodes else "another process"
        return f"{endpoint} is already in use by {owner}"

    def _remove_socket(self) -> None:
        import stat

        path = self.socket_path
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass

    # Monitor -------------------------------------------------------------------

    def check_alive(self, identity: Identity) -> None:
        """Depth 0: the master ours, alive, not frozen, its CLI answering, a live worker."""
        from agents.ocf.proc import read_stat

        super().check_alive(identity)
        procs = self.processes()
        if not procs.workers:
            raise OCFError(OCF.ERR_GENERIC, f"haproxy (pid {identity.pid}) has no worker")
        for pid in procs.workers:
            worker = read_stat(pid)
            if worker is not None and worker.state in "Tt":
                raise OCFError(OCF.ERR_GENERIC, f"the haproxy worker {pid} is frozen (stopped by a signal)")

    def processes(self, cap: float | None = None) -> Processes:
        return Processes.parse(MasterCLI(self.deadline, self.socket_path, cap).ask("show proc"))

    def backend_problems(self) -> list[str]:
        """Depth 10: which backends have no server up, and which servers are down."""
        answer = MasterCLI(self.deadline, self.socket_path).ask("@1 show stat")
        return describe_backends(parse_stat(answer))

    # Reload ----------------------------------------------------------------------

    def _send_reload(self) -> None:
        try:
            MasterCLI(self.deadline, self.socket_path, ASK_CAP_S).ask("reload")
        except OCFError as exc:
            # The master re-executes itself on "reload" and may close the CLI before answering.
            self.log.debug(f"reload: {exc.reason}")

    def wait_for_reload(self, identity: Identity, before: Processes) -> Processes:
        """Until the master counts one more reload and (if it succeeded) a new worker is up."""
        last = "no answer yet"
        while True:
            if not identity.alive():
                raise OCFError(OCF.ERR_GENERIC, f"haproxy (pid {identity.pid}) died during the reload; "
                               f"see {self.config.text('log_file')}")
            try:
                now = self.processes(cap=ASK_CAP_S)
            except OCFError as exc:
                last = exc.reason
            else:
                if now.reloads > before.reloads:
                    if now.failed > before.failed:
                        return now
                    if any(pid not in before.workers for pid in now.workers):
                        return now
                    last = "no new worker yet"
                else:
                    last = "the master has not reloaded yet"
            if self.deadline.remaining() <= START_POLL_S:
                break
            self.deadline.sleep(START_POLL_S)
        raise OCFError(OCF.ERR_GENERIC, f"haproxy did not complete the reload in time ({last})")

    # Stop ------------------------------------------------------------------------

    def soft_stop(self, identity: Identity) -> None:
        """SIGUSR1 to the master: its workers close their listeners and finish their connections."""
        import signal

        from agents.ocf.codes import DeadlineExceeded
        from agents.ocf.proc import Session, signal_all

        stat = identity.stat()
        if stat is None:
            return
        session = Session(identity)
        session.alive()
        signal_all([stat], signal.SIGUSR1)
        signal_all([stat], signal.SIGCONT)  # a frozen master acts on it once thawed
        grace = max(self.deadline.remaining() - max(SOFT_STOP_RESERVE_S, self.deadline.remaining() / 4), 0.0)
        try:
            self.deadline.wait_for(lambda: not session.alive(), "the soft stop of haproxy", cap=grace)
        except DeadlineExceeded:
            self.log.warning("haproxy's soft stop did not end in time: its connections are cut")


def master_socket(rsctmp: str, instance: str) -> str:
    """The master CLI socket of the haproxy resource ``instance`` (also how other agents reach it)."""
    from agents.ocf.state import StateDir

    state = StateDir(rsctmp, "haproxy", instance)
    path = state.file(SOCKET_NAME)
    if len(path) <= MAX_SOCKET_PATH and "," not in path:
        return path
    import hashlib

    # A long resource name: a short name beside the state directories, as private (HA_RSCTMP is root's).
    tag = hashlib.sha256(state.path.encode()).hexdigest()[:16]
    return os.path.join(rsctmp, f"openstack-haproxy-{tag}.sock")


class Front:
    """The servers of one backend in the local HAProxy, as another agent (an API's notify) sets them:
    out of rotation before its instances stop, back once they started."""

    def __init__(self, deadline: Deadline, socket_path: str, backend: str) -> None:
        self.cli = MasterCLI(deadline, socket_path, ASK_CAP_S)
        self.deadline = deadline
        self.backend = backend

    def set_state(self, servers: Sequence[str], state: str) -> list[str]:
        """``set server BACKEND/SERVER state STATE`` for each; the answers that were not empty (errors)."""
        problems = []
        for server in servers:
            for name in (server, fallback_of(server)):
                answer = self.cli.ask(f"@1 set server {self.backend}/{name} state {state}").strip()
                if answer and not (name != server and answer.startswith(NO_SUCH_SERVER)):
                    problems.append(f"{name}: {answer.splitlines()[0][:120]}")
        return problems

    def busy(self, servers: Sequence[str]) -> dict[str, int]:
        """Sessions under way on each of ``servers`` (and its fallback twin) that still has some and
        still passes its health checks (a hung or dead instance's sessions will never finish: not
        worth waiting for)."""
        sessions = current_sessions(self.cli.ask("@1 show stat"), self.backend)
        under_way = {}
        for server in servers:
            count, status = sessions.get(server, (0, ""))
            if status.startswith("DOWN"):
                continue
            count += sessions.get(fallback_of(server), (0, ""))[0]  # the same instance's requests
            if count > 0:
                under_way[server] = count
        return under_way

    def wait_idle(self, servers: Sequence[str], cap_s: float, poll_s: float = 0.1) -> dict[str, int]:
        """Until no session is under way on ``servers``, ``cap_s`` passed or the deadline (nearly) ends;
        what is left."""
        until = self.deadline.elapsed() + cap_s
        while True:
            left = self.busy(servers)
            if not left or self.deadline.remaining() <= 2 * poll_s or self.deadline.elapsed() >= until:
                return left
            self.deadline.sleep(poll_s)


def fallback_of(server: str) -> str:
    """The name of ``server``'s unchecked backup twin in a generated backend."""
    return server + FALLBACK_SUFFIX


def current_sessions(text: str, backend: str) -> dict[str, tuple[int, str]]:
    """Each server of ``backend``: its sessions under way (``scur``) and its status, from ``show stat``."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    header = lines[0][2:].split(",")
    try:
        px, sv, scur, status, kind = (header.index(name)
                                      for name in ("pxname", "svname", "scur", "status", "type"))
    except ValueError:
        return {}
    sessions = {}
    for line in lines[1:]:
        fields = line.split(",")
        if len(fields) > max(px, sv, scur, status, kind) and fields[kind] == "2" and fields[px] == backend:
            sessions[fields[sv]] = (int(fields[scur]) if fields[scur].isdigit() else 0, fields[status])
    return sessions


class Processes:
    """What the master CLI's ``show proc`` says: the master's reload counts and its current workers."""

    def __init__(self, reloads: int, failed: int, workers: list[int]) -> None:
        self.reloads = reloads
        self.failed = failed
        self.workers = workers

    @classmethod
    def parse(cls, text: str) -> Processes:
        reloads = failed = -1
        workers: list[int] = []
        section = ""
        for line in text.splitlines():
            if line.startswith("#"):
                section = line.strip("# ").split(" ")[0]
                continue
            fields = line.split()
            if len(fields) < 3 or not fields[0].isdigit():
                continue
            if fields[1] == "master":
                reloads = int(fields[2]) if fields[2].isdigit() else -1
                count = line.partition("[failed:")[2].partition("]")[0].strip()  # no ``re``: 5 ms
                failed = int(count) if count.isdigit() else 0
            elif fields[1] == "worker" and section == "workers":  # not the "old workers"
                workers.append(int(fields[0]))
        if reloads < 0:
            raise OCFError(OCF.ERR_GENERIC, "haproxy's master CLI answered show proc without its master line")
        return cls(reloads, failed, workers)


class MasterCLI:
    """One command on the master CLI socket; every wait within the deadline.

    ``_socket`` rather than ``socket``: the latter costs milliseconds of imports on every monitor.
    """

    def __init__(self, deadline: Deadline, path: str, cap: float | None = None) -> None:
        self.deadline = deadline
        self.path = path
        self.cap = cap

    def ask(self, command: str) -> str:
        import _socket

        began = self.deadline.elapsed()
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        answer = b""
        try:
            self._budget(sock)
            sock.connect(self.path)
            self._budget(sock)
            sock.sendall(command.encode() + b"\n")
            sock.shutdown(_socket.SHUT_WR)  # the master answers, then closes
            while len(answer) <= MAX_ANSWER_BYTES:
                self._budget(sock)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except OSError as exc:
            raise self._failure(command, exc, self.deadline.elapsed() - began) from None
        finally:
            sock.close()
        return answer.decode("utf-8", "replace")

    def _budget(self, sock: _socket.socket) -> None:
        left = self.deadline.timeout(self.cap)
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)

    @staticmethod
    def _failure(command: str, exc: OSError, waited: float) -> OCFError:
        what = command.split()[-2:]
        if isinstance(exc, TimeoutError):
            return OCFError(OCF.ERR_GENERIC, f"haproxy's master CLI did not answer {' '.join(what)} within "
                            f"{waited:.1f} s")
        if isinstance(exc, (ConnectionRefusedError, FileNotFoundError)):
            return OCFError(OCF.ERR_GENERIC, "haproxy's master CLI is not listening")
        return OCFError(OCF.ERR_GENERIC, f"haproxy's master CLI: {' '.join(what)} failed: "
                        f"{exc.strerror or type(exc).__name__}")


# Pure helpers (unit-tested) -------------------------------------------------------

def first_error_line(output: Sequence[str], config: str) -> int | None:
    """The line number of the first ``[file:line]`` haproxy's check names in ``config``."""
    import re

    for line in output:
        if "[ALERT]" not in line:
            continue
        for found in re.finditer(r"\[([^\]\s]+):(\d+)\]", line):
            if found.group(1) == config:
                return int(found.group(2))
    return None


def parse_stat(text: str) -> dict[str, tuple[list[str], list[str]]]:
    """Each backend's servers from ``show stat`` CSV: (servers up, servers down), in order."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise OCFError(OCF.ERR_GENERIC, "haproxy's worker answered show stat without its CSV header")
    header = lines[0][2:].split(",")
    try:
        px, sv, status, kind = (header.index(name) for name in ("pxname", "svname", "status", "type"))
    except ValueError:
        raise OCFError(OCF.ERR_GENERIC, "haproxy's show stat lacks a column this agent reads") from None
    backends: dict[str, tuple[list[str], list[str]]] = {}
    for line in lines[1:]:
        fields = line.split(",")  # proxy and server names cannot hold a comma
        if len(fields) <= max(px, sv, status, kind) or fields[kind] != "2":  # 2: a server
            continue
        if fields[sv].endswith(FALLBACK_SUFFIX):  # unchecked: no word on health
            continue
        up, down = backends.setdefault(fields[px], ([], []))
        (up if fields[status].startswith(UP_STATES) else down).append(fields[sv])
    return backends


def describe_backends(backends: dict[str, tuple[list[str], list[str]]]) -> list[str]:
    """What a degraded depth-10 monitor says, in a bounded length."""
    empty = [name for name, (up, down) in backends.items() if down and not up]
    down = [f"{name}/{server}" for name, (up, servers) in backends.items() if up for server in servers]
    problems = []
    if empty:
        prefix = "no backend has a server up; " if len(empty) == len(backends) else ""
        problems.append(f"{prefix}backends without a server: {_bounded(empty)}")
    if down:
        problems.append(f"servers down: {_bounded(down)}")
    return problems


def _bounded(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMED])
    return shown if len(names) <= MAX_NAMED else f"{shown} and {len(names) - MAX_NAMED} more"


AGENT = HAProxy

if __name__ == "__main__":
    AGENT.main()
