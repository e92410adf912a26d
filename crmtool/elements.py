"""The one element builder every stage uses (typed, on lxml)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from lxml import etree


def el(tag: str, attrs: Mapping[str, str] | None = None,
       children: Iterable[etree._Element] = ()) -> etree._Element:
    """``<tag attrs...>children</tag>``; attributes keep the order given."""
    from lxml import etree

    node = etree.Element(tag)
    for name, value in (attrs or {}).items():
        node.set(name, value)
    node.extend(children)
    return node
