"""The stages in order: load → check → render → validate."""

from __future__ import annotations

from crmtool.findings import DescriptionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lxml import etree

    from crmtool.findings import Finding
    from crmtool.model import Description


class Result:
    __slots__ = ("configuration", "description", "findings")

    def __init__(self, description: Description, findings: list[Finding],
                 configuration: etree._Element) -> None:
        self.description = description
        self.findings = findings
        self.configuration = configuration

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if not f.is_error]


def checked(description: Description, provider: str) -> Result:
    """Check; raise DescriptionError if any finding is an error; else render and validate."""
    from crmtool import check, render, validate

    findings = check.check(description, provider)
    if any(f.is_error for f in findings):
        raise DescriptionError(findings)
    configuration = render.configuration(description)
    validate.validate(configuration)
    return Result(description, findings, configuration)


def from_file(path: str, templates_dir: str, provider: str) -> Result:
    from crmtool import load

    return checked(load.load_file(path, templates_dir, provider), provider)


def from_text(text: str, templates_dir: str, provider: str) -> Result:
    from crmtool import load

    return checked(load.load_text(text, templates_dir, provider), provider)
