"""crmtool pcs: the exported script replayed with pcs -f equals render, semantically."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from lxml import etree

from crmtool import pipeline
from tests.crmtool_cases.support import EXAMPLE, SITES, TEMPLATES, example_text, run_cli

UNITS = {"ms": 1, "s": 1000, "m": 60000, "min": 60000, "h": 3600000, "": 1000}


def ms(text: str) -> int:
    match = re.fullmatch(r"(\d+)(ms|s|min|m|h)?", text)
    assert match, text
    return int(match.group(1)) * UNITS[match.group(2) or ""]


def pairs(element, tag: str) -> dict[str, str]:
    return {p.get("name"): p.get("value") for s in element.findall(tag) for p in s.iter("nvpair")}


def semantic(conf) -> dict[str, object]:
    """The configuration without ids and defaults pcs writes explicitly."""
    prims = {}
    for prim in conf.iter("primitive"):
        ops = frozenset((op.get("name"), ms(op.get("interval", "0")), op.get("timeout"), op.get("role"),
                         pairs(op, "instance_attributes").get("OCF_CHECK_LEVEL"))
                        for op in prim.iterfind("operations/op"))
        prims[prim.get("id")] = (prim.get("class"), prim.get("provider"), prim.get("type"),
                                 pairs(prim, "instance_attributes"), pairs(prim, "meta_attributes"), ops)
    return {
        "properties": {k: v for k, v in pairs(conf.find("crm_config"), "cluster_property_set").items()},
        "rsc_defaults": pairs(conf.find("rsc_defaults"), "meta_attributes"),
        "op_defaults": pairs(conf.find("op_defaults"), "meta_attributes"),
        "primitives": prims,
        "groups": {g.get("id"): ([p.get("id") for p in g.iterfind("primitive")], pairs(g, "meta_attributes"))
                   for g in conf.iter("group")},
        "clones": {c.get("id"): ([e.get("id") for e in c if e.tag in ("primitive", "group")],
                                 pairs(c, "meta_attributes")) for c in conf.iter("clone")},
        "locations": {(c.get("rsc"), c.get("node"), c.get("score")) for c in conf.iter("rsc_location")},
        "colocations": {(c.get("rsc"), c.get("with-rsc"), c.get("score"), c.get("rsc-role", "Started"),
                         c.get("with-rsc-role", "Started")) for c in conf.iter("rsc_colocation")},
        "orders": {(c.get("first"), c.get("first-action", "start"), c.get("then"),
                    c.get("then-action", "start"), c.get("kind", "Mandatory"))
                   for c in conf.iter("rsc_order")},
    }


SITES_REPLAYED = [EXAMPLE, os.path.join(SITES, "3ctl-haproxy.toml")]
PCS_SCHEMAS = "/usr/share/pcs/data"


@pytest.mark.parametrize("site", SITES_REPLAYED, ids=["default", "haproxy"])
def test_pcs_script_replays_to_the_rendered_configuration(site: str, tmp_path, capsys) -> None:
    """Without --force: pcs validates every agent's meta-data and parameters, ours included."""
    script = tmp_path / "pcs.sh"
    code, _out, err = run_cli(["pcs", site, "-o", str(script)], capsys)
    assert code == 0, err
    text = script.read_text()
    assert "--force" not in text
    assert text.count("pcs -f \"$CIB\" ") >= 20
    cib = tmp_path / "cib.xml"
    cib.write_bytes(subprocess.run(["cibadmin", "--empty"], capture_output=True, check=True).stdout)
    done = subprocess.run(["/bin/sh", str(script)], env={"CIB": str(cib), "PATH": "/usr/sbin:/usr/bin:/bin"},
                          capture_output=True, check=False, timeout=240)
    assert done.returncode == 0, done.stderr.decode()
    replayed = etree.parse(str(cib)).getroot().find("configuration")
    rendered = pipeline.from_file(site, TEMPLATES, "openstack").configuration
    ours, theirs = semantic(rendered), semantic(replayed)
    for key in ours:
        assert theirs[key] == ours[key], key
    # pcs kept our constraint ids too
    assert sorted(replayed.xpath("constraints/*/@id")) == sorted(rendered.xpath("constraints/*/@id"))


def test_pcs_script_quotes_values(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site.toml"
    site.write_text(example_text() + "\n[primitive.haproxy]\nagent = \"ocf:heartbeat:anything\"\n"
                    + "params = { binfile = \"/usr/sbin/haproxy\", "
                    + "cmdline_options = \"-f /etc/h.cfg; rm -rf /\" }\n")
    code, out, err = run_cli(["pcs", str(site)], capsys)
    assert code == 0, err
    assert "'cmdline_options=-f /etc/h.cfg; rm -rf /'" in out


def our_rendered_agents() -> list[str]:
    types = {prim.get("type") for site in SITES_REPLAYED
             for prim in pipeline.from_file(site, TEMPLATES, "openstack").configuration.iter("primitive")
             if prim.get("class") == "ocf" and prim.get("provider") == "openstack"}
    return sorted(types)


@pytest.mark.parametrize("agent", our_rendered_agents())
def test_installed_meta_data_passes_pcs_schema(agent: str) -> None:
    """What pcs checks before it accepts a resource without --force (installed agents: make install)."""
    done = subprocess.run(["crm_resource", "--show-metadata", f"ocf:openstack:{agent}"],
                          capture_output=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    meta = etree.fromstring(done.stdout)
    version = meta.findtext("version")
    assert version in ("1.0", "1.1"), version
    schema = etree.RelaxNG(etree.parse(os.path.join(PCS_SCHEMAS, f"ocf-{version}.rng")))
    assert schema.validate(meta), schema.error_log
