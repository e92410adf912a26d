"""Degraded results (OCF 190) on a real 3-node cluster running Pacemaker 2.1.5.

A resource of a small test agent (harness/degraded_agent.py, on the installed framework) reports
degraded for many monitor intervals with ``migration-threshold=1``: what Pacemaker records, whether
the fail-count rises, whether the resource is moved, and what operators see of it.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

import harness
from harness.cluster_fixtures import start_cluster
from nscluster import config, health
from nscluster.cluster import Cluster, wait_until
from tests.test_health_attribute import DEGRADED_NOW, FAILED_NOT_DEGRADED

pytestmark = pytest.mark.cluster
RESOURCE = "flagged"
PROMOTABLE = "flaggedp"  # a promotable clone of the same agent: 191 on its Promoted instance
PROVIDER = "openstack-test"
AGENT_DIR = Path("/usr/lib/ocf/resource.d") / PROVIDER
MODULE_DIR = Path("/usr/lib/ocf/lib") / PROVIDER
INSTALLED_AGENT = Path("/usr/lib/ocf/resource.d/openstack/vip")
DEGRADED_MONITORS = 12  # many intervals: with migration-threshold=1 a single counted failure moves it
STACK = config.Stack(dummy_clone=False, site_overrides={
    f"primitive.{RESOURCE}": {
        "agent": f"ocf:{PROVIDER}:degraded", "meta": {"migration-threshold": 1},
        "ops": [{"name": "monitor", "interval": "1s", "timeout": "20s"}]},
    f"primitive.{RESOURCE}.params": {"flag": f"/run/openstack-test-{RESOURCE}"},
    f"primitive.{PROMOTABLE}": {
        "agent": f"ocf:{PROVIDER}:degraded", "meta": {"migration-threshold": 1},
        "ops": [{"name": "monitor", "interval": "1s", "timeout": "20s", "role": "Promoted"},
                {"name": "monitor", "interval": "2s", "timeout": "20s", "role": "Unpromoted"}]},
    f"primitive.{PROMOTABLE}.params": {"flag": f"/run/openstack-test-{PROMOTABLE}"},
    f"clone.{PROMOTABLE}-clone": {"resource": PROMOTABLE, "promotable": True,
                                  "meta": {"promoted-max": 1, "interleave": True}},
})


def installed_lib() -> str:
    """The framework's directory, as the installed agents' launchers name it."""
    for line in INSTALLED_AGENT.read_text().splitlines():
        if line.startswith("sys.path.insert(0, "):
            return str(ast.literal_eval(line.removeprefix("sys.path.insert(0, ").removesuffix(")")))
    raise AssertionError(f"{INSTALLED_AGENT} names no library directory: run `make install`")


@pytest.fixture(scope="module")
def test_agent() -> Iterator[None]:
    """The test agent under a provider of its own; nodes share /usr, so every node sees it."""
    launcher = "\n".join((
        "#!/usr/bin/python3 -IS",
        "import sys",
        f"sys.path[:0] = [{installed_lib()!r}, {str(MODULE_DIR)!r}]",
        "sys.path.append('/usr/lib/python3/dist-packages')",  # lxml renders the meta-data
        "from agents.ocf.launch import run",
        f"run('degraded', 'degraded_agent', {str(MODULE_DIR / 'no-cache')!r})",
        ""))
    for directory in (AGENT_DIR, MODULE_DIR):
        directory.mkdir(mode=0o755, exist_ok=True)
        directory.chmod(0o755)
    module = MODULE_DIR / "degraded_agent.py"
    shutil.copyfile(Path(harness.__file__).with_name("degraded_agent.py"), module)
    module.chmod(0o644)
    (AGENT_DIR / "degraded").write_text(launcher)
    (AGENT_DIR / "degraded").chmod(0o755)
    yield
    shutil.rmtree(AGENT_DIR)
    shutil.rmtree(MODULE_DIR)


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, test_agent: None) -> Cluster:
    return start_cluster(request, STACK)


@pytest.fixture(autouse=True)
def healthy(cluster: Cluster) -> Iterator[None]:
    health.wait_healthy(cluster, STACK)
    yield
    for node in cluster.nodes:
        if cluster.nodes[node].powered:
            cluster.run(node, ["rm", "-f", *(f"{flag(r)}{suffix}" for r in (RESOURCE, PROMOTABLE)
                                             for suffix in ("", ".monitors"))])


def flag(resource: str) -> str:
    return f"/run/openstack-test-{resource}"


def crm_mon_xml(cluster: Cluster) -> str:
    return cluster.run(cluster.any_running_node(), ["crm_mon", "-1", "-A", "--output-as=xml"]).stdout


def crm_mon(cluster: Cluster) -> ET.Element:
    return ET.fromstring(crm_mon_xml(cluster))  # noqa: S314 (crm_mon's own output)


def xmllint(cluster: Cluster, xpath: str, document: str) -> str:
    """An operator's query (docs/monitoring.md) on crm_mon's output; empty when nothing matches."""
    done = cluster.run(cluster.any_running_node(), ["xmllint", "--xpath", xpath, "-"], input_text=document,
                       check=False)
    assert done.returncode in (0, 10), done.stderr  # 10: the XPath set is empty
    return done.stdout.strip()


def listed_failures(root: ET.Element, resource: str = RESOURCE) -> set[tuple[str, str, str]]:
    """(node, task, exit code) of crm_mon's failed resource actions of ``resource``."""
    return {(f.get("node", ""), f.get("task", ""), f.get("exitcode", ""))
            for f in root.iterfind("failures/failure") if (f.get("op_key") or "").startswith(f"{resource}_")}


def health_attributes(root: ET.Element, resource: str = RESOURCE) -> dict[str, str]:
    """``<resource>-health`` per node, as ``crm_mon -A`` shows it."""
    return {node.get("name", ""): attribute.get("value", "")
            for node in root.iterfind("node_attributes/node")
            for attribute in node.iterfind("attribute") if attribute.get("name") == f"{resource}-health"}


def fail_count(cluster: Cluster, node: str, resource: str = RESOURCE) -> int:
    done = cluster.run(node, ["crm_failcount", "--query", "-r", resource, "-N", node, "-q"])
    return int(done.stdout.strip())


def degraded_monitors(cluster: Cluster, node: str, resource: str = RESOURCE) -> int:
    done = cluster.run(node, ["cat", f"{flag(resource)}.monitors"], check=False)
    return len(done.stdout.strip())


def set_flag(cluster: Cluster, node: str, text: str, resource: str = RESOURCE) -> None:
    cluster.run(node, ["tee", flag(resource)], input_text=text)


def promoted_on(cluster: Cluster) -> str:
    (node,) = {n for r in cluster.status().resources if r.id == PROMOTABLE and r.role == "Promoted"
               for n in r.nodes}
    return node


def test_degraded_for_many_monitors_is_listed_as_failed_but_not_counted_and_the_resource_stays(cluster):
    (holder,) = cluster.status().where(RESOURCE)
    set_flag(cluster, holder, "degraded")
    wait_until(lambda: degraded_monitors(cluster, holder) >= DEGRADED_MONITORS,
               f"{DEGRADED_MONITORS} degraded monitors on {holder}", timeout_s=120)
    health.settle(cluster)
    root = crm_mon(cluster)
    # What Pacemaker 2.1.5 does: a failed action, no fail-count, no recovery, no move.
    assert listed_failures(root) == {(holder, "monitor", "190")}
    assert fail_count(cluster, holder) == 0
    (state,) = [r for r in cluster.status().resources if r.id == RESOURCE]
    assert (state.nodes, state.role, state.failed) == ((holder,), "Started", False)
    # What the framework adds: the node attribute that tells degraded apart from failed.
    assert health_attributes(root) == {holder: "degraded"}
    document = crm_mon_xml(cluster)
    assert xmllint(cluster, FAILED_NOT_DEGRADED, document) == "0"
    attribute = f'<attribute name="{RESOURCE}-health" value="degraded"/>'
    assert xmllint(cluster, DEGRADED_NOW, document) == attribute

    cluster.run(holder, ["rm", flag(RESOURCE)])
    wait_until(lambda: not health_attributes(crm_mon(cluster)), f"{RESOURCE}-health cleared", timeout_s=60)
    # The failed action stays listed after recovery, until a cleanup; the attribute does not.
    assert listed_failures(crm_mon(cluster)) == {(holder, "monitor", "190")}
    assert fail_count(cluster, holder) == 0 and cluster.status().where(RESOURCE) == (holder,)


def test_a_failed_monitor_is_counted_and_moves_the_resource(cluster):
    """The negative control: the same observations see a real failure counted and acted on."""
    (holder,) = cluster.status().where(RESOURCE)
    set_flag(cluster, holder, "failed")
    cluster.wait_status(lambda s: s.where(RESOURCE) not in ((), (holder,)),
                        f"{RESOURCE} moved away from {holder}", timeout_s=90)
    assert fail_count(cluster, holder) == 1
    document = crm_mon_xml(cluster)
    assert (holder, "monitor", "1") in listed_failures(ET.fromstring(document))  # noqa: S314
    assert not health_attributes(ET.fromstring(document))  # noqa: S314
    assert xmllint(cluster, FAILED_NOT_DEGRADED, document) == "1"
    assert xmllint(cluster, DEGRADED_NOW, document) == ""


def test_degraded_promoted_for_many_monitors_is_not_counted_and_stays_promoted(cluster):
    holder = promoted_on(cluster)
    set_flag(cluster, holder, "degraded", PROMOTABLE)
    wait_until(lambda: degraded_monitors(cluster, holder, PROMOTABLE) >= DEGRADED_MONITORS,
               f"{DEGRADED_MONITORS} degraded monitors of the Promoted instance on {holder}", timeout_s=120)
    health.settle(cluster)
    root = crm_mon(cluster)
    assert listed_failures(root, PROMOTABLE) == {(holder, "monitor", "191")}
    assert fail_count(cluster, holder, PROMOTABLE) == 0
    assert promoted_on(cluster) == holder
    assert health_attributes(root, PROMOTABLE) == {holder: "degraded-promoted"}
