"""render: a Description as CIB XML, built with lxml's element factory.

Ids are derived from the description (pcs's conventions), children come in
a fixed order, so an unchanged description renders byte-identical XML.
"""

from __future__ import annotations

from crmtool.elements import el

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lxml import etree

    from crmtool.model import Clone, Description, Group, Op, Primitive

BOOTSTRAP = "cib-bootstrap-options"
RSC_DEFAULTS = "rsc_defaults-meta_attributes"
OP_DEFAULTS = "op_defaults-meta_attributes"


def configuration(desc: Description) -> etree._Element:
    return el("configuration", None, [
        el("crm_config", None, [_nvset("cluster_property_set", BOOTSTRAP, desc.properties)]),
        el("nodes", None, [_node(n.name, n.node_id, n.attributes) for n in desc.nodes]),
        el("resources", None, [_resource(desc, r) for r in desc.top_level()]),
        el("constraints", None, _constraints(desc)),
        *_defaults(desc),
    ])


def to_bytes(element: etree._Element) -> bytes:
    from lxml import etree

    return etree.tostring(element, pretty_print=True, encoding="UTF-8", xml_declaration=False)


def _nvset(tag: str, set_id: str, values: dict[str, str]) -> etree._Element:
    pairs = [el("nvpair", {"id": f"{set_id}-{name}", "name": name, "value": value})
             for name, value in values.items()]
    return el(tag, {"id": set_id}, pairs)


def _node(name: str, node_id: int, attributes: dict[str, str]) -> etree._Element:
    node = el("node", {"id": str(node_id), "uname": name})
    if attributes:
        node.append(_nvset("instance_attributes", f"nodes-{node_id}", attributes))
    return node


def _defaults(desc: Description) -> list[etree._Element]:
    sections = []
    for tag, set_id, values in (("rsc_defaults", RSC_DEFAULTS, desc.rsc_defaults),
                                ("op_defaults", OP_DEFAULTS, desc.op_defaults)):
        if values:
            sections.append(el(tag, None, [_nvset("meta_attributes", set_id, values)]))
    return sections


def _resource(desc: Description, rsc: Primitive | Group | Clone) -> etree._Element:
    from crmtool.model import Clone, Group

    if isinstance(rsc, Clone):
        return _clone(desc, rsc)
    if isinstance(rsc, Group):
        return _group(desc, rsc)
    return _primitive(rsc)


def _primitive(primitive: Primitive) -> etree._Element:
    agent = primitive.agent
    attrs = {"id": primitive.id, "class": agent.standard, "type": agent.type}
    if agent.provider:
        attrs["provider"] = agent.provider
    element = el("primitive", attrs)
    if primitive.params:
        element.append(_nvset("instance_attributes", f"{primitive.id}-instance_attributes", primitive.params))
    if primitive.meta:
        element.append(_nvset("meta_attributes", f"{primitive.id}-meta_attributes", primitive.meta))
    if primitive.ops:
        element.append(el("operations", None, [_op(primitive.id, op) for op in primitive.ops]))
    return element


def _op(rsc_id: str, op: Op) -> etree._Element:
    op_id = op.id_for(rsc_id)
    attrs = {"id": op_id, "name": op.name, "interval": op.interval}
    for key, value in (("timeout", op.timeout), ("role", op.role), ("on-fail", op.on_fail)):
        if value is not None:
            attrs[key] = value
    element = el("op", attrs)
    if op.depth is not None:
        element.append(_nvset("instance_attributes", f"{op_id}-instance_attributes",
                              {"OCF_CHECK_LEVEL": str(op.depth)}))
    return element


def _group(desc: Description, group: Group) -> etree._Element:
    children = [p for m in group.members if (p := desc.primitive(m)) is not None]
    element = el("group", {"id": group.id})
    if group.meta:
        element.append(_nvset("meta_attributes", f"{group.id}-meta_attributes", group.meta))
    element.extend(_primitive(p) for p in children)
    return element


def _clone(desc: Description, clone: Clone) -> etree._Element:
    element = el("clone", {"id": clone.id})
    meta = clone.all_meta()
    if meta:
        element.append(_nvset("meta_attributes", f"{clone.id}-meta_attributes", meta))
    group = desc.group(clone.resource)
    primitive = desc.primitive(clone.resource)
    if group is not None:
        element.append(_group(desc, group))
    elif primitive is not None:
        element.append(_primitive(primitive))
    return element


def _constraints(desc: Description) -> list[etree._Element]:
    elements: list[etree._Element] = []
    for loc in sorted(desc.locations, key=lambda c: c.id):
        attrs = {"id": loc.id, "rsc": loc.rsc, "node": loc.node, "score": loc.score}
        if loc.discovery:
            attrs["resource-discovery"] = loc.discovery
        elements.append(el("rsc_location", attrs))
    for col in sorted(desc.colocations, key=lambda c: c.id):
        attrs = {"id": col.id, "rsc": col.rsc, "with-rsc": col.with_rsc, "score": col.score}
        if col.rsc_role:
            attrs["rsc-role"] = col.rsc_role
        if col.with_role:
            attrs["with-rsc-role"] = col.with_role
        elements.append(el("rsc_colocation", attrs))
    for order in sorted(desc.orders, key=lambda c: c.id):
        attrs = {"id": order.id, "first": order.first, "first-action": order.first_action,
                 "then": order.then, "then-action": order.then_action, "kind": order.kind}
        elements.append(el("rsc_order", attrs))
    return elements
