"""graph: the order and colocation constraints as a DOT picture.

Solid arrows are orders (first → then, labelled with the actions; dashed
when Optional), bold arrows colocations (dependent → anchor, with the role).
"""

from __future__ import annotations

import json

from crmtool import pacemaker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from crmtool.model import Description


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def dot(desc: Description) -> str:
    lines = ["digraph constraints {", "  rankdir=LR;", "  node [shape=box, fontname=\"sans-serif\"];"]
    for rsc in desc.top_level():
        clone = desc.clone(rsc.id)
        shape = "box3d" if clone is not None else "box"
        style = ', style="rounded,bold"' if clone is not None and clone.promotable else ""
        inner = ", ".join(p.id for p in desc.primitives_under(rsc.id))
        label = rsc.id if inner == rsc.id else f"{rsc.id}\\n({inner})"
        lines.append(f"  {_q(rsc.id)} [shape={shape}{style}, label=\"{label}\"];")
    for order in sorted(desc.orders, key=lambda o: o.id):
        style = "dashed" if order.kind == "Optional" else "solid"
        label = f"{order.first_action} → {order.then_action}"
        lines.append(f"  {_q(order.first)} -> {_q(order.then)} [style={style}, label={_q(label)}];")
    for col in sorted(desc.colocations, key=lambda c: c.id):
        role = f" ({col.with_role})" if col.with_role else ""
        lines.append(f"  {_q(col.rsc)} -> {_q(col.with_rsc)} [style=bold, color=blue, "
                     f"label={_q('with' + role + ' ' + col.score)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(text: str) -> bytes:
    """Render with Graphviz's ``dot`` (Unavailable when it is not installed)."""
    return pacemaker.run(["dot", "-Tsvg"], input_bytes=text.encode()).stdout
