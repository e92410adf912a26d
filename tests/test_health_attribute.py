"""The dispatcher's ``<resource>-health`` node attribute, through a real agent process and the real
crm_attribute working on a CIB file (``CIB_file``), as it does on a live cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agents.ocf.codes import OCF
from harness.ocfrun import REPO, Result, agent_env, run_agent, source_agent

AGENT = source_agent("harness/degraded_agent.py")
NODE = "node1"
DOCS = Path(REPO) / "docs" / "monitoring.md"
# The queries docs/monitoring.md gives operators; the cluster test runs them on crm_mon's output.
FAILED_NOT_DEGRADED = 'count(//failures/failure[@exitcode != "190" and @exitcode != "191"])'
DEGRADED_NOW = '//node_attributes/node/attribute[substring(@name, string-length(@name) - 6) = "-health"]'


class Resource:
    """One instance of the degraded test agent on ``NODE`` of a CIB file."""

    def __init__(self, tmp_path: Path, instance: str = "flagged") -> None:
        self.cib = tmp_path / "cib.xml"
        self.flag = tmp_path / "flag"
        self.primitive = instance.split(":", 1)[0]
        self.env = agent_env({"flag": str(self.flag)}, OCF_RESOURCE_INSTANCE=instance,
                             HA_RSCTMP=str(tmp_path / "rsctmp"), CIB_file=str(self.cib), PYTHONPATH=REPO,
                             OCF_RESKEY_CRM_meta_on_node=NODE)
        self.cib.write_text(cibadmin(["--empty"], self.env).stdout)
        cibadmin(["--create", "-o", "nodes", "-X", f'<node id="1" uname="{NODE}"/>'], self.env)

    def node_joins(self) -> None:
        cibadmin(["--create", "-o", "status", "-X", f'<node_state id="1" uname="{NODE}"/>'], self.env)

    def act(self, action: str) -> Result:
        interval = {"OCF_RESKEY_CRM_meta_interval": "10000"} if action == "monitor" else {}
        return run_agent(AGENT, action, {**self.env, **interval})

    def health(self) -> str | None:
        done = crm_attribute(["-N", NODE, "-n", f"{self.primitive}-health", "-G", "-q"], self.env)
        return done.stdout.strip() if done.returncode == 0 else None

    def forget_health(self) -> None:
        """Delete the attribute behind the agent's back."""
        assert crm_attribute(["-N", NODE, "-n", f"{self.primitive}-health", "-D"], self.env).returncode == 0


def cibadmin(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cibadmin", *args], env=env, capture_output=True, text=True, check=True)


def crm_attribute(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["crm_attribute", "-l", "reboot", *args], env=env, capture_output=True, text=True,
                          check=False)


@pytest.fixture
def resource(tmp_path: Path) -> Resource:
    resource = Resource(tmp_path)
    resource.node_joins()
    assert resource.act("start").rc == OCF.SUCCESS
    return resource


def test_a_degraded_monitor_publishes_degraded_and_recovery_removes_it(resource):
    assert resource.act("monitor").rc == OCF.SUCCESS
    assert resource.health() is None
    resource.flag.write_text("degraded")
    degraded = resource.act("monitor")
    assert (degraded.rc, degraded.exit_reasons) == (OCF.DEGRADED, ["the flag file exists"])
    assert resource.health() == "degraded"
    resource.flag.unlink()
    assert resource.act("monitor").rc == OCF.SUCCESS
    assert resource.health() is None


def test_a_failed_monitor_is_not_published_as_degraded(resource):
    resource.flag.write_text("failed")
    assert resource.act("monitor").rc == OCF.ERR_GENERIC
    assert resource.health() is None


def test_health_is_written_only_when_it_changes(resource):
    resource.flag.write_text("degraded")
    resource.act("monitor")
    resource.forget_health()
    assert resource.act("monitor").rc == OCF.DEGRADED
    assert resource.health() is None  # unchanged: no crm_attribute call
    resource.flag.unlink()
    resource.act("monitor")
    resource.flag.write_text("degraded")
    resource.act("monitor")
    assert resource.health() == "degraded"  # changed again: published again


def test_stop_removes_the_attribute(resource):
    resource.flag.write_text("degraded")
    resource.act("monitor")
    assert resource.act("stop").rc == OCF.SUCCESS
    assert resource.health() is None


def test_clone_instances_publish_under_the_primitive_name(tmp_path):
    resource = Resource(tmp_path, instance="flagged:2")
    resource.node_joins()
    resource.act("start")
    resource.flag.write_text("degraded")
    resource.act("monitor")
    assert resource.health() == "degraded"


def test_a_failed_publication_changes_no_result_and_is_retried(tmp_path):
    resource = Resource(tmp_path)  # the node has no status entry yet: crm_attribute fails
    resource.act("start")
    resource.flag.write_text("degraded")
    degraded = resource.act("monitor")
    assert (degraded.rc, degraded.exit_reasons) == (OCF.DEGRADED, ["the flag file exists"])
    assert "Traceback" not in degraded.stderr
    resource.node_joins()
    resource.act("monitor")
    assert resource.health() == "degraded"


def test_the_documented_queries_are_the_tested_ones():
    text = DOCS.read_text()
    assert f"xmllint --xpath '{FAILED_NOT_DEGRADED}' -" in text
    assert f"xmllint --xpath '{DEGRADED_NOW}' -" in text
