"""Agents that run a service process: what they share beyond ``agents.ocf.daemon``.

``DaemonAgent`` gives an agent its state directory and its ``Daemon`` (the
process it started, see ``agents.ocf.daemon``); with a broken configuration,
stop still stops what we started (the agent's ``stop``), and a probe reports
what we started as a depth-0 monitor would (the agent's ``check_alive``).
``TCPDaemonAgent`` adds what every agent of a service that listens on
``host:port`` does the same way:

* start: a recorded process that is still alive is kept; otherwise start
  refuses when another process already listens on the port, then launches the
  service and waits, within the start's deadline, until it answers (or dies:
  then the exit reason says how, and which log to read);
* monitor depth 0: the process we started (pid and start time) is alive, not
  frozen (stopped by a signal), and holds a LISTEN socket on ``host:port``
  (the kernel's socket table and the process's descriptors; no connection);
  depths 10 and 20 are the subclass's checks.

``host`` may name a network in CIDR form (``10.213.0.0/24``, ``2001:db8::/64``)
instead of an address: a clone's parameters are the same on every node, and
each node then listens on its own address in that network (behind HAProxy on
the VIP at the same port, for instance).  The address is read from the kernel
(rtnetlink) when the service is started, and recorded beside its identity:
monitors look where the running process was told to listen, with no netlink
round trip.  The rule, when the node holds several addresses in the network:
usable ones only (not tentative, duplicate address detection not failed; a
start waits up to 3 s for one that is only tentative); primary before
secondary (IPv4: an address added into the network of another one, as a VIP
is, is flagged secondary by the kernel; IPv6: temporary), then not deprecated
before deprecated (an IPv6 VIP added with ``preferred_lft 0``), then a
network-length prefix before a host-length one (a /32 or /128 VIP), then the
lowest address.  The choice is logged when there was one to make.  No
usable address in the network: ``ERR_INSTALLED``, this node cannot run it.

Actions stay declared in each agent (their timeouts and order are its
meta-data); they call the helpers here.
"""

from __future__ import annotations

from agents.ocf.agent import Agent
from agents.ocf.codes import OCF, OCFError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from agents.netlink import Address
    from agents.ocf.daemon import Daemon
    from agents.ocf.proc import Identity, User
    from agents.ocf.state import StateDir

START_POLL_S = 0.02
HOST_RECORD = "listen-address"  # the state file: "<host parameter> <address chosen at start>"
NETLINK_CAP_S = 2.0
TENTATIVE_WAIT_S = 3.0  # an IPv6 address under duplicate address detection: about 1 s by default
TENTATIVE_POLL_S = 0.1
ADDRESS_BITS = {4: 32, 16: 128}


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

    # Hooks a subclass provides ---------------------------------------------------

    def stop(self) -> OCF:
        raise NotImplementedError

    def check_alive(self, identity: Identity) -> None:
        """Depth 0: the recorded process ours and alive, not frozen; raises OCFError."""
        stat = identity.stat()
        if stat is None or not stat.alive:
            raise OCFError(OCF.NOT_RUNNING, f"{self.name} (pid {identity.pid}) is not running")
        if stat.state in "Tt":
            raise OCFError(OCF.ERR_GENERIC, f"{self.name} (pid {identity.pid}) is frozen "
                           "(stopped by a signal)")

    # Validation helpers ----------------------------------------------------------

    def user(self) -> User:
        """The account of the ``user`` parameter; raises OCFError."""
        from agents.ocf.proc import User

        return User.lookup(self.config.text("user"))

    def binary_problems(self) -> list[OCFError]:
        """The ``binary`` parameter is not an executable here: ERR_INSTALLED."""
        import os

        binary = self.config.text("binary")
        if os.access(binary, os.X_OK):
            return []
        return [OCFError(OCF.ERR_INSTALLED, f"{binary} is not installed or not executable")]

    def unprivileged_user_problems(self, refusal: str) -> list[OCFError]:
        """``user`` is unknown, or root (ERR_CONFIGURED, the reason ``refusal`` and what to do)."""
        try:
            if self.user().uid == 0:
                return [OCFError(OCF.ERR_CONFIGURED, f"{refusal}: set user to an unprivileged account")]
        except OCFError as exc:
            return [exc]
        return []

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

    def answering_once_listening(self, identity: Identity, check: Callable[[], None]) -> str:
        """An ``answering``: not yet while ``identity`` does not listen on ``host:port``, then
        ``check``'s exit reason until it passes."""
        if not self.listening(identity):
            return f"not listening on {self.endpoint} yet"
        try:
            check()
        except OCFError as exc:
            return exc.reason
        return ""

    def deep_check(self) -> None:
        """The depth-20 check: raises OCFError."""
        raise NotImplementedError

    # Where it listens ------------------------------------------------------------

    _host: str | None = None
    _resolved: tuple[str, str] | None = None  # (host parameter, address) read from the kernel

    @property
    def host(self) -> str:
        """The address to listen on and check: ``host``, or this node's address in its network."""
        if self._host is None:
            self._host = self.listen_address()
        return self._host

    def listen_address(self, fresh: bool = False) -> str:
        """What ``host`` means on this node; for a network, what the start chose (unless ``fresh``)."""
        given = self.config.text("host")
        network = parse_network(given)
        if network is None:
            return given
        recorded = (self.state.read(HOST_RECORD) or "").split()
        if not fresh and len(recorded) == 2 and recorded[0] == given:
            return recorded[1]
        return self.address_in(given, *network)

    def address_in(self, given: str, family: int, packed: bytes, prefix: int) -> str:
        """This node's address in the network ``given``, by the rule of the module's docstring
        (read from the kernel once per action: validate and the start share it)."""
        if self._resolved is None or self._resolved[0] != given:
            self._resolved = (given, self._address_in(given, family, packed, prefix))
        return self._resolved[1]

    def _address_in(self, given: str, family: int, packed: bytes, prefix: int) -> str:
        waited = 0.0
        while True:
            inside = self._addresses_in(family, packed, prefix)
            usable = sorted((a for a in inside if not a.tentative and not a.dad_failed), key=address_rank)
            # Only a tentative one (IPv6 duplicate address detection under way, at boot): wait a little.
            if usable or not [a for a in inside if a.tentative and not a.dad_failed] or \
                    waited >= TENTATIVE_WAIT_S or self.deadline.remaining() <= 2 * TENTATIVE_POLL_S:
                break
            self.deadline.sleep(TENTATIVE_POLL_S)
            waited += TENTATIVE_POLL_S
        if not usable:
            unusable = f" ({len(inside)} tentative or duplicate)" if inside else ""
            raise OCFError(OCF.ERR_INSTALLED, f"host {given}: this node has no address in that network"
                           f"{unusable}")
        chosen = address_text(usable[0])
        if len(usable) > 1:
            others = ", ".join(f"{address_text(a)}{address_notes(a)}" for a in usable[1:])
            self.log.info(f"host {given}: listening on {chosen}{address_notes(usable[0])}, the first of "
                          f"{len(usable)} addresses of this node in that network (primary before secondary, "
                          f"then the lowest); not on {others}")
        return chosen

    def _addresses_in(self, family: int, packed: bytes, prefix: int) -> list[Address]:
        from agents import netlink

        try:
            with netlink.Rtnl(self.deadline.timeout(NETLINK_CAP_S)) as rtnl:
                found = rtnl.addresses(family)
        except OSError as exc:
            raise OCFError(OCF.ERR_GENERIC, f"cannot read this node's addresses: "
                           f"{exc.strerror or type(exc).__name__}") from None
        return [a for a in found if a.family == family and len(a.local) == len(packed)
                and in_network(a.local, packed, prefix)]

    def record_listen_address(self) -> None:
        """Before a launch: resolve ``host`` anew and keep the answer for the monitors."""
        given = self.config.text("host")
        if parse_network(given) is None:
            self.state.remove(HOST_RECORD)
            self._host = given
            return
        self._host = self.listen_address(fresh=True)
        self.state.write(HOST_RECORD, f"{given} {self._host}\n")

    def host_problems(self) -> list[OCFError]:
        """For validate (start, validate-all): a network where this node has no address."""
        given = self.config.text("host")
        network = parse_network(given)
        if network is None:
            return []
        try:
            self.address_in(given, *network)
        except OCFError as exc:
            return [exc]
        return []

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
            self.record_listen_address()
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
        super().check_alive(identity)
        if not self.listening(identity):
            raise OCFError(OCF.ERR_GENERIC, f"{self.name} (pid {identity.pid}) is not listening on "
                           f"{self.endpoint}")


# host as a network --------------------------------------------------------------

def parse_network(text: str) -> tuple[int, bytes, int] | None:
    """``(family, network, prefix)`` of ``address/prefix``; None when ``text`` is not one.

    Raises ValueError for a malformed one (a bad prefix, host bits set): the parameter check.
    ``_socket`` rather than ``ipaddress``: this runs on every monitor.
    """
    import _socket

    address, slash, length = text.partition("/")
    if not slash:
        return None
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            packed = _socket.inet_pton(family, address)
        except OSError:
            continue
        bits = len(packed) * 8
        if not length.isdigit() or not 0 < int(length) <= bits:
            raise ValueError(f"{text!r}: the prefix length must be 1 to {bits}")
        prefix = int(length)
        if int.from_bytes(packed, "big") & ((1 << (bits - prefix)) - 1):
            raise ValueError(f"{text!r} has host bits set: write the network itself")
        if family == _socket.AF_INET6 and packed[0] == 0xFE and packed[1] & 0xC0 == 0x80:
            raise ValueError(f"{text!r}: a link-local network is not supported (it needs an interface)")
        return family, packed, prefix
    raise ValueError(f"{text!r} is not a network in CIDR form (address/prefix)")


def in_network(address: bytes, network: bytes, prefix: int) -> bool:
    shift = len(address) * 8 - prefix
    return int.from_bytes(address, "big") >> shift == int.from_bytes(network, "big") >> shift


def address_rank(address: Address) -> tuple[bool, bool, bool, bytes]:
    """Sort key of the candidates: primary, not deprecated, a network prefix, then the lowest."""
    return (address.secondary, address.deprecated, address.prefixlen == ADDRESS_BITS[len(address.local)],
            address.local)


def address_text(address: Address) -> str:
    import _socket

    return _socket.inet_ntop(address.family, address.local)


def address_notes(address: Address) -> str:
    notes = [note for note, flag in (("secondary", address.secondary), ("deprecated", address.deprecated))
             if flag]
    if address.prefixlen == ADDRESS_BITS[len(address.local)]:
        notes.append(f"/{address.prefixlen}")
    return f" ({', '.join(notes)})" if notes else ""


def check_listen_host(value: object, names: bool = False) -> None:
    """The parameter check of ``host``: an address, a network in CIDR form, or (``names``) a host name."""
    import re

    from agents.http import literal_family

    text = str(value)
    if "/" in text:
        parse_network(text)
        return
    bare = text.strip("[]") if text.startswith("[") else text
    if literal_family(bare) is not None:
        return
    if names and re.fullmatch(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})", bare):
        return
    kinds = "an IP address, a network in CIDR form or a host name (letters, digits, '.', '-')" if names else \
        "an IPv4 or IPv6 address (0.0.0.0 or :: for every address) or a network in CIDR form"
    raise ValueError(f"must be {kinds}, not {text!r}")


class CredentialsFile(Agent):
    """Mixin: the ``credentials`` and ``credentials_section`` parameters, a root-only INI file
    (``agents.ocf.daemon.read_credentials``) with what the depth-20 check logs in with.

    An agent lists it before its other bases and may override ``fallback_credentials`` (when
    no file is set) and ``required_credentials`` (the keys that must not be empty).
    """

    def credentials_problems(self) -> list[OCFError]:
        """For validate: the file, if set, cannot be read (``CredentialsError``, this node's)."""
        from agents.ocf.daemon import CredentialsError, read_credentials

        path = self.config.text("credentials")
        if not path:
            return []
        try:
            read_credentials(path, self.config.text("credentials_section"))
        except CredentialsError as problem:
            return [problem]
        return []

    def credentials(self) -> dict[str, str]:
        """What depth 20 logs in with; the password becomes a secret of the log.

        An unreadable file is ``Degraded`` (the service may be fine; only our deep check cannot
        run: never stop it for that); no credentials or missing keys, ``ERR_CONFIGURED``."""
        from agents.ocf.daemon import CredentialsError, Degraded, read_credentials

        path = self.config.text("credentials")
        if path:
            try:
                found = read_credentials(path, self.config.text("credentials_section"))
            except CredentialsError as problem:
                raise Degraded(problem.reason) from None
        else:
            found = self.fallback_credentials()
        self.log.add_secret(found.get("password", ""))
        missing = [key for key in self.required_credentials() if not found.get(key)]
        if missing:
            raise OCFError(OCF.ERR_CONFIGURED, f"credentials lack {', '.join(missing)}")
        return found

    def fallback_credentials(self) -> dict[str, str]:
        """Credentials when no file is set: none (``ERR_CONFIGURED``)."""
        raise OCFError(OCF.ERR_CONFIGURED, "depth 20 needs credentials: set the credentials parameter to a "
                       "root-only file")

    def required_credentials(self) -> tuple[str, ...]:
        return ("username", "password")
