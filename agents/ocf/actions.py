"""Actions, declared once with a decorator.

The declaration feeds both the ``<actions>`` of the meta-data and the
dispatcher's table of what the agent can do.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from agents.ocf.codes import OCF

    Handler = Callable[..., OCF]

ROLES = ("Promoted", "Unpromoted")
# Actions every agent has, served by the dispatcher itself.
BUILTIN_TIMEOUTS = {"meta-data": 5, "validate-all": 20}
# Names the OCF 1.0 DTD allows; anything else is only advertised to OCF 1.1 callers.
OCF_1_0_ACTIONS = frozenset((
    "start", "stop", "recover", "monitor", "restart", "migrate_to", "migrate_from", "promote",
    "demote", "notify", "status", "reload", "meta-data", "usage", "methods", "validate-all",
))


class Advert:
    """One ``<action>`` line of the meta-data: default timeout, interval, depth, role."""

    __slots__ = ("depth", "interval", "role", "timeout")

    def __init__(self, timeout: int = 20, interval: int | None = None, depth: int | None = None,
                 role: str | None = None) -> None:
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self.timeout = timeout
        self.interval = interval
        self.depth = depth
        self.role = role


class ActionSpec:
    __slots__ = ("adverts", "method", "name")

    def __init__(self, name: str, method: str, adverts: tuple[Advert, ...]) -> None:
        self.name = name
        self.method = method
        self.adverts = adverts

    @property
    def timeout(self) -> int:
        return self.adverts[0].timeout


def action(name: str, *adverts: Advert, timeout: int = 20) -> Callable[[Handler], Handler]:
    """Mark an agent method as the handler of OCF action ``name``."""

    def mark(fn: Handler) -> Handler:
        fn.__ocf_action__ = (name, adverts or (Advert(timeout),))  # type: ignore[attr-defined]
        return fn

    return mark


def collect(namespace: Mapping[str, object]) -> dict[str, ActionSpec]:
    found: dict[str, ActionSpec] = {}
    for attr, value in namespace.items():
        mark = getattr(value, "__ocf_action__", None)
        if mark is not None:
            name, adverts = mark
            found[name] = ActionSpec(name, attr, adverts)
    return found
