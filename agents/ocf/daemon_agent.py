"""Agents that run a service process: what they share beyond ``agents.ocf.daemon``.

``DaemonAgent`` gives an agent its state directory and its ``Daemon`` (the
process it started, see ``agents.ocf.daemon``).  ``TCPDaemonAgent`` adds what
every agent of a service that listens on ``host:port`` does the same way:

* start: a recorded process that is still alive is kept; otherwise start
  refuses when another process already listens on the port, then launches the
  service and waits, within the start's deadline, until it answers (or dies:
  then the exit reason says how, and which log to read);
* monitor depth 0: the process we started (pid and start time) is alive, not
  frozen (stopped by a signal), and holds a LISTEN socket on ``host:port``
  (the kernel's socket table and the process's descriptors; no connection);
  depths 10 and 20 are the subclass's checks;
* with a broken configuration, stop still stops what we started, and a probe
  reports what we started as a depth-0 monitor would.

Actions stay declared in each agent (their timeouts and order are its
meta-data); they call the helpers here.
"""

from __future__ import annotations

from agents.ocf.agent import Agent
from agents.ocf.codes import OCF, OCFError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from agents.ocf.daemon import Daemon
    from agents.ocf.proc import Identity
    from agents.ocf.state import StateDir

START_POLL_S = 0.02


class DaemonAgent(Agent):
    """An agent whose resource is one service process, recorded in its state directory."""

    daemon_what = ""  # how stop and a failed start name the process; empty: the agent's name
    daemon_record = "identity"  # the state file holding its pid and start time
    _daemon: Daemon | None = None

    @property
    def state(self) -> StateDir:
        from agents.ocf.state import StateDir

        return StateDir(self.env.rsctmp, self.name, self.env.instance)

    @property
    def daemon(self) -> Daemon:
        """One per action: it keeps what a start spawned (functools.cached_property: 2 ms of imports)."""
        if self._daemon is None:
            from agents.ocf.daemon import Daemon

            self._daemon = Daemon(self.state, self.daemon_what or self.name, record=self.daemon_record)
        return self._daemon


class TCPDaemonAgent(DaemonAgent):
    """A service listening on the ``host`` and ``port`` parameters.

    Subclasses provide ``launch``, ``answering``, ``check_version`` (depth 10), ``deep_check``
    (depth 20) and a ``stop`` action.
    """

    # Hooks a subclass provides ---------------------------------------------------

    def launch(self) -> Identity:
        """Spawn the service through ``self.daemon``."""
        raise NotImplementedError

    def answering(self, identity: Identity) -> str:
        """Empty when the service just started answers; else why not yet (an OCFError gives up)."""
        raise NotImplementedError

    def check_version(self) -> None:
        """The depth-10 check: raises OCFError."""
        raise NotImplementedError

    def deep_check(self) -> None:
        """The depth-20 check: raises OCFError."""
        raise NotImplementedError

    def stop(self) -> OCF:
        raise NotImplementedError

    # Where it listens ------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.config.text("host")

    @property
    def port(self) -> int:
        return self.config.integer("port")

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    # Start -----------------------------------------------------------------------

    def start_daemon(self) -> OCF:
        identity = self.daemon.recorded()
        if identity is None or not identity.alive():  # never started, or died since: start anew
            self.check_port_free()
            identity = self.launch()
        self.wait_until_answering(identity)
        self.log.info(f"{self.name} answers on {self.endpoint} (pid {identity.pid})")
        return OCF.SUCCESS

    def check_port_free(self) -> None:
        from agents.ocf.daemon import listening_inodes, socket_owner

        inodes = listening_inodes(self.host, self.port)
        if inodes:
            raise OCFError(OCF.ERR_GENERIC, f"cannot start {self.name}: {self.endpoint} is already in use "
                           f"by {socket_owner(inodes)}")

    def wait_until_answering(self, identity: Identity) -> None:
        """Until ``answering`` says so, the process dies, or the start's deadline is (nearly) spent."""
        last = "no answer yet"
        while True:
            if not identity.alive():
                raise OCFError(OCF.ERR_GENERIC, self.daemon.exited())
            try:
                last = self.answering(identity)
            except OCFError:
                break
            if not last:
                return
            if self.deadline.remaining() <= START_POLL_S:
                break
            self.deadline.sleep(START_POLL_S)
        raise OCFError(OCF.ERR_GENERIC, f"{self.name} did not answer in time ({last}); "
                       f"{self.daemon.where_to_look()}")

    # Monitor ---------------------------------------------------------------------

    def monitor_daemon(self) -> OCF:
        identity = self.daemon.recorded()
        if identity is None:
            return OCF.NOT_RUNNING
        self.check_alive(identity)
        if self.env.check_level >= 10:
            self.check_version()
        if self.env.check_level >= 20:
            self.deep_check()
        return OCF.SUCCESS

    def listening(self, identity: Identity) -> bool:
        from agents.ocf.daemon import listening_inodes, owns_socket

        inodes = listening_inodes(self.host, self.port)
        return bool(inodes) and owns_socket(identity, inodes)

    def check_alive(self, identity: Identity) -> None:
        """Depth 0: ours and alive, not frozen, and holding its listening socket."""
        stat = identity.stat()
        if stat is None or not stat.alive:
            raise OCFError(OCF.NOT_RUNNING, f"{self.name} (pid {identity.pid}) is not running")
        if stat.state in "Tt":
            raise OCFError(OCF.ERR_GENERIC, f"{self.name} (pid {identity.pid}) is frozen "
                           "(stopped by a signal)")
        if not self.listening(identity):
            raise OCFError(OCF.ERR_GENERIC, f"{self.name} (pid {identity.pid}) is not listening on "
                           f"{self.endpoint}")

    # With a broken configuration -------------------------------------------------

    def stop_unconfigured(self, problems: Sequence[OCFError]) -> OCF:
        """Without the software or a valid configuration, still stop what we started."""
        return self.stop()

    def probe_unconfigured(self, problems: Sequence[OCFError]) -> OCF:
        """What we started is reported as it is: a probe must not hide a running service."""
        identity = self.daemon.recorded()
        if identity is None:
            return OCF.NOT_RUNNING
        self.check_alive(identity)
        return OCF.SUCCESS
