"""Meta-data XML, built with lxml from the declarations.

OCF 1.1 adds what Pacemaker needs to reload instead of restart (the
``reloadable`` parameter attribute and the ``reload-agent`` action), plus
``unique-group`` and ``select`` types.  ocf-tester validates against the OCF
1.0 DTD (``ra-api-1.dtd``) and resource-agents' ``metadata.rng`` describes
the same 1.0 vocabulary; neither knows them.  pcs carries the OCF 1.1
schema (``/usr/share/pcs/data/ocf-1.1.rng``) and validates agents with it,
so the 1.1 document must stay within it: Pacemaker's own ``private``
extension is left out (pcs 0.11 rejects the whole agent for it; secrets are
kept out of the CIB by design instead).  So the meta-data is negotiated the way the OCF spec
intends: Pacemaker's executor announces the OCF version it speaks in
``OCF_RA_VERSION_MAJOR``/``OCF_RA_VERSION_MINOR``.  A caller that speaks 1.1
gets the 1.1 document (``<version>1.1</version>``, which is what makes
Pacemaker honour ``reloadable``); any other caller, an empty environment
included, gets the 1.0 document, which validates against both schemas.
Both come from the same declarations, and the 1.0 one is the 1.1 one minus
the 1.1-only attributes and actions.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agents.ocf.agent import Agent
    from agents.ocf.params import Param

OCF_1_1 = (1, 1)


def speaks_1_1(version: tuple[int, int]) -> bool:
    return version >= OCF_1_1


# No encoding in the declaration: crmsh parses meta-data from a Python str, and lxml
# refuses a str whose declaration names an encoding ("Cannot parse meta-data XML").
XML_DECLARATION = '<?xml version="1.0"?>\n'
DTD_DOCTYPE = '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">'


def render(agent: type[Agent], version: tuple[int, int] = (1, 0)) -> str:
    from lxml import etree

    root = build(agent, version)
    if speaks_1_1(version):
        body = etree.tostring(root, encoding="unicode", pretty_print=True)
    else:
        body = etree.tostring(root, encoding="unicode", pretty_print=True, doctype=DTD_DOCTYPE)
    return XML_DECLARATION + str(body)


def build(agent: type[Agent], version: tuple[int, int] = (1, 0)):  # type: ignore[no-untyped-def]
    from lxml import etree

    v11 = speaks_1_1(version)
    root = etree.Element("resource-agent", name=agent.name, version=agent.version)
    etree.SubElement(root, "version").text = "1.1" if v11 else "1.0"
    _descriptions(root, agent.longdesc, agent.shortdesc)
    params = etree.SubElement(root, "parameters")
    for param in agent.params:
        params.append(_parameter(param, v11))
    actions = etree.SubElement(root, "actions")
    for spec in agent.action_specs.values():
        if spec.name == "reload-agent" and not (v11 and agent.has_reload_agent()):
            continue
        for advert in spec.adverts:
            attrs = {"name": spec.name, "timeout": f"{advert.timeout}s"}
            if advert.interval is not None:
                attrs["interval"] = f"{advert.interval}s"
            if advert.depth is not None:
                attrs["depth"] = str(advert.depth)
            if advert.role is not None:
                attrs["role"] = advert.role
            etree.SubElement(actions, "action", attrs)
    from agents.ocf.actions import BUILTIN_TIMEOUTS

    for name, timeout in BUILTIN_TIMEOUTS.items():
        etree.SubElement(actions, "action", name=name, timeout=f"{timeout}s")
    return root


def _descriptions(parent, longdesc: str, shortdesc: str) -> None:  # type: ignore[no-untyped-def]
    from lxml import etree

    etree.SubElement(parent, "longdesc", lang="en").text = longdesc
    etree.SubElement(parent, "shortdesc", lang="en").text = shortdesc


def _parameter(param: Param, v11: bool):  # type: ignore[no-untyped-def]
    from lxml import etree

    attrs = {"name": param.name, "unique": _flag(param.unique), "required": _flag(param.required)}
    if v11:
        if param.reloadable:
            attrs["reloadable"] = "1"
        if param.unique_group:
            attrs["unique-group"] = param.unique_group
    element = etree.Element("parameter", attrs)
    longdesc = param.longdesc
    if param.deprecated_for:
        longdesc = f"Deprecated: use {param.deprecated_for}. {longdesc}"
    _descriptions(element, longdesc, param.shortdesc)
    kind = param.kind if (v11 or param.kind != "select") else "string"
    content = etree.SubElement(element, "content", type=kind)
    default = param.default_text()
    if default is not None:
        content.set("default", default)
    if kind == "select":
        for choice in param.choices:
            etree.SubElement(content, "option", value=choice)
    return element


def _flag(value: bool) -> str:
    return "1" if value else "0"
