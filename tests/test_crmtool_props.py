"""Property tests: any description gives findings or valid XML, never a traceback."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from crmtool import haproxy, load, pipeline, render, validate
from crmtool.findings import CODES, DescriptionError
from tests.crmtool_cases.support import TEMPLATES

NAMES = st.sampled_from(["a", "b", "web", "db", "api", "api-clone", "db-group", "1x", "x y", "ctl1", "ctl2",
                         "ctl3", "fence-ctl1", "st", "st-clone", "é", "a<b", "q\"t", ""])
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
SCALAR = st.one_of(TEXT, st.integers(-(2**40), 2**40), st.booleans(), st.floats(allow_nan=True))
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=3), st.dictionaries(TEXT, SCALAR, max_size=3))
AGENTS = st.sampled_from(["ocf:heartbeat:Dummy", "ocf:heartbeat:Stateful", "ocf:openstack:vip",
                          "ocf:openstack:nope", "stonith:fence_dummy", "ocf::x", "bogus", "systemd:haproxy",
                          "ocf:openstack:keystone", "ocf:openstack:glance-api"])
ADDRESSES = st.one_of(st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.1.1", "2001:db8::1", "::1", "10.0.0.256",
                                       "a#b", "10.0.0.1\nbind"]), TEXT, st.integers())
HAPROXY = st.fixed_dictionaries({}, optional={
    "vip": NAMES, "resource": NAMES, "config": st.one_of(TEXT, st.just("/etc/h.cfg")),
    "network": st.one_of(st.sampled_from(["10.0.0.0/24", "10.0.0.1/24", "2001:db8::/64", "x"]), TEXT),
    "timeouts": st.dictionaries(st.sampled_from(["server", "client", "check", "bogus"]), SCALAR, max_size=2),
})
ROLES = st.sampled_from(["Promoted", "Unpromoted", "Started", "Master", None])
ACTIONS = st.sampled_from(["start", "promote", "demote", "stop", "Start", None])
PARAMS = st.dictionaries(st.sampled_from(["ip", "cidr_netmask", "nic", "password", "x y", "port", "a", "host",
                                          "version_path"]), SCALAR, max_size=3)


def optional(strategy):
    return st.one_of(st.none(), strategy)


def drop_none(table: dict) -> dict:
    return {k: v for k, v in table.items() if v is not None}


OP = st.builds(lambda name, interval, role: drop_none({"name": name, "interval": interval, "role": role}),
               st.sampled_from(["monitor", "start", "stop", "promote", "bad name"]),
               optional(st.one_of(st.sampled_from(["10s", "20s", "1min", "10", "x"]), st.integers(0, 100))),
               ROLES)
PRIMITIVE = st.builds(lambda agent, params, ops, meta: drop_none(
    {"agent": agent, "params": params, "ops": ops, "meta": meta}),
    optional(AGENTS), PARAMS, optional(st.lists(OP, max_size=3)),
    optional(st.dictionaries(st.sampled_from(["interleave", "target-role", "notify"]), SCALAR, max_size=2)))
CLONE = st.builds(lambda rsc, promotable, meta: drop_none(
    {"resource": rsc, "promotable": promotable, "meta": meta}),
                  optional(NAMES), optional(st.booleans()),
                  optional(st.dictionaries(st.sampled_from(["interleave", "clone-max", "notify"]), SCALAR,
                                           max_size=2)))
GROUP = st.builds(lambda members: {"resources": members}, st.lists(NAMES, max_size=3))
COLOCATION = st.builds(lambda rsc, with_, score, role: drop_none(
    {"rsc": rsc, "with": with_, "score": score, "with_role": role}),
    optional(NAMES), optional(NAMES), optional(st.one_of(st.integers(-5, 5), st.sampled_from(
        ["INFINITY", "-INFINITY", "inf"]))), ROLES)
ORDER = st.builds(lambda first, then, action, kind: drop_none(
    {"first": first, "then": then, "first_action": action, "kind": kind}),
    optional(NAMES), optional(NAMES), ACTIONS, optional(st.sampled_from(["Mandatory", "Optional", "Never"])))
NODE = st.fixed_dictionaries({}, optional={"fence": PARAMS, "address": ADDRESSES})
DESCRIPTION = st.fixed_dictionaries(
    {"profile": st.just("none")},
    optional={
        "nodes": st.dictionaries(NAMES, NODE, max_size=4),
        "haproxy": HAPROXY,
        "fencing": st.fixed_dictionaries({"agent": st.sampled_from(["fence_dummy", "fence_ipmilan"])},
                                         optional={"params": PARAMS}),
        "cluster": st.fixed_dictionaries({}, optional={"properties": st.dictionaries(
            st.sampled_from(["stonith-enabled", "no-quorum-policy"]), SCALAR, max_size=2)}),
        "primitive": st.dictionaries(NAMES, PRIMITIVE, max_size=5),
        "clone": st.dictionaries(NAMES, CLONE, max_size=2),
        "group": st.dictionaries(NAMES, GROUP, max_size=2),
        "colocation": st.dictionaries(NAMES, COLOCATION, max_size=3),
        "order": st.dictionaries(NAMES, ORDER, max_size=3),
        "junk": VALUE,
    })


def outcome(data: dict) -> tuple[str, bytes | list[str]]:
    try:
        result = pipeline.checked(load.build(load.resolve(data, TEMPLATES)), "openstack")
    except DescriptionError as exc:
        assert exc.findings
        for finding in exc.findings:
            assert finding.code.code in CODES and finding.message and finding.path
        assert any(f.is_error for f in exc.findings)
        return "findings", [str(f) for f in exc.findings]
    xml = render.to_bytes(result.configuration)
    if result.description.haproxy is not None:  # what passes the checks generates, without an exception
        assert haproxy.generate(result.description, "openstack") is not None
    return "xml", xml


EXAMPLES = int(os.environ.get("CRMTOOL_EXAMPLES", "300"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DESCRIPTION)
def test_any_description_gives_findings_or_valid_xml(data: dict) -> None:
    kind, value = outcome(data)
    if kind == "xml":
        assert isinstance(value, bytes)
        assert validate.errors(etree.fromstring(value)) == []
        assert outcome(data) == (kind, value)  # deterministic


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_finding_never_a_traceback(text: str) -> None:
    try:
        load.load_text(text, TEMPLATES)
    except DescriptionError as exc:
        assert all(f.path for f in exc.findings)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["ctl1", "ctl2", "ctl3", "ctl4", "ctl5", "n-6", "n7"]),
                       st.just({}), min_size=3, max_size=7),
       st.sampled_from(["openstack-3ctl", "openstack-3ctl-haproxy"]))
def test_profiles_render_valid_xml_for_any_node_set(nodes: dict, profile: str) -> None:
    data = {"profile": profile, "nodes": nodes, "primitive": {"db-vip": {"params": {"ip": "192.0.2.10"}},
                                                            "public-vip": {"params": {"ip": "192.0.2.20"}}}}
    if profile.endswith("-haproxy"):
        data["nodes"] = {name: {"address": f"10.213.0.{i + 1}"} for i, name in enumerate(nodes)}
        data["haproxy"] = {"network": "10.213.0.0/24"}
    kind, value = outcome(data)
    assert kind == "xml", value
    conf = etree.fromstring(value)
    devices = conf.xpath("resources/primitive[@class='stonith']/@id")
    assert sorted(devices) == sorted(f"fence-{n}" for n in nodes)


def test_templates_dir_exists() -> None:
    assert os.path.isfile(os.path.join(TEMPLATES, "openstack-3ctl.toml"))
