"""check: semantic rules over a Description, every finding collected.

Each rule is a small function yielding Findings; ``check`` runs them all.
"""

from __future__ import annotations

import re

from crmtool.findings import Finding
from crmtool.load import interval_ms

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from crmtool.model import Colocation, Description, Location, Order, Primitive

    Rule = Callable[[Description, str], Iterator[Finding]]

XML_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
SECRET_NAME = re.compile(r"(^|[_-])(pass|passwd|password|secret|token|api_key|private_key)\Z", re.IGNORECASE)
SECRET_REFERENCE = re.compile(r"_(script|file|path|cmd)\Z", re.IGNORECASE)
FALSE_WORDS = ("false", "no", "0", "off", "n")
MIN_NODES = 3
# Written by the DC (cluster-name: copied from corosync.conf); apply and render --live keep the live values.
CLUSTER_OWNED = ("dc-version", "cluster-infrastructure", "cluster-name", "last-lrm-refresh")


def check(desc: Description, provider: str) -> list[Finding]:
    findings: dict[tuple[str, str], Finding] = {}
    for rule in RULES:
        for finding in rule(desc, provider):
            findings.setdefault((finding.code.code, finding.path), finding)
    return sorted(findings.values(), key=Finding.sort_key)


def _dangling(desc: Description, provider: str) -> Iterator[Finding]:
    ids = desc.resource_ids()
    nodes = set(desc.node_names())

    def missing(rsc: str, path: str) -> Iterator[Finding]:
        if rsc not in ids:
            yield Finding("dangling-reference", path, f"no resource named {rsc!r}")

    def inner(rsc: str, path: str) -> Iterator[Finding]:
        clone = desc.clone_of(rsc)
        if clone is not None:
            yield Finding("dangling-reference", path, f"{rsc!r} is inside clone {clone.id!r}: name the clone")

    for group in desc.groups:
        for index, member in enumerate(group.members):
            path = f"{group.path}.resources[{index}]"
            yield from missing(member, path)
            if member in ids and desc.primitive(member) is None:
                yield Finding("dangling-reference", path,
                              f"{member!r} is not a primitive: groups hold primitives")
    for clone in desc.clones:
        yield from missing(clone.resource, f"{clone.path}.resource")
        if clone.resource in ids and desc.clone(clone.resource) is not None:
            yield Finding("dangling-reference", f"{clone.path}.resource",
                          f"{clone.resource!r} is already a clone")
    for loc in desc.locations:
        yield from missing(loc.rsc, f"{loc.path}.rsc")
        yield from inner(loc.rsc, f"{loc.path}.rsc")
        if loc.node not in nodes:
            yield Finding("dangling-reference", f"{loc.path}.node", f"no node named {loc.node!r}")
    for col in desc.colocations:
        for rsc, key in ((col.rsc, "rsc"), (col.with_rsc, "with")):
            yield from missing(rsc, f"{col.path}.{key}")
            yield from inner(rsc, f"{col.path}.{key}")
    for order in desc.orders:
        for rsc, key in ((order.first, "first"), (order.then, "then")):
            yield from missing(rsc, f"{order.path}.{key}")
            yield from inner(rsc, f"{order.path}.{key}")


def _invalid_ids(desc: Description, provider: str) -> Iterator[Finding]:
    for rsc in desc.resources():
        if not XML_ID.match(rsc.id):
            yield Finding("invalid-id", rsc.path, f"{rsc.id!r} is not a valid id (a letter or _, then "
                          "letters, digits, '.', '_', '-')")
    for node in desc.nodes:
        if not XML_ID.match(node.name) and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", node.name):
            yield Finding("invalid-id", node.path, f"{node.name!r} is not a valid node name")


def _collisions(desc: Description, provider: str) -> Iterator[Finding]:
    seen: dict[str, str] = {}
    for element_id, path in _element_ids(desc):
        if element_id in seen:
            yield Finding("id-collision", path, f"id {element_id!r} is already used by {seen[element_id]}")
        else:
            seen[element_id] = path


def _element_ids(desc: Description) -> Iterator[tuple[str, str]]:
    for rsc in desc.resources():
        yield rsc.id, rsc.path
    for primitive in desc.primitives:
        for op in primitive.ops:
            yield op.id_for(primitive.id), op.path
    constraints: list[Location | Colocation | Order] = [*desc.locations, *desc.colocations, *desc.orders]
    for con in constraints:
        yield con.id, con.path


def _colocation_direction(desc: Description, provider: str) -> Iterator[Finding]:
    for col in desc.colocations:
        dependent_is_clone = desc.clone(col.rsc) is not None
        anchor_is_single = (col.with_rsc in desc.resource_ids() and desc.clone(col.with_rsc) is None
                            and desc.clone_of(col.with_rsc) is None)
        if dependent_is_clone and anchor_is_single:
            yield Finding("colocation-direction", col.path,
                          f"clone {col.rsc!r} would follow the single resource {col.with_rsc!r}: "
                          f"write rsc = {col.with_rsc!r}, with = {col.rsc!r}")


def _promote_without_role_colocation(desc: Description, provider: str) -> Iterator[Finding]:
    for order in desc.orders:
        if order.first_action != "promote" or order.then_action != "start":
            continue
        matched = any(c.rsc == order.then and c.with_rsc == order.first and c.with_role == "Promoted"
                      for c in desc.colocations)
        if not matched:
            yield Finding("promote-without-role-colocation", order.path,
                          f"{order.then!r} starts after {order.first!r} is promoted, but no colocation "
                          f"puts it with the Promoted role (rsc = {order.then!r}, with = {order.first!r}, "
                          "with_role = \"Promoted\")")


def _order_cycles(desc: Description, provider: str) -> Iterator[Finding]:
    edges: dict[str, list[tuple[str, str]]] = {}
    for order in desc.orders:
        if order.kind == "Mandatory":
            edges.setdefault(order.first, []).append((order.then, order.path))
    reported: set[frozenset[str]] = set()
    for start in sorted(edges):
        cycle = _find_cycle(start, edges)
        if cycle is None:
            continue
        names, paths = zip(*cycle, strict=True)
        if frozenset(names) not in reported:
            reported.add(frozenset(names))
            yield Finding("order-cycle", paths[0], "mandatory orders form a loop: " +
                          " -> ".join((*names, names[0])) + f" ({', '.join(paths)})")


def _find_cycle(start: str, edges: dict[str, list[tuple[str, str]]]) -> list[tuple[str, str]] | None:
    """A path of (node, order path) from ``start`` back to itself, if any."""
    stack: list[tuple[str, list[tuple[str, str]]]] = [(start, [])]
    visited: set[str] = set()
    while stack:
        node, trail = stack.pop()
        for target, path in edges.get(node, []):
            step = [*trail, (node, path)]
            if target == start:
                return step
            if target not in visited:
                visited.add(target)
                stack.append((target, step))
    return None


def _non_interleaved(desc: Description, provider: str) -> Iterator[Finding]:
    pairs = [(o.first, o.then, o.path) for o in desc.orders if o.kind != "Optional"]
    pairs += [(c.with_rsc, c.rsc, c.path) for c in desc.colocations]
    for anchor, dependent, path in pairs:
        first, then = desc.clone(anchor), desc.clone(dependent)
        if first is not None and then is not None and not then.interleaved:
            yield Finding("non-interleaved-clone-chain", path,
                          f"clone {then.id!r} depends on clone {first.id!r} without interleave=true "
                          f"(set {then.path}.meta.interleave = true)")


def _role_monitor_intervals(desc: Description, provider: str) -> Iterator[Finding]:
    for primitive in desc.primitives:
        seen: dict[int, str] = {}
        for op in primitive.ops:
            if op.name != "monitor":
                continue
            ms = interval_ms(op.interval)
            if ms in seen:
                yield Finding("equal-role-monitor-intervals", f"{op.path}.interval",
                              f"monitor interval {op.interval} is also used by {seen[ms]}; "
                              "each role's monitor needs its own interval")
            else:
                seen[ms] = op.path


def _reused(desc: Description, provider: str) -> Iterator[Finding]:
    owner: dict[str, str] = {}
    for group in desc.groups:
        for index, member in enumerate(group.members):
            path = f"{group.path}.resources[{index}]"
            if member in owner:
                yield Finding("resource-reused", path, f"{member!r} is already used by {owner[member]}")
            else:
                owner[member] = path
    for clone in desc.clones:
        path = f"{clone.path}.resource"
        if clone.resource in owner:
            yield Finding("resource-reused", path,
                          f"{clone.resource!r} is already used by {owner[clone.resource]}")
        else:
            owner[clone.resource] = path


def _roles(desc: Description, provider: str) -> Iterator[Finding]:
    for col in desc.colocations:
        sides = ((col.rsc, col.rsc_role, "rsc_role"), (col.with_rsc, col.with_role, "with_role"))
        for rsc, role, key in sides:
            if role in ("Promoted", "Unpromoted") and not desc.is_promotable(rsc):
                yield Finding("role-on-non-promotable", f"{col.path}.{key}",
                              f"{rsc!r} is not a promotable clone: it has no {role} role")
    for order in desc.orders:
        for rsc, action, key in ((order.first, order.first_action, "first_action"),
                                 (order.then, order.then_action, "then_action")):
            if action in ("promote", "demote") and not desc.is_promotable(rsc):
                yield Finding("role-on-non-promotable", f"{order.path}.{key}",
                              f"{rsc!r} is not a promotable clone: it is never {action}d")


def _mandatory_into_clone(desc: Description, provider: str) -> Iterator[Finding]:
    for order in desc.orders:
        if order.kind != "Mandatory":
            continue
        first_single = order.first in desc.resource_ids() and desc.clone(order.first) is None
        if first_single and desc.clone(order.then) is not None:
            yield Finding("mandatory-order-into-clone", f"{order.path}.kind",
                          f"when {order.first!r} moves, every instance of {order.then!r} restarts on every "
                          "node: use kind = \"Optional\"")


def _fencing(desc: Description, provider: str) -> Iterator[Finding]:
    value = desc.properties.get("stonith-enabled", "true").lower()
    if value in FALSE_WORDS:
        yield Finding("fencing-disabled", desc.paths.get("properties.stonith-enabled", "cluster.properties"),
                      "a node that stops answering cannot be fenced, so its resources are never recovered")


def _too_few_nodes(desc: Description, provider: str) -> Iterator[Finding]:
    if 0 < len(desc.nodes) < MIN_NODES:
        yield Finding("too-few-nodes", "nodes",
                      f"{len(desc.nodes)} node(s): quorum needs at least {MIN_NODES}")


def _storage_nodes(desc: Description, provider: str) -> Iterator[Finding]:
    storage = desc.storage
    if not storage.resources:
        return
    known = set(desc.node_names())
    for index, node in enumerate(storage.nodes):
        if node not in known:
            yield Finding("storage-nodes", f"{storage.path}[{index}]", f"no node named {node!r}")
        elif node in storage.nodes[:index]:
            yield Finding("storage-nodes", f"{storage.path}[{index}]", f"{node!r} is named twice")
    count = len(known.intersection(storage.nodes))
    if count < 2:
        yield Finding("storage-nodes", storage.path,
                      f"{count} storage node(s): the database needs two replicas, three to survive a failure")
    elif count % 2 == 0:
        yield Finding("even-storage-nodes", storage.path,
                      f"{count} storage nodes: DRBD's quorum survives as few failures as with {count - 1}"
                      + (" (with 2, one failure stops the database's writes)" if count == 2 else ""))
    for rsc in storage.resources:
        clone = desc.clone(rsc)
        clone_max = clone.meta.get("clone-max") if clone is not None else None
        if clone is not None and clone_max != str(len(storage.nodes)):
            yield Finding("storage-nodes", f"{clone.path}.meta.clone-max",
                          f"clone-max {clone_max} differs from the {len(storage.nodes)} storage nodes")


def _cluster_owned(desc: Description, provider: str) -> Iterator[Finding]:
    for name in CLUSTER_OWNED:
        if name in desc.properties:
            path = desc.paths.get(f"properties.{name}", "cluster.properties")
            yield Finding("cluster-owned-property", path,
                          f"{name} is maintained by the cluster itself: remove it from the description")


def _secrets(desc: Description, provider: str) -> Iterator[Finding]:
    for primitive in desc.primitives:
        for name, value in primitive.params.items():
            if value and SECRET_NAME.search(name) and not SECRET_REFERENCE.search(name):
                yield Finding("secret-in-clear", primitive.param_path(name),
                              f"{name} is written in clear: reference it instead (e.g. {name}_script or a "
                              "file only root can read)")


def _agent_params(desc: Description, provider: str) -> Iterator[Finding]:
    from agents import registry

    known = set(registry.names())
    for primitive in desc.primitives:
        agent = primitive.agent
        if agent.standard != "ocf" or agent.provider != provider:
            continue
        if agent.type not in known:
            yield Finding("unregistered-agent", f"{primitive.path}.agent",
                          f"{agent} is not a registered agent (known: {', '.join(sorted(known))}); "
                          "its parameters are not checked")
            continue
        try:
            declared = registry.load(agent.type)
        except ImportError as exc:
            yield Finding("unregistered-agent", f"{primitive.path}.agent",
                          f"{agent} is registered but cannot be imported ({exc}); "
                          "its parameters are not checked")
            continue
        yield from _check_params(primitive, declared.params)


def _check_params(primitive: Primitive, params: tuple[object, ...]) -> Iterator[Finding]:
    from agents.ocf.params import Param

    declared = {p.name: p for p in params if isinstance(p, Param)}
    for name, value in primitive.params.items():
        param = declared.get(name)
        path = primitive.param_path(name)
        if param is None:
            import difflib

            near = difflib.get_close_matches(name, declared, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            yield Finding("unknown-parameter", path, f"{primitive.agent} has no parameter {name!r}{hint}")
            continue
        if param.deprecated_for:
            yield Finding("deprecated-parameter", path, f"{name} is deprecated: use {param.deprecated_for}")
        if param.secret and value:
            yield Finding("secret-in-clear", path,
                          f"{name} is a secret: it would be stored in the CIB in clear")
        try:
            param.coerce(value)
        except ValueError as exc:
            yield Finding("invalid-parameter-value", path, f"{name} {exc}")
    aliases = {p.deprecated_for for p in declared.values() if p.deprecated_for and p.name in primitive.params}
    for param in declared.values():
        if param.required and param.default is None and param.name not in primitive.params \
                and param.name not in aliases:
            yield Finding("missing-required-parameter", f"{primitive.path}.params",
                          f"{primitive.agent} requires {param.name!r}")


RULES: tuple[Rule, ...] = (
    _dangling, _invalid_ids, _collisions, _colocation_direction, _promote_without_role_colocation,
    _order_cycles, _non_interleaved, _role_monitor_intervals, _reused, _roles, _mandatory_into_clone,
    _fencing, _too_few_nodes, _storage_nodes, _cluster_owned, _secrets, _agent_params,
)
