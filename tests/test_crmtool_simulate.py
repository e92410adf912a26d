"""crmtool simulate: placement and actions after cold start and failures (crm_simulate, offline)."""

from __future__ import annotations

import os

import pytest

from crmtool import load, pipeline, render, simulate
from tests.crmtool_cases.support import EXAMPLE, SITES, TEMPLATES, example_text, run_cli

APIS = ("keystone", "glance-api", "nova-api")


def reports(site: str, only: list[str] | None = None) -> dict[str, simulate.Report]:
    result = pipeline.from_file(site, TEMPLATES, "openstack")
    return {r.scenario: r for r in simulate.run_scenarios(result, only)}


def unchecked(text: str) -> pipeline.Result:
    """A description rendered without the checks, to see what the cluster itself would do."""
    desc = load.load_text(text, TEMPLATES)
    return pipeline.Result(desc, [], render.configuration(desc))


@pytest.fixture(scope="module")
def three() -> dict[str, simulate.Report]:
    return reports(EXAMPLE)


def test_every_scenario_passes(three: dict[str, simulate.Report]) -> None:
    assert len(three) == 1 + 3 + 11 + 1
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


def test_five_controllers_survive_each_node_failure() -> None:
    site = os.path.join(SITES, "5ctl.toml")
    found = reports(site, ["cold-start", *(f"node-failure-ctl{i}" for i in range(1, 6)), "quorum-loss"])
    for report in found.values():
        assert report.ok, report.text()
    assert found["quorum-loss"].name == "quorum-loss-ctl3-ctl4-ctl5"
    assert len(found["cold-start"].placement.nodes_of("drbd")) == 3  # clone-max, not one per node
    assert len(found["cold-start"].placement.nodes_of("keystone")) == 5


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
    assert run_cli(["simulate", EXAMPLE, "--scenario", "bogus"], capsys)[0] == 64
