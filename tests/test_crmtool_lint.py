"""crmtool check: one broken description per report code, all findings at once, exit 65."""

from __future__ import annotations

import glob
import os
import re

import pytest

from crmtool import check, load
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
    assert exit_code == (65 if CODES[code].severity == "error" else 0), err
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
    codes = {f.code.code for f in caught.value.findings}
    assert codes == {"CRM003"}  # the format is checked first: a typo stops before semantics
    desc = load.load_text(text.replace('agnet = "x"', ""), PROFILES)
    found = {(f.code.code, f.path) for f in check.check(desc, "openstack")}
    assert found == {("CRM101", "colocation.web-with-api.with"), ("CRM111", "primitive.db-ip.params.port"),
                     ("CRM115", "order.api-after-db.kind")}


def test_unregistered_agent_of_another_provider_is_not_ours(lint_agent: str) -> None:
    text = 'profile = "lint-base"\n[primitive.extra]\nagent = "ocf:heartbeat:no-such-agent"\n'
    assert check.check(load.load_text(text, PROFILES), "openstack") == []
    # with another install provider, ocf:openstack:* is foreign and ocf:site:* is ours
    text = 'profile = "lint-base"\n[primitive.extra]\nagent = "ocf:site:crmtool-lint"\n'
    found = [(f.code.code, f.path) for f in check.check(load.load_text(text, PROFILES), "site")]
    assert ("CRM110", "primitive.extra.params") in found


@pytest.mark.parametrize(("name", "flagged"), [
    ("password", True), ("passwd", True), ("db_password", True), ("os-token", True), ("api_key", True),
    ("bypass", False), ("password_script", False), ("secret_file", False), ("tokenizer", False),
])
def test_secret_names(name: str, flagged: bool, lint_agent: str) -> None:
    text = f'profile = "lint-base"\n[primitive.web.params]\n{name} = "x"\n'
    found = {f.code.code for f in check.check(load.load_text(text, PROFILES), "openstack")}
    assert ("CRM114" in found) is flagged
