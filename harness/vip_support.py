"""Helpers of the vip tests: run the installed agent in a namespace, read captures."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import pytest

from harness.netns import Lab, Namespace
from harness.ocfrun import Result, agent_env, run_agent

VIP = "/usr/lib/ocf/resource.d/openstack/vip"
IPADDR2 = "/usr/lib/ocf/resource.d/heartbeat/IPaddr2"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")


def installed_vip() -> str:
    assert os.access(VIP, os.X_OK), f"{VIP} is not installed: run `make install` first"
    return VIP


def vip(ns: Namespace, action: str, timeout: float = 60, extra: dict[str, str] | None = None,
        **params: str) -> Result:
    """Run the installed vip agent inside ``ns``."""
    return run_agent(ns.argv([installed_vip()]), action, agent_env(params, **(extra or {})), timeout=timeout)


@pytest.fixture(name="lab")
def lab_fixture() -> Iterator[Lab]:
    require_root()
    with Lab() as made:
        yield made


# Captures ------------------------------------------------------------------

class Capture:
    """tcpdump writing a pcap file inside a namespace; parsed here, not from its text output."""

    def __init__(self, ns: Namespace, dev: str, path: str, expression: list[str]) -> None:
        self.path = path
        self.proc = subprocess.Popen(ns.argv(["tcpdump", "-i", dev, "-n", "-U", "-w", path, *expression]),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()  # "listening on ..." once the filter is attached
        assert "listening" in line, f"tcpdump did not start: {line}"

    def frames(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as handle:
                return list(read_pcap(handle.read()))
        except FileNotFoundError:
            return []

    def wait_for(self, predicate, timeout: float = 20) -> list[bytes]:  # type: ignore[no-untyped-def]
        until = time.monotonic() + timeout
        while True:
            frames = self.frames()
            if predicate(frames) or time.monotonic() > until:
                return frames
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def read_pcap(data: bytes) -> Iterator[bytes]:
    """Frames of a classic pcap file (either byte order, micro- or nanosecond stamps)."""
    if len(data) < 24:
        return
    magic = data[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offset = 24
    while offset + 16 <= len(data):
        _sec, _frac, incl, _orig = struct.unpack_from(order + "IIII", data, offset)
        if offset + 16 + incl > len(data):
            return  # a record still being written
        yield data[offset + 16: offset + 16 + incl]
        offset += 16 + incl


class Arp:
    def __init__(self, frame: bytes) -> None:
        self.eth_dst, self.eth_src, _type = struct.unpack_from("!6s6sH", frame)
        (_htype, _ptype, _hlen, _plen, self.op, self.sha, spa, self.tha, tpa) = struct.unpack_from(
            "!HHBBH6s4s6s4s", frame, 14)
        self.spa = socket.inet_ntop(socket.AF_INET, spa)
        self.tpa = socket.inet_ntop(socket.AF_INET, tpa)


def arps(frames: list[bytes]) -> list[Arp]:
    return [Arp(f) for f in frames if len(f) >= 42 and f[12:14] == b"\x08\x06"]


class NeighbourAdvert:
    def __init__(self, frame: bytes) -> None:
        self.eth_src = frame[6:12]
        ip6 = frame[14:54]
        self.hop_limit = ip6[7]
        self.src = socket.inet_ntop(socket.AF_INET6, ip6[8:24])
        self.dst = socket.inet_ntop(socket.AF_INET6, ip6[24:40])
        icmp = frame[54:14 + 40 + struct.unpack_from("!H", ip6, 4)[0]]
        self.icmp = icmp
        self.flags = struct.unpack_from("!I", icmp, 4)[0]
        self.target = socket.inet_ntop(socket.AF_INET6, icmp[8:24])
        self.options = icmp[24:]
        self.checksum_ok = icmp6_checksum(ip6[8:24], ip6[24:40], icmp) == 0

    @property
    def override(self) -> bool:
        return bool(self.flags & 0x20000000)

    @property
    def target_mac(self) -> bytes | None:
        options = self.options
        while len(options) >= 8:
            kind, length = options[0], options[1] * 8
            if length == 0:
                return None
            if kind == 2:
                return options[2:8]
            options = options[length:]
        return None


def neighbour_adverts(frames: list[bytes]) -> list[NeighbourAdvert]:
    """ICMPv6 type 136 frames (no extension headers)."""
    return [NeighbourAdvert(f) for f in frames
            if len(f) >= 78 and f[12:14] == b"\x86\xdd" and f[20] == 58 and f[54] == 136]


def icmp6_checksum(src: bytes, dst: bytes, icmp: bytes) -> int:
    """Ones' complement sum over the pseudo-header and message: 0 when the checksum is right."""
    data = src + dst + struct.pack("!I3xB", len(icmp), 58) + icmp
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return 0xFFFF - total


def mac_of(ns: Namespace, dev: str) -> bytes:
    return bytes.fromhex(str(ns.link(dev)["address"]).replace(":", ""))
