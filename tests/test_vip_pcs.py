"""pcs sees the installed vip agent: it describes the parameters and rejects unknown ones."""

from __future__ import annotations

import subprocess

from lxml import etree

from agents.vip import PARAMS
from harness.vip_support import installed_vip

AGENT = "ocf:openstack:vip"


def pcs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pcs", *args], capture_output=True, text=True, timeout=120, check=False)


def test_pcs_describe_shows_every_parameter() -> None:
    installed_vip()
    done = pcs("resource", "describe", AGENT)
    assert done.returncode == 0, done.stderr
    described = {line.split(":", 1)[0].split(" (", 1)[0].strip() for line in done.stdout.splitlines()
                 if line.startswith("  ") and ":" in line}
    assert {p.name for p in PARAMS} <= described, done.stdout
    assert "ip (required)" in done.stdout


def test_pcs_rejects_an_unknown_option_and_accepts_a_valid_resource(tmp_path) -> None:  # type: ignore[no-untyped-def]
    installed_vip()
    cib = tmp_path / "cib.xml"
    cib.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True).stdout)
    bogus = pcs("-f", str(cib), "resource", "create", "v", AGENT, "ip=192.0.2.10", "bogus=1")
    assert bogus.returncode != 0
    assert "bogus" in bogus.stderr
    missing = pcs("-f", str(cib), "resource", "create", "v", AGENT, "nic=veth0")
    assert missing.returncode != 0
    valid = pcs("-f", str(cib), "resource", "create", "v", AGENT, "ip=192.0.2.10", "cidr_netmask=24",
                "arp_count=3")
    assert valid.returncode == 0, valid.stderr
    primitive = etree.parse(str(cib)).find(".//primitive[@id='v']")
    assert primitive is not None
    kind = (primitive.get("class"), primitive.get("provider"), primitive.get("type"))
    assert kind == ("ocf", "openstack", "vip")
    values = {nv.get("name"): nv.get("value") for nv in primitive.iter("nvpair")}
    assert values["ip"] == "192.0.2.10" and values["arp_count"] == "3"
