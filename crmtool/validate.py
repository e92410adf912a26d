"""validate: Pacemaker's own RelaxNG schema judges every output.

A configuration the schema rejects is a crmtool bug (exit 70), never the
operator's fault: the description was already checked.
"""

from __future__ import annotations

from crmtool.findings import SoftwareBug, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lxml import etree

SCHEMA_DIR = "/usr/share/pacemaker"
SCHEMA_VERSION = "pacemaker-3.9"
_schemas: dict[str, etree.RelaxNG] = {}


def schema(version: str = SCHEMA_VERSION) -> etree.RelaxNG:
    from lxml import etree

    if version not in _schemas:
        path = f"{SCHEMA_DIR}/{version}.rng"
        try:
            _schemas[version] = etree.RelaxNG(etree.parse(path))
        except (OSError, etree.XMLSyntaxError, etree.RelaxNGParseError) as exc:
            raise Unavailable(f"cannot load Pacemaker's schema {path}: {exc}") from None
    return _schemas[version]


def wrap(configuration: etree._Element) -> etree._Element:
    """A minimal ``<cib>`` around a copy of ``configuration``, only for validation."""
    import copy

    from crmtool.elements import el

    cib = el("cib", {"validate-with": SCHEMA_VERSION, "admin_epoch": "0", "epoch": "0", "num_updates": "0"})
    cib.append(copy.deepcopy(configuration))
    return cib


def errors(document: etree._Element) -> list[str]:
    """Schema errors of a whole ``<cib>`` or of a bare ``<configuration>``."""
    target = wrap(document) if document.tag == "configuration" else document
    grammar = schema()
    if grammar.validate(target):
        return []
    return [f"line {e.line}: {e.message}" for e in grammar.error_log]


def validate(document: etree._Element) -> None:
    problems = errors(document)
    if problems:
        raise SoftwareBug("crmtool rendered XML that Pacemaker's schema rejects (a crmtool bug): "
                          + "; ".join(problems[:5]))
