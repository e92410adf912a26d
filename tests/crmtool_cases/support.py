"""Helpers shared by the crmtool tests."""

from __future__ import annotations

import os

import pytest

from crmtool import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASES = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(ROOT, "cib-templates")
PROFILES = os.path.join(CASES, "profiles")
SITES = os.path.join(CASES, "sites")
GOLDEN = os.path.join(CASES, "golden")
LINT = os.path.join(CASES, "lint")
EXAMPLE = os.path.join(ROOT, "examples", "site.toml")


def example_text() -> str:
    with open(EXAMPLE, encoding="utf-8") as handle:
        return handle.read()


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str],
            templates: str = TEMPLATES) -> tuple[int, str, str]:
    """crmtool's main in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--templates", templates, *argv])
    out, err = capsys.readouterr()
    code = stopped.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture
def lint_agent(monkeypatch: pytest.MonkeyPatch) -> str:
    """Registers the test-only agent ``crmtool-lint`` (and one that cannot be imported) for a test."""
    from agents import registry

    monkeypatch.setitem(registry.AGENTS, "crmtool-lint", "tests.crmtool_cases.lint_agent")
    monkeypatch.setitem(registry.AGENTS, "crmtool-unimportable", "tests.crmtool_cases.no_such_module")
    return "crmtool-lint"
