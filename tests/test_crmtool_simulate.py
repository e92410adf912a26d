"""crmtool simulate: placement and actions after cold start and failures (crm_simulate, offline)."""

from __future__ import annotations

import functools
import os

import pytest
from lxml import etree

from agents.registry import PROVIDER
from crmtool import load, pipeline, render, simulate
from crmtool.exits import Exit
from tests.crmtool_cases.support import EXAMPLE, SITES, TEMPLATES, example_text, run_cli

APIS = ("keystone", "glance-api", "nova-api")
ON_DISK = ("drbd", "db-fs", "mysql", "db-vip")
# 3, 5 and 7 controllers; the storage nodes by default (the first three) or declared by the site
SIZES = ("3ctl", "5ctl", "7ctl", "5ctl-storage", "7ctl-storage")


def reports(site: str, only: list[str] | None = None) -> dict[str, simulate.Report]:
    result = pipeline.from_file(site, TEMPLATES, PROVIDER)
    return {r.scenario: r for r in simulate.run_scenarios(result, only)}


@functools.cache
def every_scenario(size: str) -> dict[str, simulate.Report]:
    return reports(os.path.join(SITES, f"{size}.toml"))


def description(size: str) -> load.Description:
    return load.load_file(os.path.join(SITES, f"{size}.toml"), TEMPLATES)


def unchecked(text: str) -> pipeline.Result:
    """A description rendered without the checks, to see what the cluster itself would do."""
    desc = load.load_text(text, TEMPLATES)
    return pipeline.Result(desc, [], render.configuration(desc))


def site_text(size: str) -> str:
    with open(os.path.join(SITES, f"{size}.toml"), encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def three() -> dict[str, simulate.Report]:
    return reports(EXAMPLE)


@pytest.mark.parametrize("size", SIZES)
def test_every_scenario_passes_at_every_size(size: str) -> None:
    found = every_scenario(size)
    desc = description(size)
    assert len(found) == 1 + len(desc.nodes) + len(desc.primitives) + 1
    for report in found.values():
        assert report.ok, report.text()


@pytest.mark.parametrize("size", SIZES)
def test_database_lives_only_on_storage_nodes(size: str) -> None:
    storage = description(size).storage.nodes
    assert len(storage) == 3 or size.endswith("-storage")
    for name, report in every_scenario(size).items():
        for rsc in ON_DISK:
            assert set(report.placement.nodes_of(rsc)) <= set(storage), (name, report.text())
        touched = {a.node for a in report.actions if a.resource in ON_DISK and a.op != "fence"}
        assert touched <= set(storage), (name, sorted(touched))
    placed = every_scenario(size)["cold-start"].placement
    assert placed.nodes_of("drbd") == sorted(storage)


@pytest.mark.parametrize("size", SIZES)
def test_failed_promoted_drbd_monitor_recovers_in_place(size: str) -> None:
    before = every_scenario(size)["cold-start"].placement
    holder = before.nodes_of("drbd", "Promoted")
    report = every_scenario(size)["resource-failure-drbd"]
    assert report.name == f"resource-failure-drbd@{holder[0]}"
    assert report.placement.nodes_of("drbd", "Promoted") == holder
    assert report.placement.nodes_of("mysql") == holder
    assert report.placement.nodes_of("drbd") == before.nodes_of("drbd")
    assert [str(a) for a in report.actions if a.op in simulate.STOPPING and a.node != holder[0]] == []


@pytest.mark.parametrize("size", SIZES)
def test_keystone_failure_restarts_keystone_only(size: str) -> None:
    report = every_scenario(size)["resource-failure-keystone"]
    stopped = {a.resource for a in report.actions if a.op in simulate.STOPPING}
    assert "keystone" in stopped and not stopped & {"glance-api", "nova-api"}, report.text()


@pytest.mark.parametrize("size", ["5ctl-storage", "7ctl-storage"])
def test_losing_a_storage_node_leaves_its_replica_unplaced_without_a_false_failure(size: str) -> None:
    storage = description(size).storage.nodes
    report = every_scenario(size)[f"node-failure-{storage[0]}"]
    assert report.ok, report.text()
    assert report.placement.nodes_of("drbd") == sorted(storage[1:])


def test_expected_instances_count_only_nodes_a_location_allows() -> None:
    desc = description("5ctl-storage")
    everyone = [f"ctl{i}" for i in range(1, 6)]
    assert simulate.expected_instances(desc, "drbd", everyone) == (3, 1)
    assert simulate.expected_instances(desc, "drbd", ["ctl1", "ctl2", "ctl3"]) == (1, 1)
    assert simulate.expected_instances(desc, "mysql", ["ctl1", "ctl2"]) == (0, 0)
    assert simulate.expected_instances(desc, "keystone", everyone) == (5, 0)


def test_failed_promoted_monitor_without_the_profile_fixes_is_caught() -> None:
    """Negative control: DRBD unpinned at the default stickiness, as the profile was, at 5 controllers."""
    text = site_text("5ctl") + (
        '\n[storage]\nresources = []\n[clone.drbd-clone.meta]\nclone-max = 3\nresource-stickiness = 100\n')
    (report,) = simulate.run_scenarios(unchecked(text), ["resource-failure-drbd"])
    assert not report.ok
    restarted = [p for p in report.problems if p.startswith("restarted on another node: stop drbd on ")]
    assert restarted, report.text()


def test_mandatory_keystone_order_restarts_glance_and_nova_and_is_caught() -> None:
    """Negative control for the Optional keystone → API orders."""
    text = site_text("3ctl") + '\n[order.glance-api-after-keystone]\nkind = "Mandatory"\n'
    (report,) = simulate.run_scenarios(unchecked(text), ["resource-failure-keystone"])
    assert not report.ok
    assert any("restarted with keystone though only ordered after it: stop glance-api" in p
               for p in report.problems), report.text()


def test_storage_nodes_render_bans_without_probes_and_clone_max() -> None:
    conf = render.configuration(description("5ctl-storage"))
    bans = {(c.get("rsc"), c.get("node")): (c.get("score"), c.get("resource-discovery"))
            for c in conf.iterfind("constraints/rsc_location") if c.get("resource-discovery")}
    assert bans == {(r, n): ("-INFINITY", "never") for r in ("drbd-clone", "db") for n in ("ctl1", "ctl2")}
    clone_max = conf.xpath("resources/clone[@id='drbd-clone']//nvpair[@name='clone-max']/@value")
    assert clone_max == ["3"], etree.tostring(conf)


def test_every_scenario_passes(three: dict[str, simulate.Report]) -> None:
    assert len(three) == 1 + 3 + 17 + 1
    for report in three.values():
        assert report.ok, report.text()


def test_cold_start_places_database_with_promoted_drbd_and_vip_with_keystone(three) -> None:
    placed = three["cold-start"].placement
    promoted = placed.nodes_of("drbd", "Promoted")
    assert len(promoted) == 1 and len(placed.nodes_of("drbd", "Unpromoted")) == 2
    for member in ("db-fs", "mysql", "db-vip"):
        assert placed.nodes_of(member) == promoted
    for api in APIS:
        assert placed.nodes_of(api) == ["ctl1", "ctl2", "ctl3"]
    assert set(placed.nodes_of("public-vip")) <= set(placed.nodes_of("keystone"))
    for node in ("ctl1", "ctl2", "ctl3"):
        assert node not in placed.nodes_of(f"fence-{node}")
        assert len(placed.nodes_of(f"fence-{node}")) == 1


@pytest.mark.parametrize("node", ["ctl1", "ctl2", "ctl3"])
def test_node_failure_moves_everything_to_survivors_without_restarting_apis(three, node: str) -> None:
    report = three[f"node-failure-{node}"]
    survivors = [n for n in ("ctl1", "ctl2", "ctl3") if n != node]
    placed = report.placement
    assert any(a.op == "fence" and a.node == node for a in report.actions)
    for api in APIS:
        assert placed.nodes_of(api) == survivors
    assert placed.nodes_of("db-fs") == placed.nodes_of("drbd", "Promoted") != []
    assert set(placed.nodes_of("db-fs")) <= set(survivors)
    stopped = [a for a in report.actions if a.op in ("stop", "demote") and a.node in survivors]
    assert stopped == []


def test_resource_failures_restart_only_on_the_failing_node(three) -> None:
    for name, report in three.items():
        if name.startswith("resource-failure-"):
            failed = name.removeprefix("resource-failure-")
            assert any(a.op == "start" and a.resource == failed for a in report.actions), report.text()
            assert report.ok, report.text()


def test_losing_two_of_three_nodes_stops_everything(three) -> None:
    report = three["quorum-loss"]
    assert report.name == "quorum-loss-ctl2-ctl3"
    for rsc, places in report.placement.where.items():
        assert "ctl1" not in [n for n, _ in places], rsc


def test_quorum_loss_at_five_controllers_keeps_a_minority() -> None:
    assert every_scenario("5ctl")["quorum-loss"].name == "quorum-loss-ctl3-ctl4-ctl5"


def test_haproxy_profile_places_public_vip_with_haproxy() -> None:
    found = reports(os.path.join(SITES, "3ctl-haproxy.toml"), ["cold-start", "node-failure-ctl3"])
    for report in found.values():
        assert report.ok, report.text()
        placed = report.placement
        assert set(placed.nodes_of("public-vip")) <= set(placed.nodes_of("haproxy")) != set()


def test_mandatory_database_order_restarts_every_api_and_is_caught() -> None:
    text = example_text() + '\n[order.keystone-after-db]\nkind = "Mandatory"\n'
    result = unchecked(text)
    promoted = reports(EXAMPLE, ["cold-start"])["cold-start"].placement.nodes_of("drbd", "Promoted")[0]
    (report,) = simulate.run_scenarios(result, [f"node-failure-{promoted}"])
    assert not report.ok
    assert any("stop keystone on" in p for p in report.problems), report.text()


def test_ordering_loop_leaves_the_database_stopped_and_is_caught() -> None:
    text = example_text() + (
        '\n[order.loop]\nfirst = "db"\nthen = "drbd-clone"\nthen_action = "promote"\n')
    (report,) = simulate.run_scenarios(unchecked(text), ["cold-start"])
    assert not report.ok
    assert "mysql: 0 of 1 instance(s) placed" in report.problems
    assert report.placement.nodes_of("drbd", "Promoted") == []


def test_cli_prints_a_placement_table_per_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", EXAMPLE, "--scenario", "cold-start", "--scenario", "node-failure-ctl2"]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "scenario cold-start: ok" in out and "scenario node-failure-ctl2: ok" in out
    assert "2 scenario(s) passed" in out
    code, out, err = run_cli(["simulate", EXAMPLE, "--scenario", "bogus"], capsys)
    assert code == Exit.USAGE and out == ""
    assert err.startswith("crmtool: unknown scenario(s): bogus (known: cold-start, node-failure-ctl1,"), err


# The profile's deliberate differences from our agents' adverts: (resource, action, role, depth) → interval.
DELIBERATE = {("mysql", "monitor", None, 0): "10s"}


@pytest.mark.parametrize("size", SIZES)
def test_operations_of_our_agents_are_their_adverts(size: str) -> None:
    from agents import registry

    rendered = pipeline.from_file(os.path.join(SITES, f"{size}.toml"), TEMPLATES, PROVIDER)
    checked = 0
    for primitive in rendered.configuration.iter("primitive"):
        if primitive.get("provider") != PROVIDER:
            continue
        declared = registry.load(primitive.get("type", ""))
        adverts = {(spec.name, a.role, a.depth or 0): a for spec in declared.action_specs.values()
                   for a in spec.adverts}
        ops = {(op.get("name"), op.get("role"), _depth(op)): op for op in primitive.iter("op")}
        for action in ("start", "stop", "promote", "demote"):
            listed = (action, None, 0) in ops
            assert listed == (action in declared.action_specs), (primitive.get("id"), action)
        for key, op in ops.items():
            advert = adverts[key]
            interval = DELIBERATE.get((primitive.get("id"), *key), f"{advert.interval or 0}s")
            assert (op.get("interval"), op.get("timeout")) == (interval, f"{advert.timeout}s"), \
                (primitive.get("id"), key)
            checked += 1
    assert checked >= 20


def _depth(op: etree._Element) -> int:
    level = op.find(".//nvpair[@name='OCF_CHECK_LEVEL']")
    return int(level.get("value", "0")) if level is not None else 0


@pytest.mark.parametrize("profile", ["openstack-3ctl", "openstack-3ctl-haproxy"])
def test_profiles_restate_no_default_of_our_agents(profile: str) -> None:
    from agents import registry

    desc = load.load_text(f'profile = "{profile}"\n', TEMPLATES)
    # what crmtool derives (param_paths: written elsewhere, e.g. the haproxy resource's config from
    # [haproxy] config) is not restated by the profile
    restated = [(p.id, param.name) for p in desc.primitives if p.agent.provider == PROVIDER
                for param in registry.load(p.agent.type).params
                if param.default is not None and p.params.get(param.name) == param.default_text()
                and param.name not in p.param_paths]
    assert restated == []
