"""Telling the segment about an address: gratuitous ARP, unsolicited NA, ARP probes.

Frames are built with ``struct`` and sent from raw sockets (``AF_PACKET`` for
ARP, an ICMPv6 raw socket for neighbour advertisements, whose checksum the
kernel fills in).  Only the ``start`` action imports this module.
"""

from __future__ import annotations

import _socket
import os
import struct
import time

from agents.ocf.codes import OCF, OCFError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from agents.netlink import Link
    from agents.ocf.deadline import Deadline

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
ARP_REQUEST = 1
ARP_REPLY = 2
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\0" * 6
ZERO_IP4 = b"\0" * 4
ETHER_HEADER = struct.Struct("!6s6sH")
ARP_BODY = struct.Struct("!HHBBH6s4s6s4s")
PACKET_OUTGOING = 4

ND_NEIGHBOR_ADVERT = 136
NA_FLAG_OVERRIDE = 0x20000000
ND_OPT_TARGET_LLADDR = 2
ALL_NODES = "ff02::1"
IPV6_UNICAST_HOPS = 16
IPV6_MULTICAST_IF = 17
IPV6_MULTICAST_HOPS = 18
ND_HOP_LIMIT = 255

# IPv4 address conflict detection (after RFC 5227, with shorter gaps: a
# failover waits on it): a few probes, then a quiet listen for answers.
PROBES = 3
PROBE_GAP_S = 0.2
LISTEN_AFTER_S = 0.4


def arp_frame(op: int, mac: bytes, sender_ip: bytes, target_mac: bytes, target_ip: bytes) -> bytes:
    header = ETHER_HEADER.pack(BROADCAST_MAC, mac, ETH_P_ARP)
    return header + ARP_BODY.pack(ARPHRD_ETHER, ETH_P_IP, 6, 4, op, mac, sender_ip, target_mac, target_ip)


def neighbour_advert(mac: bytes, target: bytes) -> bytes:
    """ICMPv6 NA with the override flag and our link-layer address; checksum left to the kernel."""
    option = struct.pack("!BB6s", ND_OPT_TARGET_LLADDR, 1, mac)
    return struct.pack("!BBHI16s", ND_NEIGHBOR_ADVERT, 0, 0, NA_FLAG_OVERRIDE, target) + option


def packet_socket(link: Link) -> _socket.socket:
    kind = _socket.SOCK_RAW | _socket.SOCK_CLOEXEC
    sock = _socket.socket(_socket.AF_PACKET, kind, _socket.htons(ETH_P_ARP))
    sock.bind((link.name, ETH_P_ARP))
    return sock


def sender(link: Link, family: int, ip: bytes) -> Callable[[], None]:
    """A function sending one round of announcements of ``ip`` on ``link``."""
    if family == _socket.AF_INET:
        arp = packet_socket(link)
        # Both forms: some hosts update their caches only from requests, others only from replies.
        frames = (arp_frame(ARP_REQUEST, link.mac, ip, ZERO_MAC, ip),
                  arp_frame(ARP_REPLY, link.mac, ip, BROADCAST_MAC, ip))

        def send_arp() -> None:
            for frame in frames:
                arp.send(frame)

        return send_arp
    icmp = _socket.socket(_socket.AF_INET6, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, _socket.IPPROTO_ICMPV6)
    icmp.setsockopt(_socket.IPPROTO_IPV6, IPV6_MULTICAST_HOPS, ND_HOP_LIMIT)
    icmp.setsockopt(_socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS, ND_HOP_LIMIT)
    icmp.setsockopt(_socket.IPPROTO_IPV6, IPV6_MULTICAST_IF, link.index)
    icmp.bind((_socket.inet_ntop(_socket.AF_INET6, ip), 0, 0, link.index))
    advert = neighbour_advert(link.mac, ip)
    destination = (ALL_NODES, 0, 0, link.index)

    def send_na() -> None:
        icmp.sendto(advert, destination)

    return send_na


def announce(send: Callable[[], None], count: int, interval_s: float, deadline: Deadline,
             still_ours: Callable[[], bool], background: bool) -> int:
    """Send ``count`` rounds ``interval_s`` apart; return how many this process sent.

    The first round always goes out before returning.  With ``background``
    the rest is left to a detached child, so that ``start`` returns as soon
    as the address is usable; in the foreground the rounds stop at the
    deadline.  Either way they stop early when the address is no longer ours.
    """
    if count <= 0:
        return 0
    send()
    rest = count - 1
    if rest and background:
        role = _fork_detached()
        if role == "parent":
            return 1
        if role == "child":
            try:
                _repeat(send, rest, interval_s, None, still_ours)
            finally:
                os._exit(0)
    return 1 + _repeat(send, rest, interval_s, deadline, still_ours)


def _repeat(send: Callable[[], None], rounds: int, interval_s: float, deadline: Deadline | None,
            still_ours: Callable[[], bool]) -> int:
    sent = 0
    for _ in range(rounds):
        if deadline is not None and deadline.remaining() <= interval_s:
            break
        time.sleep(interval_s)
        if not still_ours():
            break
        send()
        sent += 1
    return sent


def _fork_detached() -> str:
    """Fork a child that leaves the executor's session and pipes: "parent", "child" or "failed"."""
    try:
        pid = os.fork()
    except OSError:
        return "failed"
    if pid:
        return "parent"
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
    except OSError:
        os._exit(1)
    return "child"


def arp_conflict(link: Link, ip: bytes, deadline: Deadline, budget_s: float) -> bytes | None:
    """Probe for ``ip`` with sender 0.0.0.0; the MAC of a host that claims it, or None."""
    sock = packet_socket(link)
    probe = arp_frame(ARP_REQUEST, link.mac, ZERO_IP4, ZERO_MAC, ip)
    until = time.monotonic() + min(budget_s, deadline.remaining())
    next_probe = time.monotonic()
    probes = 0
    try:
        while True:
            now = time.monotonic()
            if probes < PROBES and now >= next_probe:
                sock.send(probe)
                probes += 1
                next_probe = now + PROBE_GAP_S
                if probes == PROBES:
                    until = min(until, now + LISTEN_AFTER_S)
            wake = min(until, next_probe) if probes < PROBES else until
            if now >= until:
                return None
            sock.settimeout(max(wake - now, 0.001))
            try:
                frame, address = sock.recvfrom(2048)
            except TimeoutError:
                continue
            holder = _claimant(frame, address, link.mac, ip)
            if holder is not None:
                return holder
    finally:
        sock.close()


def _claimant(frame: bytes, address: tuple[object, ...], our_mac: bytes, ip: bytes) -> bytes | None:
    """The sender MAC when ``frame`` shows another host using or probing for ``ip``."""
    outgoing = len(address) > 2 and address[2] == PACKET_OUTGOING
    if outgoing or len(frame) < ETHER_HEADER.size + ARP_BODY.size:
        return None
    if ETHER_HEADER.unpack_from(frame)[2] != ETH_P_ARP:
        return None
    _htype, ptype, _hlen, _plen, op, sha, spa, _tha, tpa = ARP_BODY.unpack_from(frame, ETHER_HEADER.size)
    if ptype != ETH_P_IP or sha == our_mac:
        return None
    if spa == ip:
        return bytes(sha)
    if op == ARP_REQUEST and spa == ZERO_IP4 and tpa == ip:
        return bytes(sha)
    return None


def conflict_error(nic: str, text_ip: str, holder: bytes) -> OCFError:
    mac = ":".join(f"{b:02x}" for b in holder)
    return OCFError(OCF.ERR_GENERIC, f"duplicate address: {text_ip} is already in use on the network "
                                     f"of {nic} by {mac}")
