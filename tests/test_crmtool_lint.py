"""crmtool check: one broken description per report code, all findings at once, exit 65."""

from __future__ import annotations

import glob
import os
import re

import pytest

from crmtool import check, findings, load
from crmtool.exits import Exit
from crmtool.findings import CODES, DescriptionError
from tests.crmtool_cases.support import LINT, PROFILES, run_cli
from tests.crmtool_cases.support import lint_agent as lint_agent  # noqa: PLC0414 (fixture)

CASES = sorted(glob.glob(os.path.join(LINT, "*.toml")))
FINDING = re.compile(r"^(error|warning) (CRM\d{3}) ([a-z-]+) (\S+): .+$")


def expected(case: str) -> tuple[str, str]:
    code = os.path.basename(case).split("-")[0]
    with open(case, encoding="utf-8") as handle:
        first = handle.readline()
    assert first.startswith("# path: "), case
    return code, first.removeprefix("# path: ").strip()


def test_every_code_has_a_case() -> None:
    assert {expected(c)[0] for c in CASES} == set(CODES)


def test_base_description_is_clean(lint_agent: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["check", os.path.join(PROFILES, "lint-base.toml")], capsys, PROFILES)
    assert (code, err) == (0, ""), err
    assert "ok (0 warning(s))" in out


@pytest.mark.parametrize("case", CASES, ids=[os.path.basename(c)[:-5] for c in CASES])
def test_case_reports_its_code_at_its_path(case: str, lint_agent: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, path = expected(case)
    exit_code, out, err = run_cli(["check", case], capsys, PROFILES)
    assert "Traceback" not in err + out
    findings = [FINDING.match(line) for line in err.splitlines() if line.startswith(("error", "warning"))]
    assert all(findings), err
    reported = {(m.group(2), m.group(4)) for m in findings if m}
    assert (code, path) in reported, err
    assert exit_code == (Exit.DATAERR if CODES[code].severity == "error" else Exit.OK), err
    # the case breaks exactly one thing
    assert {c for c, _ in reported} == {code}, err


def test_all_problems_are_reported_at_once(lint_agent: str) -> None:
    text = """
profile = "lint-base"
[colocation.web-with-api]
with = "nowhere"
[primitive.db-ip.params]
port = 0
[order.api-after-db]
kind = "Mandatory"
[primitive.web]
agnet = "x"
"""
    with pytest.raises(DescriptionError) as caught:
        check.check(load.load_text(text, PROFILES), "openstack")
    codes = {f.code for f in caught.value.findings}
    assert codes == {findings.UNKNOWN_KEY}  # the format is checked first: a typo stops before semantics
    desc = load.load_text(text.replace('agnet = "x"', ""), PROFILES)
    found = {(f.code, f.path) for f in check.check(desc, "openstack")}
    assert found == {(findings.DANGLING_REFERENCE, "colocation.web-with-api.with"),
                     (findings.INVALID_PARAMETER_VALUE, "primitive.db-ip.params.port"),
                     (findings.MANDATORY_ORDER_INTO_CLONE, "order.api-after-db.kind")}


def test_unregistered_agent_of_another_provider_is_not_ours(lint_agent: str) -> None:
    text = 'profile = "lint-base"\n[primitive.extra]\nagent = "ocf:heartbeat:no-such-agent"\n'
    assert check.check(load.load_text(text, PROFILES), "openstack") == []
    # with another install provider, ocf:openstack:* is foreign and ocf:site:* is ours
    text = 'profile = "lint-base"\n[primitive.extra]\nagent = "ocf:site:crmtool-lint"\n'
    found = [(f.code, f.path) for f in check.check(load.load_text(text, PROFILES), "site")]
    assert (findings.MISSING_REQUIRED_PARAMETER, "primitive.extra.params") in found


@pytest.mark.parametrize(("name", "flagged"), [
    ("password", True), ("passwd", True), ("db_password", True), ("os-token", True), ("api_key", True),
    ("secret_key", True), ("passphrase", True), ("ssl-passphrase", True), ("hexadecimal_kg", True),
    ("community", True), ("auth_token", True),
    ("bypass", False), ("password_script", False), ("secret_file", False), ("tokenizer", False),
    ("access_key_file", False), ("passive", False), ("ssh_key", False), ("keystone_url", False),
])
def test_secret_names(name: str, flagged: bool, lint_agent: str) -> None:
    text = f'profile = "lint-base"\n[primitive.web.params]\n{name} = "x"\n'
    found = {f.code for f in check.check(load.load_text(text, PROFILES), "openstack")}
    assert (findings.SECRET_IN_CLEAR in found) is flagged


def findings_of(text: str) -> set[tuple[findings.Code, str]]:
    return {(f.code, f.path) for f in check.check(load.load_text(text, PROFILES), "openstack")}


@pytest.mark.parametrize(("nodes", "expected"), [
    ("[nodes.ctl1]\nid = 0\n", {(findings.NODE_ID, "nodes.ctl1.id")}),  # was silently replaced by 1
    ("[nodes.ctl2]\nid = -2\n", {(findings.NODE_ID, "nodes.ctl2.id")}),
    ("[nodes.ctl2]\nid = 4294967296\n", {(findings.NODE_ID, "nodes.ctl2.id")}),
    ("[nodes.ctl1]\nid = 7\n[nodes.ctl2]\nid = 7\n", {(findings.NODE_ID, "nodes.ctl2.id")}),
    ("[nodes.ctl1]\nid = 11\n[nodes.ctl2]\nid = 12\n[nodes.ctl3]\nid = 13\n", set()),  # negative control
    ("[nodes.Ctl2]\n", {(findings.NODE_NAME_CASE, "nodes.Ctl2")}),
    ("[nodes.ctl1]\nenabled = false\n[nodes.ctl2]\nenabled = false\n[nodes.ctl3]\nenabled = false\n",
     {(findings.TOO_FEW_NODES, "nodes")}),  # zero nodes
])
def test_node_checks(nodes: str, expected: set[tuple[findings.Code, str]], lint_agent: str) -> None:
    assert findings_of(f'profile = "lint-base"\n{nodes}') == expected


def test_duplicate_node_ids_stop_before_crm_simulate(lint_agent: str, tmp_path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site.toml"
    site.write_text('profile = "lint-base"\n[nodes.ctl3]\nid = 2\n')
    code, out, err = run_cli(["simulate", str(site)], capsys, PROFILES)
    assert code == Exit.DATAERR and "Traceback" not in out + err
    assert f"error {findings.NODE_ID} nodes.ctl3.id: id 2 is already used by 'ctl2' " in err


@pytest.mark.parametrize(("first", "same", "other"), [
    ('{ ip = "192.0.2.1" }', '{ ip = "192.0.2.1" }', '{ ip = "192.0.2.2" }'),
    ('{ ip = "2001:db8::1" }', '{ ip = "2001:DB8:0::1" }', '{ ip = "2001:db8::2" }'),
    ('{ ip = "pdu1", plug = "3" }', '{ ip = "pdu1", plug = "3" }', '{ ip = "pdu1", plug = "4" }'),
    ('{ plug = "i-0abc" }', '{ plug = "i-0abc" }', '{ plug = "i-0abd" }'),
])
def test_two_nodes_fenced_at_one_address(first: str, same: str, other: str, lint_agent: str) -> None:
    def site(second: str) -> str:
        return f'profile = "lint-base"\n[nodes.ctl1]\nfence = {first}\n[nodes.ctl2]\nfence = {second}\n'

    assert {c for c, _ in findings_of(site(same))} == {findings.SHARED_FENCE_TARGET}
    assert findings_of(site(other)) == set()  # negative control: two BMCs, one PDU's two outlets


def test_database_vip_equal_to_public_vip(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    from tests.crmtool_cases.support import example_text

    site = tmp_path / "site.toml"
    site.write_text(example_text().replace('ip = "192.0.2.20"', 'ip = "192.0.2.10"'))
    code, _out, err = run_cli(["check", str(site)], capsys)
    assert code == Exit.DATAERR
    assert f"error {findings.SHARED_VIP} primitive.public-vip.params.ip: public-vip and db-vip both " \
           "hold" in err


@pytest.mark.parametrize(("section", "line", "expected"), [
    ("rsc_defaults", "resource-stickness = 100", findings.UNKNOWN_OPTION),
    ("properties", "stonith-enabeld = true", findings.UNKNOWN_OPTION),
    ("op_defaults", "timeuot = \"20s\"", findings.UNKNOWN_OPTION),
    ("properties", 'stonith-enabled = "maybe"', findings.INVALID_OPTION_VALUE),
    ("properties", 'no-quorum-policy = "bogus"', findings.INVALID_OPTION_VALUE),
    ("properties", 'cluster-recheck-interval = "soon"', findings.INVALID_OPTION_VALUE),
    ("properties", 'batch-limit = "many"', findings.INVALID_OPTION_VALUE),
    ("rsc_defaults", 'failure-timeout = "x"', findings.INVALID_OPTION_VALUE),
    ("op_defaults", 'on-fail = "explode"', findings.INVALID_OPTION_VALUE),
    ("properties", 'no-quorum-policy = "ignore"', findings.QUORUM_IGNORED),
    # negative controls: Pacemaker's own spellings
    ("properties", 'stonith-enabled = "Yes"', None),
    ("properties", 'cluster-recheck-interval = "2min"', None),
    ("properties", 'node-health-red = "-INFINITY"', None),
    ("properties", 'load-threshold = "60%"', None),
    ("properties", 'stonith-watchdog-timeout = -1', None),
    ("rsc_defaults", 'resource-stickiness = "INFINITY"', None),
    ("rsc_defaults", 'target-role = "Stopped"', None),
    ("op_defaults", 'record-pending = true', None),
])
def test_options_against_pacemakers_metadata(section: str, line: str, expected: findings.Code | None,
                                             lint_agent: str, capsys: pytest.CaptureFixture[str]) -> None:
    found = findings_of(f'profile = "lint-base"\n[cluster.{section}]\n{line}\n')
    name = line.split(" = ", maxsplit=1)[0]
    assert found == ({(expected, f"cluster.{section}.{name}")} if expected else set())


def test_unknown_option_hint_names_the_option(lint_agent: str, tmp_path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site.toml"
    site.write_text('profile = "lint-base"\n[cluster.rsc_defaults]\nresource-stickness = 100\n'
                    '[cluster.properties]\nstonith-enabled = "maybe"\n')
    code, _out, err = run_cli(["check", str(site)], capsys, PROFILES)
    assert code == Exit.DATAERR
    assert f"{findings.UNKNOWN_OPTION} cluster.rsc_defaults.resource-stickness: Pacemaker has no resource " \
           "meta attribute 'resource-stickness' (did you mean 'resource-stickiness'?)" in err
    assert f"{findings.INVALID_OPTION_VALUE} cluster.properties.stonith-enabled" in err  # all at once


def test_options_come_from_the_installed_pacemaker() -> None:
    from crmtool import pacemaker

    options = pacemaker.cluster_options()
    assert options["stonith-enabled"].type == "boolean"
    assert "ignore" in options["no-quorum-policy"].choices
    assert {"dc-deadtime", "enable-acl", "cluster-recheck-interval"} <= set(options)


@pytest.mark.parametrize(("fencing", "path", "hint"), [
    # fence_aws has no *_script parameter: the hint names where it finds credentials itself
    ('agent = "fence_aws"\nparams = { secret_key = "x" }', "fencing.params.secret_key",
     "/root/.aws/credentials"),
    # fence_ipmilan's meta-data has passwd_script and password_script
    ('agent = "fence_ipmilan"\nparams = { passwd = "x" }', "fencing.params.passwd",
     "set passwd_script instead"),
    ('agent = "fence_ipmilan"\nparams = { password = "x" }', "fencing.params.password",
     "set password_script instead"),
])
def test_secret_hint_names_what_the_agent_has(fencing: str, path: str, hint: str, lint_agent: str,
                                              tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site.toml"
    site.write_text(f'profile = "lint-base"\n[fencing]\n{fencing}\n')
    code, _out, err = run_cli(["check", str(site)], capsys, PROFILES)
    assert code == Exit.DATAERR
    line = next(line for line in err.splitlines() if findings.SECRET_IN_CLEAR.code in line)
    assert line.startswith(f"error {findings.SECRET_IN_CLEAR} {path}: ") and hint in line, line


def test_our_agents_secret_hint_names_their_credentials_file(tmp_path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from tests.crmtool_cases.support import example_text

    site = tmp_path / "site.toml"
    site.write_text(example_text() + '\n[primitive.mysql.params]\ntest_passwd = "x"\n')
    code, _out, err = run_cli(["check", str(site)], capsys)
    assert code == Exit.DATAERR
    assert (f"error {findings.SECRET_IN_CLEAR} primitive.mysql.params.test_passwd: test_passwd is a secret: "
            "it would be stored in the CIB in clear; put it in the root-only file named by credentials "
            "instead") in err
    assert "test_passwd_script" not in err
