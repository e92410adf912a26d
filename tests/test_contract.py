"""The contract every registered agent gets for free, checked on the installed files."""

from __future__ import annotations

import os
import subprocess

import pytest
from lxml import etree

from agents import registry
from agents.ocf.metadata import render
from harness.ocfrun import REPO

OCF_AGENT_DIR = "/usr/lib/ocf/resource.d/openstack"
RESOURCE_AGENTS_SHARE = "/usr/share/resource-agents"
RNG = f"{RESOURCE_AGENTS_SHARE}/metadata.rng"
# The OCF schemas pcs validates agents with before it accepts them.
PCS_RNG = {(1, 0): "/usr/share/pcs/data/ocf-1.0.rng", (1, 1): "/usr/share/pcs/data/ocf-1.1.rng"}
# What OCF 1.1 adds to the 1.0 vocabulary that both resource-agents schemas describe.
OCF_1_1_PARAMETER_ATTRIBUTES = ("reloadable", "unique-group")
OCF_1_1_ACTIONS = ("reload-agent",)

AGENTS = registry.names()


def installed(name: str) -> str:
    path = os.path.join(OCF_AGENT_DIR, name)
    assert os.access(path, os.X_OK), f"{path} is not installed: run `make install` first"
    return path


def dtd_valid(xml: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["xmllint", "--noout", "--valid", "-"], input=xml, text=True,
                          capture_output=True, cwd=RESOURCE_AGENTS_SHARE, check=False)


def rng_valid(xml: bytes, rng: str = RNG) -> bool:
    schema = etree.RelaxNG(etree.parse(rng))
    return schema.validate(etree.fromstring(xml))


def strip_ocf_1_1(xml: str) -> bytes:
    root = etree.fromstring(xml.encode())
    for param in root.iterfind("parameters/parameter"):
        for attribute in OCF_1_1_PARAMETER_ATTRIBUTES:
            param.attrib.pop(attribute, None)
    for element in root.iterfind("actions/action"):
        if element.get("name") in OCF_1_1_ACTIONS:
            element.getparent().remove(element)
    return etree.tostring(root)


@pytest.mark.parametrize("name", AGENTS)
def test_ocf_1_0_meta_data_passes_the_dtd_and_the_rng(name):
    xml = render(registry.load(name), (1, 0))
    done = dtd_valid(xml)
    assert done.returncode == 0, done.stderr
    assert rng_valid(xml.encode())


@pytest.mark.parametrize("name", AGENTS)
def test_ocf_1_1_meta_data_only_adds_the_1_1_vocabulary(name):
    agent = registry.load(name)
    xml = render(agent, (1, 1))
    root = etree.fromstring(xml.encode())
    assert root.findtext("version") == "1.1"
    reloadable = {p.get("name") for p in root.iterfind("parameters/parameter[@reloadable='1']")}
    assert reloadable == {p.name for p in agent.params if p.reloadable}
    assert rng_valid(strip_ocf_1_1(xml))
    assert rng_valid(xml.encode(), PCS_RNG[(1, 1)])


@pytest.mark.parametrize("name", AGENTS)
def test_meta_data_passes_the_schemas_pcs_checks_agents_with(name):
    agent = registry.load(name)
    for version, rng in PCS_RNG.items():
        assert rng_valid(render(agent, version).encode(), rng), version


@pytest.mark.parametrize("name", AGENTS)
def test_installed_meta_data_as_nobody_with_empty_environment(name):
    path = installed(name)
    done = subprocess.run(["runuser", "-u", "nobody", "--", "env", "-i", path, "meta-data"],
                          capture_output=True, text=True, check=False, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout == render(registry.load(name), (1, 0))


@pytest.mark.parametrize("name", AGENTS)
def test_installed_meta_data_follows_the_callers_ocf_version(name):
    env = {"OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1"}
    done = subprocess.run([installed(name), "meta-data"], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0
    assert done.stdout == render(registry.load(name), (1, 1))


@pytest.mark.parametrize("name", AGENTS)
def test_unknown_action_and_usage(name):
    path = installed(name)
    done = subprocess.run([path, "no-such-action"], env={}, capture_output=True, text=True, check=False)
    assert done.returncode == 3
    assert done.stderr.count("ocf-exit-reason:") == 1
    assert subprocess.run([path], env={}, capture_output=True, check=False).returncode == 2


@pytest.mark.parametrize("name", AGENTS)
def test_launcher_runs_debians_interpreter_without_site(name):
    with open(installed(name), encoding="utf-8") as handle:
        assert handle.readline().strip() == "#!/usr/bin/python3 -IS"


HEAVY_MODULES = ("lxml", "typing", "collections", "enum", "subprocess", "logging", "dataclasses", "psutil",
                 "pymysql", "pika", "json", "socket")


def imported_modules(argv: list[str]) -> set[str]:
    done = subprocess.run(["/usr/bin/python3", "-IS", "-X", "importtime", *argv], env={},
                          capture_output=True, text=True, check=False)
    lines = [line.split("|")[-1].strip() for line in done.stderr.splitlines()
             if line.startswith("import time:")]
    return set(lines[1:])  # the first line is the header


@pytest.mark.parametrize("name", AGENTS)
def test_installed_meta_data_imports_nothing_heavy(name):
    modules = imported_modules([installed(name), "meta-data"])
    assert "agents.ocf.launch" in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY_MODULES}


def test_readme_parameter_tables_are_current():
    done = subprocess.run(["/usr/bin/python3", "-m", "tools.docs", "--check", "README.md"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", AGENTS)
def test_crmsh_and_pcs_describe_every_parameter(name):
    """Both cluster shells read the installed agent's meta-data (crmsh parses it from a str)."""
    installed(name)
    declared = [param.name for param in registry.load(name).params]
    for argv in (["crm", "ra", "info", f"ocf:openstack:{name}"],
                 ["pcs", "resource", "describe", f"ocf:openstack:{name}"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60,
                              env={**os.environ, "TERM": "dumb"})
        assert done.returncode == 0, (argv, done.stderr)
        assert "Cannot parse" not in done.stderr
        missing = [param for param in declared if param not in done.stdout]
        assert not missing, (argv, missing)
