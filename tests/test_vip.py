"""The vip agent, installed, against real interfaces in network namespaces.

Each test builds its own pair of namespaces (harness.netns.Lab); the agent runs
in ``node``, ``peer`` plays the rest of the segment.  Only documentation
addresses are used.
"""

from __future__ import annotations

import json
import time

from harness.netns import Lab
from harness.vip_support import Capture, arps, installed_vip, lab_fixture, mac_of, neighbour_adverts, vip  # noqa: F401

V4 = "192.0.2.10"
V6 = "2001:db8::10"


def assert_code(result, code: int) -> None:  # type: ignore[no-untyped-def]
    assert result.rc == code, f"rc {result.rc}, expected {code}: {result.stderr}"
    assert "Traceback" not in result.stderr


# The contract, by resource-agents' own tester ---------------------------------

def test_ocf_tester_passes_with_ipv4_and_ipv6(lab: Lab) -> None:
    for ip in (V4, V6):
        done = lab.node.run(["/usr/sbin/ocf-tester", "-n", "vip", "-o", f"ip={ip}", installed_vip()],
                            check=False, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "passed all tests" in done.stdout


# Start, monitor, stop ----------------------------------------------------------

def test_start_monitor_stop_are_idempotent_for_both_families(lab: Lab) -> None:
    for ip, expected in ((V4, f"{V4}/24"), (V6, f"{V6}/64")):
        assert_code(vip(lab.node, "monitor", ip=ip), 7)
        assert_code(vip(lab.node, "start", ip=ip, arp_count="1"), 0)
        assert expected in lab.node.addresses("veth0")
        assert_code(vip(lab.node, "start", ip=ip, arp_count="1"), 0)
        assert lab.node.addresses("veth0").count(expected) == 1
        assert_code(vip(lab.node, "monitor", ip=ip), 0)
        assert_code(vip(lab.node, "stop", ip=ip), 0)
        assert expected not in lab.node.addresses("veth0")
        assert_code(vip(lab.node, "stop", ip=ip), 0)
        assert_code(vip(lab.node, "monitor", ip=ip), 7)


def test_explicit_prefix_netmask_and_broadcast(lab: Lab) -> None:
    assert_code(vip(lab.node, "start", ip=V4, nic="veth0", cidr_netmask="255.255.255.128",
                    broadcast="-", arp_count="0"), 0)
    shown = json.loads(lab.node.ip("-json", "address", "show", "dev", "veth0").stdout)
    info = [a for link in shown for a in link["addr_info"] if a.get("local") == V4]
    assert info and info[0]["prefixlen"] == 25 and info[0]["broadcast"] == "192.0.2.0"
    assert_code(vip(lab.node, "validate-all", ip=V6, broadcast="+"), 6)
    assert_code(vip(lab.node, "validate-all", ip=V6, cidr_netmask="255.255.255.0"), 6)
    assert_code(vip(lab.node, "validate-all", ip=V4, cidr_netmask="33"), 6)


def test_monitor_compares_addresses_exactly(lab: Lab) -> None:
    lab.node.ip("address", "add", "192.0.2.110/24", "dev", "veth0")
    lab.node.ip("address", "add", "2001:db8::100/64", "dev", "veth0", "nodad")
    assert_code(vip(lab.node, "monitor", ip="192.0.2.11"), 7)
    assert_code(vip(lab.node, "monitor", ip="192.0.2.110"), 0)
    assert_code(vip(lab.node, "monitor", ip="2001:db8::10"), 7)
    assert_code(vip(lab.node, "monitor", ip="2001:db8:0:0::100"), 0)  # another spelling, same address
    assert_code(vip(lab.node, "stop", ip="192.0.2.11"), 0)
    assert_code(vip(lab.node, "stop", ip="2001:db8::10"), 0)
    assert {"192.0.2.110/24", "2001:db8::100/64"} <= set(lab.node.addresses("veth0"))


# The interface: derived, ambiguous, down, gone --------------------------------

def add_second_link(lab: Lab, node_address: str, peer_address: str) -> None:
    lab.node.ip("link", "add", "veth1", "type", "veth", "peer", "name", "veth1", "netns", lab.peer.name)
    lab.node.ip("address", "add", node_address, "dev", "veth1")
    lab.peer.ip("address", "add", peer_address, "dev", "veth1")
    lab.node.ip("link", "set", "veth1", "up")
    lab.peer.ip("link", "set", "veth1", "up")
    lab.wait_carrier(lab.node, "veth1")


def test_nic_is_derived_from_the_connected_route(lab: Lab) -> None:
    add_second_link(lab, "198.51.100.1/24", "198.51.100.2/24")
    assert_code(vip(lab.node, "start", ip="198.51.100.10", arp_count="0"), 0)
    assert "198.51.100.10/24" in lab.node.addresses("veth1")
    assert_code(vip(lab.node, "start", ip=V4, arp_count="0"), 0)
    assert f"{V4}/24" in lab.node.addresses("veth0")
    no_route = vip(lab.node, "start", ip="203.0.113.10")
    assert_code(no_route, 6)
    assert "no connected route" in no_route.exit_reasons[0]


def test_ambiguous_nic_is_a_configuration_error(lab: Lab) -> None:
    add_second_link(lab, "192.0.2.201/24", "192.0.2.202/24")
    result = vip(lab.node, "start", ip=V4)
    assert_code(result, 6)
    assert len(result.exit_reasons) == 1
    assert "veth0" in result.exit_reasons[0] and "veth1" in result.exit_reasons[0]
    assert_code(vip(lab.node, "validate-all", ip=V4), 6)
    assert f"{V4}/24" not in lab.node.addresses("veth0") + lab.node.addresses("veth1")
    assert_code(vip(lab.node, "start", ip=V4, nic="veth1", arp_count="0"), 0)
    assert f"{V4}/24" in lab.node.addresses("veth1")


def test_missing_nic_fails_start_but_not_stop_or_probe(lab: Lab) -> None:
    assert_code(vip(lab.node, "start", ip=V4, nic="veth9"), 5)
    assert_code(vip(lab.node, "stop", ip=V4, nic="veth9"), 0)
    assert_code(vip(lab.node, "monitor", ip=V4, nic="veth9"), 7)
    assert_code(vip(lab.node, "monitor", extra={"OCF_RESKEY_CRM_meta_interval": "0"}), 7)


def test_monitor_fails_when_the_link_goes_down(lab: Lab) -> None:
    assert_code(vip(lab.node, "start", ip=V4, arp_count="0"), 0)
    assert_code(vip(lab.node, "start", ip=V6, arp_count="0"), 0)
    lab.peer.ip("link", "set", "veth0", "down")  # our side loses carrier
    for ip in (V4, V6):
        result = vip(lab.node, "monitor", ip=ip)
        assert_code(result, 1)
        assert "no carrier" in result.exit_reasons[0]
    assert_code(vip(lab.node, "start", ip="192.0.2.11"), 1)
    lab.peer.ip("link", "set", "veth0", "up")
    lab.wait_carrier(lab.node, "veth0")
    assert_code(vip(lab.node, "monitor", ip=V4), 0)
    lab.node.ip("link", "set", "veth0", "down")
    result = vip(lab.node, "monitor", ip=V4)
    assert_code(result, 1)
    assert "administratively down" in result.exit_reasons[0]
    # The connected route went with the link: a fault of this node (soft), not of the configuration.
    derived = vip(lab.node, "start", ip="192.0.2.11")
    assert_code(derived, 1)
    assert "veth0, which is down" in derived.exit_reasons[0]
    # The kernel drops IPv6 addresses of a downed interface: the VIP is gone.
    assert vip(lab.node, "monitor", ip=V6).rc == 7


def test_stop_succeeds_when_the_interface_is_gone(lab: Lab) -> None:
    add_second_link(lab, "198.51.100.1/24", "198.51.100.2/24")
    assert_code(vip(lab.node, "start", ip="198.51.100.10", nic="veth1", arp_count="0"), 0)
    assert_code(vip(lab.node, "start", ip="2001:db8:1::10", nic="veth1", cidr_netmask="64", arp_count="0"), 0)
    lab.node.ip("link", "del", "veth1")
    assert_code(vip(lab.node, "stop", ip="198.51.100.10", nic="veth1"), 0)
    assert_code(vip(lab.node, "stop", ip="198.51.100.10"), 0)
    assert_code(vip(lab.node, "stop", ip="2001:db8:1::10", nic="veth1"), 0)
    assert_code(vip(lab.node, "monitor", ip="198.51.100.10", nic="veth1"), 7)


def test_stop_with_an_invalid_configuration_succeeds(lab: Lab) -> None:
    assert_code(vip(lab.node, "stop"), 0)
    assert_code(vip(lab.node, "stop", ip="not-an-address"), 0)
    assert_code(vip(lab.node, "start", ip=V4, arp_count="0"), 0)
    assert_code(vip(lab.node, "stop", ip=V4, arp_count="many"), 0)
    assert f"{V4}/24" not in lab.node.addresses("veth0")


# Announcements on the wire -----------------------------------------------------

def test_gratuitous_arp_and_unsolicited_na_are_on_the_wire(lab: Lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    mac = mac_of(lab.node, "veth0")
    capture = Capture(lab.peer, "veth0", str(tmp_path / "vip.pcap"), ["arp", "or", "icmp6"])
    try:
        assert_code(vip(lab.node, "start", ip=V4, arp_count="3", arp_interval="100"), 0)
        assert_code(vip(lab.node, "start", ip=V6, arp_count="3", arp_interval="100"), 0)

        def complete(frames: list[bytes]) -> bool:
            return len(ours_arp(frames)) >= 6 and len(ours_na(frames)) >= 3

        def ours_arp(frames: list[bytes]) -> list:  # type: ignore[type-arg]
            return [a for a in arps(frames) if a.spa == V4 and a.tpa == V4]

        def ours_na(frames: list[bytes]) -> list:  # type: ignore[type-arg]
            return [n for n in neighbour_adverts(frames) if n.target == V6]

        frames = capture.wait_for(complete)
        time.sleep(0.5)  # nothing more than arp_count rounds may follow
        frames = capture.frames()
    finally:
        capture.stop()
    gratuitous = ours_arp(frames)
    assert sorted(a.op for a in gratuitous) == [1, 1, 1, 2, 2, 2], "3 rounds of ARP request + reply"
    for arp in gratuitous:
        assert arp.sha == mac and arp.eth_src == mac and arp.eth_dst == b"\xff" * 6
    adverts = ours_na(frames)
    assert len(adverts) == 3
    for advert in adverts:
        assert advert.dst == "ff02::1" and advert.src == V6
        assert advert.hop_limit == 255 and advert.override and advert.checksum_ok
        assert advert.eth_src == mac and advert.target_mac == mac


def test_recurring_monitor_refreshes_neighbour_caches_but_a_probe_does_not(lab: Lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    capture = Capture(lab.peer, "veth0", str(tmp_path / "refresh.pcap"), ["arp"])
    try:
        assert_code(vip(lab.node, "start", ip=V4, arp_count="0"), 0)
        probe = {"OCF_RESKEY_CRM_meta_interval": "0"}
        assert_code(vip(lab.node, "monitor", ip=V4, arp_count_refresh="2", extra=probe), 0)
        time.sleep(0.5)
        assert [a for a in arps(capture.frames()) if a.spa == V4] == []
        recurring = {"OCF_RESKEY_CRM_meta_interval": "10000"}
        refresh = vip(lab.node, "monitor", ip=V4, arp_count_refresh="2", arp_interval="50", extra=recurring)
        assert_code(refresh, 0)
        frames = capture.wait_for(lambda f: len([a for a in arps(f) if a.spa == V4]) >= 4)
        time.sleep(0.3)
        frames = capture.frames()
    finally:
        capture.stop()
    assert sorted(a.op for a in arps(frames) if a.spa == V4 and a.tpa == V4) == [1, 1, 2, 2]


def test_foreground_announcements_stop_at_the_deadline(lab: Lab) -> None:
    started = time.monotonic()
    result = vip(lab.node, "start", ip=V4, arp_count="100", arp_interval="1000", arp_bg="false",
                 extra={"OCF_RESKEY_CRM_meta_timeout": "2500"})
    assert_code(result, 0)
    assert time.monotonic() - started < 2.5 + 1.0  # the executor's timeout, plus process start under load
    assert_code(vip(lab.node, "monitor", ip=V4), 0)


# Duplicate address detection ---------------------------------------------------

def wait_no_tentative(lab: Lab, timeout: float = 10) -> None:
    """Both ends finished DAD of their own (link-local) addresses: the peer answers for its addresses."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        flags = [a for ns in (lab.node, lab.peer)
                 for link in json.loads(ns.ip("-json", "address", "show", "dev", "veth0").stdout)
                 for a in link["addr_info"] if a.get("tentative")]
        if not flags:
            return
        time.sleep(0.1)
    raise TimeoutError("addresses stayed tentative")


def test_dad_detects_a_duplicate_held_by_the_peer(lab: Lab) -> None:
    lab.peer.ip("address", "add", "192.0.2.20/24", "dev", "veth0")
    lab.peer.ip("address", "add", "2001:db8::20/64", "dev", "veth0", "nodad")
    wait_no_tentative(lab)
    for ip in ("192.0.2.20", "2001:db8::20"):
        result = vip(lab.node, "start", ip=ip, dad="true")
        assert_code(result, 1)
        assert "duplicate address" in result.exit_reasons[0]
        assert vip(lab.node, "monitor", ip=ip).rc == 7
    assert not {"192.0.2.20/24", "2001:db8::20/64"} & set(lab.node.addresses("veth0"))
    for ip in (V4, V6):
        assert_code(vip(lab.node, "start", ip=ip, dad="true", arp_count="1"), 0)
        assert_code(vip(lab.node, "monitor", ip=ip), 0)


# Reload -------------------------------------------------------------------------

def test_reload_agent_is_advertised_to_ocf_1_1_and_keeps_the_address(lab: Lab) -> None:
    from lxml import etree

    v11 = {"OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1"}
    meta = etree.fromstring(vip(lab.node, "meta-data", extra=v11).stdout.encode())
    reloadable = {p.get("name") for p in meta.iter("parameter") if p.get("reloadable") == "1"}
    assert {"arp_count", "arp_interval", "dad"} <= reloadable and "ip" not in reloadable
    assert "reload-agent" in {a.get("name") for a in meta.iter("action")}
    assert_code(vip(lab.node, "start", ip=V4, arp_count="0"), 0)
    assert_code(vip(lab.node, "reload-agent", ip=V4, arp_count="7"), 0)
    assert_code(vip(lab.node, "monitor", ip=V4), 0)
