"""pcs: the description as a ``pcs -f`` command script.

For operators who keep pcs as their tool of record: replayed on an empty
CIB, the script builds a configuration semantically equal to ``render``
(pcs's own ids for defaults aside).
"""

from __future__ import annotations

import shlex

TYPE_CHECKING = False
if TYPE_CHECKING:
    from crmtool.model import Clone, Description, Op, Primitive

HEADER = """#!/bin/sh
# pcs commands equivalent to `crmtool render`; they edit the CIB file named by $CIB
# offline (pcs -f), e.g.: cibadmin --empty > cib.xml; CIB=cib.xml sh this-script
set -e
CIB="${CIB:?set CIB to the CIB file to edit}"
"""


def script(desc: Description, *, force: bool = False) -> str:
    lines = [HEADER]
    lines += _properties(desc)
    lines += _resources(desc, force)
    lines += _constraints(desc)
    return "\n".join(lines) + "\n"


def _pcs(*words: str) -> str:
    return 'pcs -f "$CIB" ' + " ".join(shlex.quote(w) for w in words)


def _pairs(values: dict[str, str]) -> list[str]:
    return [f"{name}={value}" for name, value in values.items()]


def _properties(desc: Description) -> list[str]:
    lines = []
    if desc.properties:
        lines.append(_pcs("property", "set", *_pairs(desc.properties)))
    if desc.rsc_defaults:
        lines.append(_pcs("resource", "defaults", "update", *_pairs(desc.rsc_defaults)))
    if desc.op_defaults:
        lines.append(_pcs("resource", "op", "defaults", "update", *_pairs(desc.op_defaults)))
    return lines


def _op_words(op: Op) -> list[str]:
    words = ["op", op.name, f"interval={op.interval}"]
    for key, value in (("timeout", op.timeout), ("role", op.role), ("on-fail", op.on_fail)):
        if value is not None:
            words.append(f"{key}={value}")
    if op.depth is not None:
        words.append(f"OCF_CHECK_LEVEL={op.depth}")
    return words


def _create(primitive: Primitive, force: bool, group: str | None = None, clone: Clone | None = None) -> str:
    stonith = primitive.agent.standard == "stonith"
    words = ["stonith" if stonith else "resource", "create", primitive.id,
             primitive.agent.type if stonith else str(primitive.agent), *_pairs(primitive.params)]
    for op in primitive.ops:
        words += _op_words(op)
    if primitive.meta:
        words += ["meta", *_pairs(primitive.meta)]
    if clone is not None:
        # cloned at creation: `pcs resource promotable` would query the agent again, ignoring --force
        words += ["promotable" if clone.promotable else "clone", clone.id, *_pairs(clone.meta)]
    if group is not None:
        words += ["--group", group]
    if not stonith:
        words.append("--no-default-ops")
    if force:
        words.append("--force")
    return _pcs(*words)


def _resources(desc: Description, force: bool) -> list[str]:
    lines: list[str] = []
    for rsc in desc.top_level():
        clone = desc.clone(rsc.id)
        inner = clone.resource if clone is not None else rsc.id
        primitive = desc.primitive(inner)
        if primitive is not None:
            lines.append(_create(primitive, force, clone=clone))
            continue
        lines += _group(desc, inner, force)
        if clone is not None:
            verb = "promotable" if clone.promotable else "clone"
            lines.append(_pcs("resource", verb, inner, clone.id, *_pairs(clone.meta)))
    return lines


def _group(desc: Description, group_id: str, force: bool) -> list[str]:
    group = desc.group(group_id)
    if group is None:
        return []
    lines = [_create(p, force, group=group.id) for m in group.members if (p := desc.primitive(m)) is not None]
    if group.meta:
        lines.append(_pcs("resource", "meta", group.id, *_pairs(group.meta)))
    return lines


def _constraints(desc: Description) -> list[str]:
    lines = []
    for loc in sorted(desc.locations, key=lambda c: c.id):
        discovery = [f"resource-discovery={loc.discovery}"] if loc.discovery else []
        lines.append(_pcs("constraint", "location", "add", loc.id, loc.rsc, loc.node, "--", loc.score,
                          *discovery))
    for col in sorted(desc.colocations, key=lambda c: c.id):
        words = ["constraint", "colocation", "add"]
        words += [col.rsc_role] if col.rsc_role else []
        words += [col.rsc, "with"]
        words += [col.with_role] if col.with_role else []
        words += [col.with_rsc, col.score, f"id={col.id}"]
        lines.append(_pcs(*words))
    for order in sorted(desc.orders, key=lambda c: c.id):
        lines.append(_pcs("constraint", "order", order.first_action, order.first, "then", order.then_action,
                          order.then, f"kind={order.kind}", f"id={order.id}"))
    return lines
