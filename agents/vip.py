"""``vip``: a virtual IPv4 or IPv6 address on this node, managed over netlink.

A replacement for ``ocf:heartbeat:IPaddr2`` whose parameters keep IPaddr2's
names where they mean the same, so a CIB can swap the agent.  Addresses are
handled as the bytes the kernel uses and compared exactly; the interface is
either given or derived from the connected routes of the main table.
"""

from __future__ import annotations

import _socket

from agents import netlink
from agents.ocf.actions import Advert, action
from agents.ocf.agent import Agent
from agents.ocf.codes import OCF, OCFError
from agents.ocf.params import Param

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from agents.netlink import Address, Link, Rtnl

BITS = {_socket.AF_INET: 32, _socket.AF_INET6: 128}
IFNAMSIZ = 16
NETLINK_TIMEOUT_S = 5.0
DAD_POLL_S = 0.05
# How long a nodad IPv6 address may wait for the kernel to activate its link.
LINK_READY_WAIT_S = 2.0
# Actions that decide where the address goes, and so resolve the interface.
PLACING_ACTIONS = frozenset(("start", "validate-all"))


# (family, network, prefix length, why): addresses that cannot be a VIP.
UNUSABLE = (
    (_socket.AF_INET, 0, 32, "the unspecified address"),
    (_socket.AF_INET, 0xE0000000, 3, "a multicast, reserved or broadcast address"),
    (_socket.AF_INET6, 0, 128, "the unspecified address"),
    (_socket.AF_INET6, 0xFF << 120, 8, "a multicast address"),
    (_socket.AF_INET6, 0xFE80 << 112, 10, "link-local (not supported: it needs a scope)"),
    (_socket.AF_INET6, 0xFFFF << 32, 96, "an IPv4-mapped IPv6 address (give the IPv4 address)"),
)


# Parsing, shared by the parameter checks and the actions ---------------------

def parse_ip(text: str) -> tuple[int, bytes]:
    """(family, packed address) of a unicast address usable as a VIP, or ValueError."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            packed = _socket.inet_pton(family, text)
        except (OSError, ValueError, UnicodeError):
            continue
        problem = _unusable(family, packed)
        if problem:
            raise ValueError(f"{text!r} is {problem}")
        return family, packed
    raise ValueError(f"is not an IPv4 or IPv6 address: {text!r}")


def _unusable(family: int, packed: bytes) -> str:
    value = int.from_bytes(packed, "big")
    shift_base = len(packed) * 8
    for kind, network, prefix, problem in UNUSABLE:
        if kind == family and value >> (shift_base - prefix) == network >> (shift_base - prefix):
            return problem
    return ""


def parse_prefix(text: str, family: int | None = None) -> int:
    """A prefix length from ``24`` (or a dotted IPv4 netmask like ``255.255.255.0``)."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        prefix = int(text)
        limit = BITS[family] if family else 128
        if not 1 <= prefix <= limit:
            raise ValueError(f"must be a prefix length from 1 to {limit}, not {text!r}")
        return prefix
    if family == _socket.AF_INET6:
        raise ValueError(f"must be a prefix length for an IPv6 address, not {text!r}")
    try:
        mask = int.from_bytes(_socket.inet_pton(_socket.AF_INET, text), "big")
    except (OSError, ValueError, UnicodeError):
        raise ValueError(f"must be a prefix length (24) or a netmask (255.255.255.0), not {text!r}") from None
    inverted = ~mask & 0xFFFFFFFF
    if mask == 0 or inverted & (inverted + 1):
        raise ValueError(f"is not a contiguous netmask: {text!r}")
    return 32 - inverted.bit_length()


def check_nic(value: object) -> None:
    name = str(value)
    if ":" in name:
        raise ValueError(f"must be a base interface, not an alias label: {name!r}")
    too_long = len(name.encode("utf-8", "replace")) >= IFNAMSIZ
    if too_long or "/" in name or not name.isprintable() or name != name.strip() or name in (".", ".."):
        raise ValueError(f"is not a valid interface name: {name!r}")


def check_broadcast(value: object) -> None:
    text = str(value)
    if text not in ("+", "-"):
        try:
            _socket.inet_pton(_socket.AF_INET, text)
        except (OSError, ValueError, UnicodeError):
            raise ValueError(f"must be an IPv4 address, '+' or '-', not {text!r}") from None


def covers(network: bytes, prefix: int, address: bytes) -> bool:
    shift = len(address) * 8 - prefix
    return int.from_bytes(network, "big") >> shift == int.from_bytes(address, "big") >> shift


def text_of(family: int, packed: bytes) -> str:
    return _socket.inet_ntop(family, packed)


def _check_ip(value: object) -> None:
    parse_ip(str(value))


def _check_prefix(value: object) -> None:
    parse_prefix(str(value))


PARAMS = (
    Param("ip", required=True, unique=True, check=_check_ip,
          shortdesc="IPv4 or IPv6 address",
          longdesc="The virtual address, IPv4 (192.0.2.10) or IPv6 (2001:db8::10). "
                   "Unicast only; IPv6 link-local addresses are not supported."),
    Param("nic", check=check_nic,
          shortdesc="Network interface",
          longdesc="The base interface that carries the address (no alias labels). If empty, it is "
                   "the interface whose connected route in the main table covers the address, with "
                   "the longest prefix; none or several such interfaces is a configuration error."),
    Param("cidr_netmask", check=_check_prefix,
          shortdesc="Prefix length (CIDR netmask)",
          longdesc="Prefix length of the address (24, not 255.255.255.0, although a dotted IPv4 "
                   "netmask is accepted). If empty, the prefix of the connected route that covers "
                   "the address on the interface; without such a route, a host prefix (32 or 128)."),
    Param("broadcast", check=check_broadcast,
          shortdesc="Broadcast address (IPv4)",
          longdesc="IPv4 broadcast address, or '+' (host bits set) or '-' (host bits cleared). If "
                   "empty, '+' for prefixes up to /30 and none for /31 and /32. Not used for IPv6."),
    Param("arp_count", "integer", default=5, minimum=0, maximum=100, reloadable=True,
          shortdesc="Announcements sent at start",
          longdesc="Rounds of unsolicited announcements at start: for IPv4 a gratuitous ARP request "
                   "and reply, for IPv6 an unsolicited neighbour advertisement (override flag, to "
                   "ff02::1). 0 sends none."),
    Param("arp_count_refresh", "integer", default=0, minimum=0, maximum=100, reloadable=True,
          shortdesc="Announcements sent by each recurring monitor",
          longdesc="Rounds of unsolicited announcements (as at start) sent by every recurring monitor "
                   "that finds the address healthy, never by a probe: it repairs neighbour caches left "
                   "stale by a split brain. 0 sends none."),
    Param("arp_interval", "integer", default=200, minimum=1, maximum=10000, reloadable=True,
          shortdesc="Milliseconds between announcements",
          longdesc="Interval between two rounds of announcements, in milliseconds."),
    Param("arp_bg", "boolean", default=True, reloadable=True,
          shortdesc="Announce in the background",
          longdesc="Send the first round before start returns and the rest from a detached process "
                   "(start then takes no longer than one round). If false, start sends every round "
                   "itself and stops early when its timeout comes near."),
    Param("dad", "boolean", default=False, reloadable=True,
          shortdesc="Duplicate address detection before taking the address",
          longdesc="Check that no other host uses the address before taking it: for IPv4 ARP probes "
                   "with sender 0.0.0.0 (about 0.8 s), for IPv6 the kernel's DAD (the address is "
                   "tentative until it completes; dadfailed means a duplicate). A duplicate fails "
                   "the start. If false, IPv6 addresses are added with nodad."),
    Param("dad_timeout", "integer", default=3000, minimum=100, maximum=60000, reloadable=True,
          shortdesc="Longest wait for duplicate address detection (ms)",
          longdesc="Milliseconds start waits for duplicate address detection to conclude, and "
                   "never longer than the start timeout allows. IPv6 DAD that has not concluded by "
                   "then fails the start."),
)


class Placement:
    """Where the address goes: interface index and name, prefix length."""

    __slots__ = ("index", "nic", "prefix")

    def __init__(self, index: int, nic: str, prefix: int) -> None:
        self.index = index
        self.nic = nic
        self.prefix = prefix


class Vip(Agent):
    name = "vip"
    version = "1.0"
    shortdesc = "Manages a virtual IPv4 or IPv6 address (netlink, IPaddr2-compatible parameters)"
    longdesc = ("Adds a virtual IPv4 or IPv6 address to a network interface, announces it with "
                "gratuitous ARP or unsolicited neighbour advertisements, optionally checks for a "
                "duplicate first, and monitors that the address is present on an interface that is "
                "up with carrier. Parameters keep the names of ocf:heartbeat:IPaddr2.")
    params = PARAMS

    _placement: Placement | None = None

    @property
    def target(self) -> tuple[int, bytes]:
        return parse_ip(self.config.text("ip"))

    # Validation ------------------------------------------------------------

    def validate(self) -> Iterable[OCFError]:
        family, _packed = self.target
        problems = []
        netmask = self.config.text("cidr_netmask")
        if netmask:
            try:
                parse_prefix(netmask, family)
            except ValueError as err:
                problems.append(OCFError(OCF.ERR_CONFIGURED, f"parameter cidr_netmask {err}"))
        if self.config.text("broadcast") and family != _socket.AF_INET:
            problems.append(OCFError(OCF.ERR_CONFIGURED, "parameter broadcast applies to IPv4 only"))
        if not problems and self.env.action in PLACING_ACTIONS:
            try:
                with netlink.Rtnl(self.deadline.timeout(NETLINK_TIMEOUT_S)) as rtnl:
                    self._placement = self._place(rtnl)
            except OCFError as err:
                problems.append(err)
        return problems

    def stop_unconfigured(self, problems: Sequence[OCFError]) -> OCF:
        # Remove the address only if we know exactly which one and where: a
        # parameter that failed to parse may have meant another interface.
        raw_nic = self.env.raw.get("OCF_RESKEY_nic", "")
        if "ip" not in self.config.given or (raw_nic and "nic" not in self.config.given):
            return OCF.SUCCESS
        return self.stop()

    def _place(self, rtnl: Rtnl) -> Placement:
        family, packed = self.target
        nic = self.config.text("nic")
        routes = [r for r in rtnl.routes(family) if r.connected and covers(r.dst, r.dst_len, packed)]
        if nic:
            index = netlink.interface_index(nic)
            if index is None:
                raise OCFError(OCF.ERR_INSTALLED, f"interface {nic} does not exist on this node")
            routes = [r for r in routes if r.oif == index]
        else:
            index, nic = self._derive_nic(rtnl, routes, family, packed)
        netmask = self.config.text("cidr_netmask")
        if netmask:
            prefix = parse_prefix(netmask, family)
        elif routes:
            prefix = max(r.dst_len for r in routes)
        else:
            prefix = BITS[family]
        return Placement(index, nic, prefix)

    def _derive_nic(self, rtnl: Rtnl, routes: list[netlink.Route], family: int,
                    packed: bytes) -> tuple[int, str]:
        ip = text_of(family, packed)
        if not routes:
            self._subnet_down(rtnl, family, packed, ip)
            raise OCFError(OCF.ERR_CONFIGURED, f"cannot derive nic: no connected route of the main table "
                                               f"covers {ip}; set the nic parameter")
        longest = max(r.dst_len for r in routes)
        indexes = sorted({r.oif for r in routes if r.dst_len == longest})
        names = [self._link_name(rtnl, i) for i in indexes]
        if len(indexes) > 1:
            raise OCFError(OCF.ERR_CONFIGURED, f"cannot derive nic: {ip} is covered by connected routes "
                                               f"/{longest} on {', '.join(names)}; set the nic parameter")
        return indexes[0], names[0]

    def _subnet_down(self, rtnl: Rtnl, family: int, packed: bytes, ip: str) -> None:
        """A soft error when the address's network is configured here on an interface that is down.

        The kernel removes connected routes of a link that goes down: that is a
        fault of this node, not of the configuration, so the VIP may still
        start elsewhere.
        """
        for address in rtnl.addresses(family):
            if address.prefixlen < BITS[family] and covers(address.local, address.prefixlen, packed):
                name = self._link_name(rtnl, address.index)
                raise OCFError(OCF.ERR_GENERIC, f"cannot derive nic: the network of {ip} is on {name}, "
                                                f"which is down (no connected route)")

    @staticmethod
    def _link_name(rtnl: Rtnl, index: int) -> str:
        link = rtnl.link(index)
        return link.name if link else f"#{index}"

    # Actions ---------------------------------------------------------------

    @action("monitor", Advert(timeout=20, interval=10))
    def monitor(self) -> OCF:
        family, packed = self.target
        with netlink.Rtnl(self.deadline.timeout(NETLINK_TIMEOUT_S)) as rtnl:
            held = self._held(rtnl)
            if not held:
                return OCF.NOT_RUNNING
            links = []
            for address in held:
                link = rtnl.link(address.index)
                if link is None:
                    return OCF.NOT_RUNNING
                self._check_healthy(address, link, text_of(family, packed))
                links.append(link)
        refresh = self.config.integer("arp_count_refresh")
        if refresh and self.env.interval_ms > 0:
            for link in links:
                self._announce(link, family, packed, refresh)
        return OCF.SUCCESS

    @action("start", timeout=20)
    def start(self) -> OCF:
        family, packed = self.target
        ip = text_of(family, packed)
        placement = self._placement
        if placement is None:
            raise OCFError(OCF.ERR_GENERIC, "start without a resolved interface")
        with netlink.Rtnl(self.deadline.timeout(NETLINK_TIMEOUT_S)) as rtnl:
            link = rtnl.link(placement.index)
            if link is None:
                raise OCFError(OCF.ERR_INSTALLED, f"interface {placement.nic} disappeared")
            existing = [a for a in rtnl.addresses(family) if a.local == packed]
            if self._already_started(rtnl, existing, link, ip):
                return OCF.SUCCESS
            self._check_link(link, ip)
            self._duplicate_check_ipv4(link, family, packed, ip)
            self._add(rtnl, link, family, packed, placement)
            self._await_ipv6_usable(rtnl, link, family, packed, ip)
        self._announce(link, family, packed, self.config.integer("arp_count"))
        self.log.info(f"{ip}/{placement.prefix} is up on {link.name}")
        return OCF.SUCCESS

    @action("stop", timeout=20)
    def stop(self) -> OCF:
        with netlink.Rtnl(self.deadline.timeout(NETLINK_TIMEOUT_S)) as rtnl:
            for address in self._held(rtnl):
                rtnl.delete_address(address)
            if self._held(rtnl):
                raise OCFError(OCF.ERR_GENERIC, f"{self.config.text('ip')} is still present after removal")
        return OCF.SUCCESS

    @action("reload-agent", timeout=20)
    def reload_agent(self) -> OCF:
        # Every reloadable parameter only shapes future starts and monitors; the address stays.
        return OCF.SUCCESS

    # Pieces ----------------------------------------------------------------

    def _held(self, rtnl: Rtnl) -> list[Address]:
        """Our address where the kernel holds it: on the given nic, or on any interface."""
        family, packed = self.target
        nic = self.config.text("nic")
        index = netlink.interface_index(nic) if nic else None
        if nic and index is None:
            return []
        return [a for a in rtnl.addresses(family)
                if a.local == packed and (index is None or a.index == index)]

    def _check_healthy(self, address: Address, link: Link, ip: str) -> None:
        if address.dad_failed:
            raise OCFError(OCF.ERR_GENERIC, f"duplicate address: kernel DAD failed for {ip} on {link.name}")
        self._check_link(link, ip)

    @staticmethod
    def _check_link(link: Link, ip: str) -> None:
        if not link.admin_up:
            raise OCFError(OCF.ERR_GENERIC, f"interface {link.name} of {ip} is administratively down")
        if not link.carrier:
            raise OCFError(OCF.ERR_GENERIC, f"interface {link.name} of {ip} has no carrier (link down)")

    def _already_started(self, rtnl: Rtnl, existing: list[Address], link: Link, ip: str) -> bool:
        others = sorted({self._link_name(rtnl, a.index) for a in existing if a.index != link.index})
        if others:
            raise OCFError(OCF.ERR_GENERIC, f"{ip} is already configured on {', '.join(others)}, "
                                            f"not on {link.name}")
        for address in existing:
            if not address.dad_failed:
                self._check_healthy(address, link, ip)
                self.log.info(f"{ip} is already on {link.name}")
                return True
            rtnl.delete_address(address)
        return False

    def _add(self, rtnl: Rtnl, link: Link, family: int, packed: bytes, placement: Placement) -> None:
        flags = 0
        if family == _socket.AF_INET6 and not self.config.boolean("dad"):
            flags |= netlink.IFA_F_NODAD
        try:
            rtnl.add_address(link.index, family, packed, placement.prefix,
                             self._broadcast(family, packed, placement.prefix), flags)
        except netlink.NetlinkError as err:
            raise OCFError(OCF.ERR_GENERIC, f"cannot add {text_of(family, packed)}/{placement.prefix} "
                                            f"to {link.name}: {err.strerror}") from None

    def _broadcast(self, family: int, packed: bytes, prefix: int) -> bytes | None:
        if family != _socket.AF_INET:
            return None
        choice = self.config.text("broadcast") or ("+" if prefix <= 30 else "")
        if choice not in ("+", "-"):
            return _socket.inet_pton(_socket.AF_INET, choice) if choice else None
        hostmask = (1 << (32 - prefix)) - 1
        value = int.from_bytes(packed, "big")
        value = value | hostmask if choice == "+" else value & ~hostmask
        return value.to_bytes(4, "big")

    def _dad_budget_s(self) -> float:
        return self.deadline.timeout(self.config.integer("dad_timeout") / 1000.0)

    def _duplicate_check_ipv4(self, link: Link, family: int, packed: bytes, ip: str) -> None:
        if family != _socket.AF_INET or not self.config.boolean("dad"):
            return
        if not link.ethernet:
            self.log.warning(f"no ARP probe on {link.name}: not an Ethernet interface")
            return
        from agents import announce

        holder = announce.arp_conflict(link, packed, self.deadline, self._dad_budget_s())
        if holder is not None:
            raise announce.conflict_error(link.name, ip, holder)

    def _await_ipv6_usable(self, rtnl: Rtnl, link: Link, family: int, packed: bytes, ip: str) -> None:
        """Wait until the kernel stops calling the address tentative: DAD done, or the link ready.

        Even a nodad address stays tentative until the kernel has activated the
        link (which can lag behind carrier by up to a second); it cannot send
        until then.  With ``dad`` a duplicate or an unfinished DAD fails the
        start; without, a still-tentative address is only worth a warning.
        """
        if family != _socket.AF_INET6:
            return
        dad = self.config.boolean("dad")
        budget = self._dad_budget_s() if dad else self.deadline.timeout(LINK_READY_WAIT_S)
        outcome: list[Address] = []

        def concluded() -> bool:
            outcome[:] = [a for a in rtnl.addresses(family) if a.local == packed and a.index == link.index]
            return not outcome or outcome[0].dad_failed or not outcome[0].tentative

        try:
            self.deadline.wait_for(concluded, "waiting for IPv6 DAD", DAD_POLL_S, cap=budget)
        except OCFError:
            if not dad:
                self.log.warning(f"{ip} is still tentative on {link.name}; announcing it may fail")
                return
            self._remove(rtnl, outcome)
            raise OCFError(OCF.ERR_GENERIC, f"IPv6 DAD for {ip} on {link.name} did not conclude within "
                                            f"{budget * 1000:.0f} ms") from None
        if not outcome:
            raise OCFError(OCF.ERR_GENERIC, f"{ip} vanished from {link.name} while it was tentative")
        if outcome[0].dad_failed:
            self._remove(rtnl, outcome)
            raise OCFError(OCF.ERR_GENERIC, f"duplicate address: IPv6 DAD failed for {ip} on {link.name}, "
                                            f"another host uses it")

    @staticmethod
    def _remove(rtnl: Rtnl, addresses: list[Address]) -> None:
        for address in addresses:
            rtnl.delete_address(address)

    def _announce(self, link: Link, family: int, packed: bytes, count: int) -> None:
        if count <= 0:
            return
        if not link.ethernet:
            self.log.info(f"no announcements on {link.name}: not an Ethernet interface")
            return
        from agents import announce

        def still_ours() -> bool:
            with netlink.Rtnl(NETLINK_TIMEOUT_S) as rtnl:
                return any(a.local == packed and a.index == link.index for a in rtnl.addresses(family))

        try:
            send = announce.sender(link, family, packed)
            sent = announce.announce(send, count, self.config.integer("arp_interval") / 1000.0, self.deadline,
                                     still_ours, self.config.boolean("arp_bg"))
        except OSError as err:
            self.log.warning(f"announcing {text_of(family, packed)} on {link.name} failed: {err}")
            return
        self.log.debug(f"sent {sent} of {count} announcement rounds in the foreground")


AGENT = Vip
