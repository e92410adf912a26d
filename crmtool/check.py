"""check: semantic rules over a Description, every finding collected.

Each rule is a small function yielding Findings; ``check`` runs them all.
"""

from __future__ import annotations

import re

from agents.ocf.params import FALSE_WORDS, TRUE_WORDS
from crmtool.findings import (
    CLUSTER_OWNED_PROPERTY,
    COLOCATION_DIRECTION,
    DANGLING_REFERENCE,
    DEPRECATED_PARAMETER,
    EQUAL_ROLE_MONITOR_INTERVALS,
    EVEN_STORAGE_NODES,
    FENCING_DISABLED,
    ID_COLLISION,
    INVALID_ID,
    INVALID_OPTION_VALUE,
    INVALID_PARAMETER_VALUE,
    MANDATORY_ORDER_INTO_CLONE,
    MISSING_REQUIRED_PARAMETER,
    NODE_ID,
    NODE_NAME_CASE,
    NON_INTERLEAVED_CLONE_CHAIN,
    OP_TIMEOUT_BELOW_ADVERT,
    ORDER_CYCLE,
    PROMOTE_WITHOUT_ROLE_COLOCATION,
    QUORUM_IGNORED,
    RESOURCE_REUSED,
    ROLE_ON_NON_PROMOTABLE,
    SECRET_IN_CLEAR,
    SHARED_FENCE_TARGET,
    SHARED_VIP,
    STORAGE_NODES,
    TOO_FEW_NODES,
    UNKNOWN_AGENT,
    UNKNOWN_OPTION,
    UNKNOWN_PARAMETER,
    UNREGISTERED_AGENT,
    Finding,
)
from crmtool.haproxy import RULES as HAPROXY_RULES
from crmtool.load import advertised_ops, interval_ms, op_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from agents.ocf.params import Param
    from crmtool.model import Colocation, Description, Location, Order, Primitive

    Rule = Callable[[Description, str], Iterator[Finding]]

XML_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
# The last word of a parameter name that holds a secret itself (password_script names a program).
SECRET_WORDS = ("pass", "passwd", "password", "pwd", "passphrase", "secret", "token", "community", "kg")
SECRET_SUFFIXES = ("secret_key", "secret-key", "secretkey", "api_key", "api-key", "apikey", "private_key",
                   "private-key")
# Where an agent without a *_script parameter finds credentials on its own.
AGENT_CREDENTIALS = {
    "stonith:fence_aws": " (boto3's own chain: /root/.aws/credentials or the instance's IAM role)",
}
SCORE = re.compile(r"[+-]?([0-9]+|INFINITY)", re.IGNORECASE)
TIME = re.compile(r"-?[0-9]+(\.[0-9]+)?\s*(ms|msec|us|usec|s|sec|m|min|h|hr)?", re.IGNORECASE)
SIGNED_TIMES = ("stonith-watchdog-timeout",)  # negative: derive it from SBD's watchdog timeout
PERCENTAGE = re.compile(r"[0-9]+(\.[0-9]+)?%?")
_RESOURCE_CHOICES = {
    "target-role": ("Stopped", "Started", "Promoted", "Unpromoted", "Master", "Slave"),
    "multiple-active": ("block", "stop_only", "stop_start", "stop_unexpected"),
    "requires": ("nothing", "quorum", "fencing", "unfencing"),
}
# Pacemaker Explained, "Resource Meta-Attributes" and clone options: name -> (type, choices)
RESOURCE_META: dict[str, tuple[str, tuple[str, ...]]] = {
    **{n: ("boolean", ()) for n in ("is-managed", "maintenance", "critical", "allow-migrate",
                                   "allow-unhealthy-nodes", "globally-unique", "notify", "ordered",
                                   "interleave", "promotable")},
    **{n: ("integer", ()) for n in ("priority", "resource-stickiness", "migration-threshold", "clone-max",
                                   "clone-node-max", "clone-min", "promoted-max", "promoted-node-max")},
    **{n: ("time", ()) for n in ("failure-timeout", "remote-connect-timeout")},
    **{n: ("string", ()) for n in ("container-attribute-target", "remote-node", "remote-port", "remote-addr",
                                  "description")},
    **{n: ("select", tuple(c.lower() for c in choices)) for n, choices in _RESOURCE_CHOICES.items()},
}
# Pacemaker Explained, "Operation Properties"
OPERATION_META: dict[str, tuple[str, tuple[str, ...]]] = {
    **{n: ("time", ()) for n in ("timeout", "interval", "start-delay")},
    **{n: ("boolean", ()) for n in ("enabled", "record-pending")},
    "on-fail": ("select", ("ignore", "block", "demote", "stop", "restart", "standby", "fence")),
    "interval-origin": ("string", ()),
    "role": ("select", ("stopped", "started", "promoted", "unpromoted", "master", "slave")),
    "description": ("string", ()),
}
MIN_NODES = 3
MAX_NODE_ID = 2**32 - 1
# fence agents' parameters that name the device (a BMC, a PDU, a cloud) and the outlet/instance on it
FENCE_ADDRESS = ("ip", "ipaddr", "hostname")
FENCE_PLUG = ("plug", "port")
IP_AGENTS = ("vip", "IPaddr2", "IPaddr")
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
            yield Finding(DANGLING_REFERENCE, path, f"no resource named {rsc!r}")

    def inner(rsc: str, path: str) -> Iterator[Finding]:
        clone = desc.clone_of(rsc)
        if clone is not None:
            yield Finding(DANGLING_REFERENCE, path, f"{rsc!r} is inside clone {clone.id!r}: name the clone")

    for group in desc.groups:
        for index, member in enumerate(group.members):
            path = f"{group.path}.resources[{index}]"
            yield from missing(member, path)
            if member in ids and desc.primitive(member) is None:
                yield Finding(DANGLING_REFERENCE, path,
                              f"{member!r} is not a primitive: groups hold primitives")
    for clone in desc.clones:
        yield from missing(clone.resource, f"{clone.path}.resource")
        if clone.resource in ids and desc.clone(clone.resource) is not None:
            yield Finding(DANGLING_REFERENCE, f"{clone.path}.resource",
                          f"{clone.resource!r} is already a clone")
    for loc in desc.locations:
        yield from missing(loc.rsc, f"{loc.path}.rsc")
        yield from inner(loc.rsc, f"{loc.path}.rsc")
        if loc.node not in nodes:
            yield Finding(DANGLING_REFERENCE, f"{loc.path}.node", f"no node named {loc.node!r}")
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
            yield Finding(INVALID_ID, rsc.path, f"{rsc.id!r} is not a valid id (a letter or _, then "
                          "letters, digits, '.', '_', '-')")
    for node in desc.nodes:
        if not XML_ID.match(node.name) and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", node.name):
            yield Finding(INVALID_ID, node.path, f"{node.name!r} is not a valid node name")


def _collisions(desc: Description, provider: str) -> Iterator[Finding]:
    seen: dict[str, str] = {}
    for element_id, path in _element_ids(desc):
        if element_id in seen:
            yield Finding(ID_COLLISION, path, f"id {element_id!r} is already used by {seen[element_id]}")
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
            yield Finding(COLOCATION_DIRECTION, col.path,
                          f"clone {col.rsc!r} would follow the single resource {col.with_rsc!r}: "
                          f"write rsc = {col.with_rsc!r}, with = {col.rsc!r}")


def _promote_without_role_colocation(desc: Description, provider: str) -> Iterator[Finding]:
    for order in desc.orders:
        if order.first_action != "promote" or order.then_action != "start":
            continue
        matched = any(c.rsc == order.then and c.with_rsc == order.first and c.with_role == "Promoted"
                      for c in desc.colocations)
        if not matched:
            yield Finding(PROMOTE_WITHOUT_ROLE_COLOCATION, order.path,
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
            yield Finding(ORDER_CYCLE, paths[0], "mandatory orders form a loop: " +
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
            yield Finding(NON_INTERLEAVED_CLONE_CHAIN, path,
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
                yield Finding(EQUAL_ROLE_MONITOR_INTERVALS, f"{op.path}.interval",
                              f"monitor interval {op.interval} is also used by {seen[ms]}; "
                              "each role's monitor needs its own interval")
            else:
                seen[ms] = op.path


def _op_timeouts(desc: Description, provider: str) -> Iterator[Finding]:
    """A stated timeout below our agent's advert: Pacemaker cuts short what the agent may need."""
    for primitive in desc.primitives:
        adverts = {op_key(a): a for a in advertised_ops(primitive.agent, primitive.path, provider) or ()}
        for op in primitive.ops:
            advert = adverts.get(op_key(op))
            if advert is None or op.timeout is None or advert.timeout is None:
                continue
            if interval_ms(op.timeout) < interval_ms(advert.timeout):
                yield Finding(OP_TIMEOUT_BELOW_ADVERT, f"{op.path}.timeout",
                              f"{op.name} timeout {op.timeout} is shorter than the {advert.timeout} "
                              f"{primitive.agent} advertises (leave it out to use the agent's)")


def _reused(desc: Description, provider: str) -> Iterator[Finding]:
    owner: dict[str, str] = {}
    for group in desc.groups:
        for index, member in enumerate(group.members):
            path = f"{group.path}.resources[{index}]"
            if member in owner:
                yield Finding(RESOURCE_REUSED, path, f"{member!r} is already used by {owner[member]}")
            else:
                owner[member] = path
    for clone in desc.clones:
        path = f"{clone.path}.resource"
        if clone.resource in owner:
            yield Finding(RESOURCE_REUSED, path,
                          f"{clone.resource!r} is already used by {owner[clone.resource]}")
        else:
            owner[clone.resource] = path


def _roles(desc: Description, provider: str) -> Iterator[Finding]:
    for col in desc.colocations:
        sides = ((col.rsc, col.rsc_role, "rsc_role"), (col.with_rsc, col.with_role, "with_role"))
        for rsc, role, key in sides:
            if role in ("Promoted", "Unpromoted") and not desc.is_promotable(rsc):
                yield Finding(ROLE_ON_NON_PROMOTABLE, f"{col.path}.{key}",
                              f"{rsc!r} is not a promotable clone: it has no {role} role")
    for order in desc.orders:
        for rsc, action, key in ((order.first, order.first_action, "first_action"),
                                 (order.then, order.then_action, "then_action")):
            if action in ("promote", "demote") and not desc.is_promotable(rsc):
                yield Finding(ROLE_ON_NON_PROMOTABLE, f"{order.path}.{key}",
                              f"{rsc!r} is not a promotable clone: it is never {action}d")


def _mandatory_into_clone(desc: Description, provider: str) -> Iterator[Finding]:
    for order in desc.orders:
        if order.kind != "Mandatory":
            continue
        first_single = order.first in desc.resource_ids() and desc.clone(order.first) is None
        if first_single and desc.clone(order.then) is not None:
            yield Finding(MANDATORY_ORDER_INTO_CLONE, f"{order.path}.kind",
                          f"when {order.first!r} moves, every instance of {order.then!r} restarts on every "
                          "node: use kind = \"Optional\"")


def _fencing(desc: Description, provider: str) -> Iterator[Finding]:
    value = desc.properties.get("stonith-enabled", "true").lower()
    if value in FALSE_WORDS:
        yield Finding(FENCING_DISABLED, desc.paths.get("properties.stonith-enabled", "cluster.properties"),
                      "a node that stops answering cannot be fenced, so its resources are never recovered")


def _too_few_nodes(desc: Description, provider: str) -> Iterator[Finding]:
    if len(desc.nodes) < MIN_NODES:
        yield Finding(TOO_FEW_NODES, "nodes",
                      f"{len(desc.nodes)} node(s): quorum needs at least {MIN_NODES}")


def _node_ids(desc: Description, provider: str) -> Iterator[Finding]:
    """Corosync node ids: 1 to 2^32-1, one per node (crm_simulate asserts on a duplicate)."""
    owner: dict[int, str] = {}
    for node in desc.nodes:
        path = f"{node.path}.id"
        if not 0 < node.node_id <= MAX_NODE_ID:
            yield Finding(NODE_ID, path, f"{node.node_id} is not a corosync node id (1 to {MAX_NODE_ID})")
        elif node.node_id in owner:
            yield Finding(NODE_ID, path, f"id {node.node_id} is already used by {owner[node.node_id]!r} "
                          "(a node without `id` gets its position: give every node its corosync nodeid)")
        else:
            owner[node.node_id] = node.name


def _node_name_case(desc: Description, provider: str) -> Iterator[Finding]:
    seen: dict[str, str] = {}
    for node in desc.nodes:
        other = seen.setdefault(node.name.lower(), node.name)
        if other != node.name:
            yield Finding(NODE_NAME_CASE, node.path, f"{node.name!r} and {other!r} differ only in case: "
                          "host names are case-insensitive, Pacemaker's node names are not")


def _fence_targets(desc: Description, provider: str) -> Iterator[Finding]:
    seen: dict[tuple[str, str, str], str] = {}
    for device in desc.primitives:
        if device.agent.standard != "stonith":
            continue
        address = next((n for n in FENCE_ADDRESS if device.params.get(n)), None)
        plug = next((n for n in FENCE_PLUG if device.params.get(n)), None)
        if address is None and plug is None:
            continue
        target = (device.agent.type, _address(device.params.get(address or "", "")),
                  device.params.get(plug or "", ""))
        first = seen.setdefault(target, device.id)
        if first != device.id:
            where = " ".join(f"{n}={device.params[n]}" for n in (address, plug) if n)
            yield Finding(SHARED_FENCE_TARGET, device.param_path(address or plug or ""),
                          f"{device.id} and {first} fence the same target ({where}): fencing one node "
                          "would power off the other")


def _shared_vips(desc: Description, provider: str) -> Iterator[Finding]:
    seen: dict[str, str] = {}
    for primitive in desc.primitives:
        ip = primitive.params.get("ip")
        if primitive.agent.type not in IP_AGENTS or not ip:
            continue
        first = seen.setdefault(_address(ip), primitive.id)
        if first != primitive.id:
            yield Finding(SHARED_VIP, primitive.param_path("ip"),
                          f"{primitive.id} and {first} both hold {ip}: the address would move with "
                          "whichever started last")


def _address(text: str) -> str:
    """An IP address in one spelling (2001:db8::1 == 2001:DB8:0::1); other text as is, lower case."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return text.strip().lower()


def _storage_nodes(desc: Description, provider: str) -> Iterator[Finding]:
    storage = desc.storage
    if not storage.resources:
        return
    known = set(desc.node_names())
    for index, node in enumerate(storage.nodes):
        if node not in known:
            yield Finding(STORAGE_NODES, f"{storage.path}[{index}]", f"no node named {node!r}")
        elif node in storage.nodes[:index]:
            yield Finding(STORAGE_NODES, f"{storage.path}[{index}]", f"{node!r} is named twice")
    count = len(known.intersection(storage.nodes))
    if count < 2:
        yield Finding(STORAGE_NODES, storage.path,
                      f"{count} storage node(s): the database needs two replicas, three to survive a failure")
    elif count % 2 == 0:
        yield Finding(EVEN_STORAGE_NODES, storage.path,
                      f"{count} storage nodes: DRBD's quorum survives as few failures as with {count - 1}"
                      + (" (with 2, one failure stops the database's writes)" if count == 2 else ""))
    for rsc in storage.resources:
        clone = desc.clone(rsc)
        clone_max = clone.meta.get("clone-max") if clone is not None else None
        if clone is not None and clone_max != str(len(storage.nodes)):
            yield Finding(STORAGE_NODES, f"{clone.path}.meta.clone-max",
                          f"clone-max {clone_max} differs from the {len(storage.nodes)} storage nodes")


def _cluster_owned(desc: Description, provider: str) -> Iterator[Finding]:
    for name in CLUSTER_OWNED:
        if name in desc.properties:
            path = desc.paths.get(f"properties.{name}", "cluster.properties")
            yield Finding(CLUSTER_OWNED_PROPERTY, path,
                          f"{name} is maintained by the cluster itself: remove it from the description")


def _cluster_options(desc: Description, provider: str) -> Iterator[Finding]:
    """Properties against the option metadata the installed Pacemaker's daemons print."""
    from crmtool import pacemaker

    options = pacemaker.cluster_options()
    declared = {name: (option.type, option.choices) for name, option in options.items()}
    yield from _options(desc, "properties", desc.properties, declared, "cluster property")
    policy = desc.properties.get("no-quorum-policy", "").lower()
    if policy == "ignore":
        yield Finding(QUORUM_IGNORED, desc.paths.get("properties.no-quorum-policy", "cluster.properties"),
                      "a partition without quorum keeps its resources: after a network split both halves "
                      "run them (use stop, or freeze)")


def _defaults(desc: Description, provider: str) -> Iterator[Finding]:
    yield from _options(desc, "rsc_defaults", desc.rsc_defaults, RESOURCE_META, "resource meta attribute")
    yield from _options(desc, "op_defaults", desc.op_defaults, OPERATION_META, "operation attribute")


def _options(desc: Description, section: str, values: dict[str, str],
             declared: dict[str, tuple[str, tuple[str, ...]]], what: str) -> Iterator[Finding]:
    import difflib

    for name, value in values.items():
        path = desc.paths.get(f"{section}.{name}", f"cluster.{section}")
        if name not in declared:
            near = difflib.get_close_matches(name, declared, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            yield Finding(UNKNOWN_OPTION, path, f"Pacemaker has no {what} {name!r}{hint}")
            continue
        type_, choices = declared[name]
        problem = _option_problem(name, value, type_, choices)
        if problem:
            yield Finding(INVALID_OPTION_VALUE, path, f"{name} = {value!r}: {problem}")


def _option_problem(name: str, value: str, type_: str, choices: tuple[str, ...]) -> str | None:
    """What Pacemaker's validator for ``type_`` would reject in ``value`` (None: accepted)."""
    text = value.strip()
    if type_ == "boolean" and text.lower() not in TRUE_WORDS | FALSE_WORDS:
        return "not a boolean (true or false)"
    if type_ == "integer" and not SCORE.fullmatch(text):
        return "not an integer (or INFINITY)"
    if type_ == "time" and not (TIME.fullmatch(text) and (name in SIGNED_TIMES or not text.startswith("-"))):
        return "not a time (a number with an optional unit: ms, s, min, h)"
    if type_ == "percentage" and not PERCENTAGE.fullmatch(text):
        return "not a percentage (like 80%)"
    if type_ == "select" and text.lower() not in choices:
        return f"not one of {', '.join(choices)}"
    return None


def _secrets(desc: Description, provider: str) -> Iterator[Finding]:
    """Secrets of other providers' agents and fence agents, by name (ours declare them: _check_params)."""
    from crmtool import pacemaker

    for primitive in desc.primitives:
        agent = primitive.agent
        if agent.standard == "ocf" and agent.provider == provider:
            continue
        for name, value in primitive.params.items():
            if value and is_secret_name(name):
                declared = pacemaker.agent_parameters(agent.standard, agent.provider, agent.type)
                yield Finding(SECRET_IN_CLEAR, primitive.param_path(name),
                              f"{name} is written in clear: {_secret_hint(str(agent), name, declared)}")


def is_secret_name(name: str) -> bool:
    """password, db_passwd, secret_key, passphrase, os-token ... but not password_script or bypass."""
    lower = name.lower()
    return re.split(r"[_-]", lower)[-1] in SECRET_WORDS or lower.endswith(SECRET_SUFFIXES)


def _secret_hint(agent: str, name: str, declared: frozenset[str] | None) -> str:
    """A real way to keep the secret out of the CIB, from the agent's own meta-data."""
    if declared is None:
        return (f"{agent}'s meta-data is not installed here, so no alternative can be named: keep the "
                "secret in a root-only file the agent reads, if it has such a parameter")
    alternatives = [a for a in (f"{name}_script", f"{name}_file") if a in declared]
    if alternatives:
        what = "program that prints it" if alternatives[0].endswith("_script") else "file that holds it"
        return f"set {alternatives[0]} instead (a root-only {what}) and remove {name}"
    return (f"{agent} has no {name}_script or {name}_file parameter: leave {name} unset and give the agent "
            "its credentials outside the CIB" + AGENT_CREDENTIALS.get(agent, ""))


def _agent_params(desc: Description, provider: str) -> Iterator[Finding]:
    from agents import registry

    known = set(registry.names())
    for primitive in desc.primitives:
        agent = primitive.agent
        if agent.standard != "ocf" or agent.provider != provider:
            continue
        if agent.type not in known:
            import difflib

            near = difflib.get_close_matches(agent.type, known, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(sorted(known))}"
            yield Finding(UNKNOWN_AGENT, f"{primitive.path}.agent", f"{agent} does not exist ({hint})")
            continue
        try:
            declared = registry.load(agent.type)
        except ImportError as exc:
            yield Finding(UNREGISTERED_AGENT, f"{primitive.path}.agent",
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
            yield Finding(UNKNOWN_PARAMETER, path, f"{primitive.agent} has no parameter {name!r}{hint}")
            continue
        if param.deprecated_for:
            yield Finding(DEPRECATED_PARAMETER, path, f"{name} is deprecated: use {param.deprecated_for}")
        if param.secret and value:
            hint = _credentials_hint(declared)
            yield Finding(SECRET_IN_CLEAR, path,
                          f"{name} is a secret: it would be stored in the CIB in clear{hint}")
        try:
            param.coerce(value)
        except ValueError as exc:
            yield Finding(INVALID_PARAMETER_VALUE, path, f"{name} {exc}")
    aliases = {p.deprecated_for for p in declared.values() if p.deprecated_for and p.name in primitive.params}
    for param in declared.values():
        if param.required and param.default is None and param.name not in primitive.params \
                and param.name not in aliases:
            yield Finding(MISSING_REQUIRED_PARAMETER, f"{primitive.path}.params",
                          f"{primitive.agent} requires {param.name!r}")


def _credentials_hint(declared: dict[str, Param]) -> str:
    files = [p.name for p in declared.values() if p.name == "credentials" or p.name.endswith("_credentials")]
    return f"; put it in the root-only file named by {files[0]} instead" if files else ""


RULES: tuple[Rule, ...] = (
    _dangling, _invalid_ids, _collisions, _colocation_direction, _promote_without_role_colocation,
    _order_cycles, _non_interleaved, _role_monitor_intervals, _op_timeouts, _reused, _roles,
    _mandatory_into_clone, _fencing, _too_few_nodes, _storage_nodes, _cluster_owned, _secrets, _agent_params,
    _node_ids, _node_name_case, _fence_targets, _shared_vips, _cluster_options, _defaults, *HAPROXY_RULES,
)
