"""A small rtnetlink client: addresses, links and routes, straight from the kernel.

Only what the ``vip`` agent needs: dump addresses, read one link, dump
routes, add and delete an address.  Messages are packed with ``struct``;
addresses stay the raw bytes the kernel uses, so comparing two of them is an
exact byte comparison (10.0.0.1 is never 10.0.0.10).  It imports ``_socket``
rather than ``socket``: the wrapper module pulls in ``selectors`` and friends,
which a monitor called every few seconds does not need.
"""

from __future__ import annotations

import _socket
import errno
import os
import struct

AF_INET = _socket.AF_INET
AF_INET6 = _socket.AF_INET6
NETLINK_ROUTE = 0

RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_GETROUTE = 26

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLMSG_ERROR = 2
NLMSG_DONE = 3

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_FLAGS = 8
IFA_F_SECONDARY = 0x01  # IPv4: a further address in the network of a primary one; IPv6: IFA_F_TEMPORARY
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
ARPHRD_ETHER = 1

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_MULTIPATH = 9
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RTN_UNICAST = 1

NLMSGHDR = struct.Struct("=IHHII")
IFADDRMSG = struct.Struct("=BBBBi")
IFINFOMSG = struct.Struct("=BxHiII")
RTMSG = struct.Struct("=BBBBBBBBI")
RTATTR = struct.Struct("=HH")
NLA_TYPE_MASK = 0x3FFF
RECV_BYTES = 1 << 16


class NetlinkError(OSError):
    """The kernel refused a request; ``errno`` says why."""


class Address:
    """One address the kernel holds on an interface."""

    __slots__ = ("family", "flags", "index", "local", "prefixlen")

    def __init__(self, family: int, prefixlen: int, flags: int, index: int, local: bytes) -> None:
        self.family = family
        self.prefixlen = prefixlen
        self.flags = flags
        self.index = index
        self.local = local

    @property
    def tentative(self) -> bool:
        return bool(self.flags & IFA_F_TENTATIVE)

    @property
    def dad_failed(self) -> bool:
        return bool(self.flags & IFA_F_DADFAILED)

    @property
    def secondary(self) -> bool:
        """IPv4: not the interface's primary address of its network; IPv6: a temporary address."""
        return bool(self.flags & IFA_F_SECONDARY)

    @property
    def deprecated(self) -> bool:
        """IPv6: preferred lifetime over (``preferred_lft 0``): the kernel never picks it as a source."""
        return bool(self.flags & IFA_F_DEPRECATED)


class Link:
    """The state of one interface."""

    __slots__ = ("flags", "hwtype", "index", "mac", "name")

    def __init__(self, index: int, name: str, flags: int, hwtype: int, mac: bytes) -> None:
        self.index = index
        self.name = name
        self.flags = flags
        self.hwtype = hwtype
        self.mac = mac

    @property
    def admin_up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def carrier(self) -> bool:
        return bool(self.flags & IFF_LOWER_UP)

    @property
    def ethernet(self) -> bool:
        return self.hwtype == ARPHRD_ETHER and len(self.mac) == 6


class Route:
    """A route of the main table: destination prefix and where it leads."""

    __slots__ = ("dst", "dst_len", "family", "oif", "via_gateway")

    def __init__(self, family: int, dst: bytes, dst_len: int, oif: int, via_gateway: bool) -> None:
        self.family = family
        self.dst = dst
        self.dst_len = dst_len
        self.oif = oif
        self.via_gateway = via_gateway

    @property
    def connected(self) -> bool:
        """A route to a directly attached network (no next hop, a real prefix)."""
        return not self.via_gateway and self.oif > 0 and self.dst_len > 0


def attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """The route attributes of one message body from ``offset``, by type (last one wins)."""
    found: dict[int, bytes] = {}
    end = len(data)
    while offset + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size or offset + length > end:
            break
        found[kind & NLA_TYPE_MASK] = data[offset + RTATTR.size: offset + length]
        offset += (length + 3) & ~3
    return found


def attribute(kind: int, payload: bytes) -> bytes:
    length = RTATTR.size + len(payload)
    return RTATTR.pack(length, kind) + payload + b"\0" * (((length + 3) & ~3) - length)


class Rtnl:
    """One rtnetlink socket; use as a context manager."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                                   NETLINK_ROUTE)
        self.sock.settimeout(max(timeout_s, 0.05))
        self.sock.bind((0, 0))
        self.seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def request(self, msg_type: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one request; return the (type, body) replies until DONE or the ACK.

        Raises NetlinkError when the kernel answers with an error.
        """
        self.seq += 1
        seq = self.seq
        header = NLMSGHDR.pack(NLMSGHDR.size + len(body), msg_type, flags | NLM_F_REQUEST, seq, 0)
        self.sock.send(header + body)
        dump = (flags & NLM_F_DUMP) == NLM_F_DUMP
        replies: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(RECV_BYTES)
            offset = 0
            while offset + NLMSGHDR.size <= len(data):
                length, kind, _flags, msg_seq, _pid = NLMSGHDR.unpack_from(data, offset)
                if length < NLMSGHDR.size:
                    raise NetlinkError(errno.EBADMSG, "malformed netlink reply")
                body_bytes = data[offset + NLMSGHDR.size: offset + length]
                offset += (length + 3) & ~3
                if msg_seq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return replies
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body_bytes)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return replies
                replies.append((kind, body_bytes))
                if not dump and not flags & NLM_F_ACK:
                    return replies

    # Queries ----------------------------------------------------------------

    def addresses(self, family: int) -> list[Address]:
        found = []
        for _kind, body in self.request(RTM_GETADDR, NLM_F_DUMP, IFADDRMSG.pack(family, 0, 0, 0, 0)):
            fam, prefixlen, flags, _scope, index = IFADDRMSG.unpack_from(body)
            attrs = attributes(body, IFADDRMSG.size)
            local = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if local is None:
                continue
            if IFA_FLAGS in attrs and len(attrs[IFA_FLAGS]) >= 4:
                flags = struct.unpack_from("=I", attrs[IFA_FLAGS])[0]
            found.append(Address(fam, prefixlen, flags, index, local))
        return found

    def link(self, index: int) -> Link | None:
        """The interface with this index, or None when there is none."""
        try:
            replies = self.request(RTM_GETLINK, 0, IFINFOMSG.pack(0, 0, index, 0, 0))
        except NetlinkError as err:
            if err.errno in (errno.ENODEV, errno.EINVAL):
                return None
            raise
        for _kind, body in replies:
            _family, hwtype, found_index, flags, _change = IFINFOMSG.unpack_from(body)
            attrs = attributes(body, IFINFOMSG.size)
            name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode("utf-8", "replace")
            return Link(found_index, name, flags, hwtype, attrs.get(IFLA_ADDRESS, b""))
        return None

    def routes(self, family: int) -> list[Route]:
        """Unicast routes of the main table."""
        found = []
        body_in = RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        for _kind, body in self.request(RTM_GETROUTE, NLM_F_DUMP, body_in):
            fam, dst_len, _src_len, _tos, table, _proto, _scope, rtype, _flags = RTMSG.unpack_from(body)
            attrs = attributes(body, RTMSG.size)
            if RTA_TABLE in attrs:
                table = struct.unpack_from("=I", attrs[RTA_TABLE])[0]
            if table != RT_TABLE_MAIN or rtype != RTN_UNICAST:
                continue
            oif = struct.unpack_from("=i", attrs[RTA_OIF])[0] if RTA_OIF in attrs else 0
            via = RTA_GATEWAY in attrs or RTA_MULTIPATH in attrs
            dst = attrs.get(RTA_DST, b"\0" * (4 if fam == AF_INET else 16))
            found.append(Route(fam, dst, dst_len, oif, via))
        return found

    # Changes ----------------------------------------------------------------

    def add_address(self, index: int, family: int, local: bytes, prefixlen: int,
                    broadcast: bytes | None = None, flags: int = 0) -> None:
        body = IFADDRMSG.pack(family, prefixlen, flags & 0xFF, 0, index)
        body += attribute(IFA_LOCAL, local) + attribute(IFA_ADDRESS, local)
        if broadcast is not None:
            body += attribute(IFA_BROADCAST, broadcast)
        if flags > 0xFF:
            body += attribute(IFA_FLAGS, struct.pack("=I", flags))
        self.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def delete_address(self, address: Address) -> bool:
        """Remove ``address``; False when it was already gone."""
        body = IFADDRMSG.pack(address.family, address.prefixlen, 0, 0, address.index)
        body += attribute(IFA_LOCAL, address.local)
        try:
            self.request(RTM_DELADDR, NLM_F_ACK, body)
        except NetlinkError as err:
            if err.errno in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
                return False
            raise
        return True


def interface_index(name: str) -> int | None:
    """The index of interface ``name`` in this namespace, or None."""
    try:
        return _socket.if_nametoindex(name)
    except (OSError, ValueError, UnicodeError):
        return None
