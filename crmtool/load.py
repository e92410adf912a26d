"""load: a site file deep-merged over its profile, read into a Description.

Every problem is collected as a Finding with its TOML path; nothing here
raises on bad input except ``DescriptionError`` carrying all of them.
"""

from __future__ import annotations

import os
import re

from crmtool.findings import (
    MISSING_KEY,
    TOML_SYNTAX,
    UNKNOWN_KEY,
    UNKNOWN_PROFILE,
    WRONG_TYPE,
    Code,
    DescriptionError,
    Finding,
    NoInput,
)
from crmtool.model import (
    ACTIONS,
    INFINITY,
    ORDER_KINDS,
    ROLES,
    Agent,
    Clone,
    Colocation,
    Description,
    Group,
    Haproxy,
    Location,
    Node,
    Op,
    Order,
    Primitive,
    Storage,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_PROFILE = "openstack-3ctl"
NO_PROFILE = "none"
PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
DURATION = re.compile(r"(\d+)(ms|s|m|min|h)?\Z")
SCORE = re.compile(r"[-+]?(INFINITY|\d+)\Z")
# characters an XML document cannot hold
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# names of parameters, meta attributes and properties: they end up inside XML ids
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
OP_NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")
UNITS_MS = {"ms": 1, "s": 1000, "m": 60000, "min": 60000, "h": 3600000, None: 1000}
FENCE_HOST_PARAM = "pcmk_host_list"

TOP_KEYS = ("profile", "cluster", "nodes", "storage", "fencing", "primitive", "group", "clone", "colocation",
            "order", "location", "haproxy")
# Storage nodes when the site names none: DRBD's three replicas on the first three nodes.
DEFAULT_STORAGE_NODES = 3


def read_toml(path: str) -> dict[str, object]:
    import tomllib

    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise NoInput(f"{path}: no such file") from None
    except OSError as exc:
        raise NoInput(f"{path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DescriptionError([Finding(TOML_SYNTAX, os.path.basename(path), str(exc))]) from None
    return data


def merge(base: Mapping[str, object], over: Mapping[str, object]) -> dict[str, object]:
    """Tables merge key by key; any other value of ``over`` replaces the base one."""
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merged[key] = merge(old, value)
        else:
            merged[key] = value
    return merged


def resolve(data: dict[str, object], templates_dir: str, seen: tuple[str, ...] = ()) -> dict[str, object]:
    """Merge ``data`` over the profile it names (profiles may name a base profile)."""
    name = data.get("profile", DEFAULT_PROFILE if not seen else NO_PROFILE)
    if name == NO_PROFILE:
        return data
    if not isinstance(name, str) or not PROFILE_NAME.match(name) or name in seen:
        why = "a profile cycle" if name in seen else "not a profile name"
        raise DescriptionError([Finding(UNKNOWN_PROFILE, "profile", f"{name!r} is {why}")])
    path = os.path.join(templates_dir, f"{name}.toml")
    if not os.path.exists(path):
        known = sorted(f[:-5] for f in os.listdir(templates_dir) if f.endswith(".toml")) \
            if os.path.isdir(templates_dir) else []
        message = f"no profile {name!r} in {templates_dir} (known: {', '.join(known)})"
        raise DescriptionError([Finding(UNKNOWN_PROFILE, "profile", message)])
    base = resolve(read_toml(path), templates_dir, (*seen, name))
    merged = merge(base, data)
    merged.pop("profile", None)
    return merged


def load_file(path: str, templates_dir: str, provider: str | None = None) -> Description:
    return build(resolve(read_toml(path), templates_dir), provider, os.path.basename(path))


def load_text(text: str, templates_dir: str, provider: str | None = None, site: str = "-") -> Description:
    """A description given as TOML text (standard input, tests); ``site`` names it in generated files."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DescriptionError([Finding(TOML_SYNTAX, "<text>", str(exc))]) from None
    return build(resolve(data, templates_dir), provider, site)


def build(data: dict[str, object], provider: str | None = None, site: str = "-") -> Description:
    """Read merged TOML into a Description, or raise DescriptionError with every finding.

    ``provider``: the OCF provider our agents are installed under (default: the registry's);
    operations of those agents default to the agents' adverts.
    """
    findings: list[Finding] = []
    root = Table(data, "", findings, TOP_KEYS)
    desc = Description()
    desc.site = site
    _read_cluster(root, desc)
    _read_nodes(root, desc)
    _read_resources(root, desc, provider)
    _read_fencing(root, desc)
    _read_constraints(root, desc)
    _read_storage(root, desc)
    _read_haproxy(root, desc)
    if findings:
        raise DescriptionError(findings)
    if desc.haproxy is not None:
        from agents import registry
        from crmtool import haproxy

        haproxy.prepare(desc, provider or registry.PROVIDER)
    return desc


# Sections ------------------------------------------------------------------


def _read_cluster(root: Table, desc: Description) -> None:
    cluster = root.table("cluster", ("properties", "rsc_defaults", "op_defaults"))
    if cluster is None:
        return
    for key, target in (("properties", desc.properties), ("rsc_defaults", desc.rsc_defaults),
                        ("op_defaults", desc.op_defaults)):
        values = cluster.scalars(key)
        target.update(values)
        for name in values:
            desc.paths[f"{key}.{name}"] = cluster.child_path(key, name)


def _read_nodes(root: Table, desc: Description) -> None:
    known = ("id", "address", "attributes", "fence", "enabled")
    for position, (name, node) in enumerate(root.tables("nodes", known)):
        if not node.enabled():
            continue
        node_id = node.integer("id", None)  # 0 and negative ids are kept for the checks to report
        desc.nodes.append(Node(name, position + 1 if node_id is None else node_id, node.scalars("attributes"),
                               node.path, node.string("address")))


HAPROXY_CONFIG = "/etc/haproxy/haproxy.cfg"


def _read_haproxy(root: Table, desc: Description) -> None:
    """HAProxy in front of the cloned APIs: its VIP, the API network, the generated file, its resource."""
    from crmtool.haproxy import TIMEOUTS

    haproxy = root.table("haproxy", ("vip", "network", "config", "resource", "timeouts", "enabled"))
    if haproxy is None or not haproxy.enabled():
        return
    config = haproxy.string("config", HAPROXY_CONFIG) or HAPROXY_CONFIG
    if not config.startswith("/"):
        haproxy.finding(WRONG_TYPE, haproxy.child_path("config"), f"{config!r} is not an absolute path")
    timeouts = haproxy.table("timeouts", tuple(TIMEOUTS))
    durations = {name: value for name in TIMEOUTS
                 if timeouts is not None and (value := timeouts.duration(name, None)) is not None}
    desc.haproxy = Haproxy(haproxy.string("vip"), haproxy.string("network"), config,
                           haproxy.string("resource"), durations, haproxy.path)


def _read_storage(root: Table, desc: Description) -> None:
    """Storage nodes: the resources bound to the disk are kept off (and never probed on) the others."""
    storage = root.table("storage", ("nodes", "resources"))
    if storage is None:
        return
    declared = "nodes" in storage.raw
    nodes = storage.strings("nodes") if declared else desc.node_names()[:DEFAULT_STORAGE_NODES]
    path = storage.child_path("nodes") if declared else storage.path
    desc.storage = Storage(nodes, storage.strings("resources"), declared, path)
    diskless = [n.name for n in desc.nodes if n.name not in nodes]
    for rsc in desc.storage.resources:
        clone = desc.clone(rsc)
        if clone is not None:
            clone.meta.setdefault("clone-max", str(len(nodes)))
        desc.locations += [Location(f"storage-{rsc}", rsc, node, f"-{INFINITY}", path, discovery="never")
                           for node in diskless]


def _read_fencing(root: Table, desc: Description) -> None:
    fencing = root.table("fencing", ("agent", "params", "meta", "ops", "host_param", "enabled"))
    if fencing is None or not fencing.enabled():
        return
    agent_text = fencing.string("agent", required=True)
    host_param = fencing.string("host_param", FENCE_HOST_PARAM) or FENCE_HOST_PARAM
    if not NAME.match(host_param):
        fencing.finding(WRONG_TYPE, fencing.child_path("host_param"),
                        f"{host_param!r} is not a parameter name")
    params = fencing.scalars("params")
    meta = fencing.scalars("meta")
    ops = [_filled(op, None) for op in _read_ops(fencing)]
    agent = Agent.parse(f"stonith:{agent_text}") if agent_text else None
    nodes = root.raw.get("nodes")
    for node in desc.nodes:
        raw = nodes.get(node.name) if isinstance(nodes, dict) else None
        per_node = Table(raw, node.path, root.findings, ()).scalars("fence") if isinstance(raw, dict) else {}
        if agent is None:
            continue
        device = f"fence-{node.name}"
        path = f"{node.path}.fence"
        paths = {host_param: node.path, **{n: fencing.child_path("params", n) for n in params},
                 **{n: f"{path}.{n}" for n in per_node}}
        desc.primitives.append(Primitive(device, agent, {host_param: node.name, **params, **per_node},
                                         dict(meta), list(ops), path, paths))
        desc.locations.append(Location(device, device, node.name, f"-{INFINITY}", path))


def _read_resources(root: Table, desc: Description, provider: str | None) -> None:
    for rsc_id, table in root.tables("primitive", ("agent", "params", "meta", "ops", "enabled")):
        if not table.enabled():
            continue
        text = table.string("agent", required=True)
        agent = Agent.parse(text) if text is not None else None
        if text is not None and agent is None:
            table.finding(WRONG_TYPE, table.child_path("agent"),
                          f"{text!r} is not standard:provider:type or standard:type")
        if agent is not None:
            primitive = Primitive(rsc_id, agent, table.scalars("params"), table.scalars("meta"),
                                  _read_ops(table), table.path)
            _with_adverts(primitive, provider)
            desc.primitives.append(primitive)
    for rsc_id, table in root.tables("group", ("resources", "meta", "enabled")):
        if table.enabled():
            members = table.strings("resources", required=True)
            if table.raw.get("resources") == []:
                table.finding(MISSING_KEY, table.child_path("resources"),
                              "a group needs at least one resource")
            desc.groups.append(Group(rsc_id, members, table.scalars("meta"), table.path))
    for rsc_id, table in root.tables("clone", ("resource", "promotable", "meta", "enabled")):
        if table.enabled():
            resource = table.string("resource", required=True) or ""
            desc.clones.append(Clone(rsc_id, resource, table.boolean("promotable", False),
                                     table.scalars("meta"), table.path))


def _read_ops(table: Table) -> list[Op]:
    ops: list[Op] = []
    for index, op in enumerate(table.array_of_tables("ops", ("name", "interval", "timeout", "role", "depth",
                                                            "on_fail"))):
        name = op.string("name", required=True) or "monitor"
        if not OP_NAME.match(name):
            op.finding(WRONG_TYPE, op.child_path("name"), f"{name!r} is not an action name")
        interval = op.duration("interval", "") or ""
        timeout = op.duration("timeout", None)
        role = op.string("role", None, choices=ROLES)
        depth = op.integer("depth", None)
        on_fail = op.string("on_fail", None, choices=("ignore", "block", "stop", "restart", "standby",
                                                      "fence", "demote"))
        ops.append(Op(name, interval, timeout, role, depth, on_fail, f"{table.path}.ops[{index}]"))
    return ops


# Operations our agents advertise ---------------------------------------------

# The actions a CIB lists: Pacemaker runs any other with op_defaults, not the agent's advert.
LISTED_ACTIONS = ("start", "stop", "promote", "demote", "monitor")


def advertised_ops(agent: Agent, path: str, provider: str | None = None) -> list[Op] | None:
    """The operations our agent advertises in its meta-data, or None for another agent."""
    from agents import registry

    ours = provider or registry.PROVIDER
    if agent.standard != "ocf" or agent.provider != ours or agent.type not in registry.AGENTS:
        return None
    try:
        declared = registry.load(agent.type)
    except ImportError:
        return None  # reported by the checks (unregistered-agent)
    return [Op(spec.name, f"{advert.interval or 0}s", f"{advert.timeout}s", advert.role, advert.depth, None,
               path)
            for spec in declared.action_specs.values() if spec.name in LISTED_ACTIONS
            for advert in spec.adverts]


def op_key(op: Op) -> tuple[str, str | None, int]:
    return op.name, op.role, op.depth or 0


def _with_adverts(primitive: Primitive, provider: str | None) -> None:
    """Fill what the profile leaves out from the agent's adverts.

    Every advertised action is listed; a stated operation takes the interval and timeout
    it does not state from the advert with its name, role and depth.  Monitors are the
    exception: stated monitors replace the advertised ones (a profile picks its depths).
    """
    adverts = advertised_ops(primitive.agent, f"{primitive.path}.ops", provider)
    if adverts is None:
        primitive.ops = [_filled(op, None) for op in primitive.ops]
        return
    by_key = {op_key(a): a for a in adverts}
    stated = {op_key(op) for op in primitive.ops}
    monitors_stated = any(op.name == "monitor" for op in primitive.ops)
    unstated = [a for a in adverts
                if op_key(a) not in stated and not (a.name == "monitor" and monitors_stated)]
    ops = [*(_filled(op, by_key.get(op_key(op))) for op in primitive.ops), *unstated]
    primitive.ops = sorted(ops, key=_action_rank)


def _action_rank(op: Op) -> int:
    return LISTED_ACTIONS.index(op.name) if op.name in LISTED_ACTIONS else len(LISTED_ACTIONS)


def _filled(op: Op, advert: Op | None) -> Op:
    if not op.interval:
        op.interval = advert.interval if advert is not None else "0s"
    if op.timeout is None and advert is not None:
        op.timeout = advert.timeout
    return op


def _read_constraints(root: Table, desc: Description) -> None:
    for key, table in root.tables("location", ("rsc", "node", "score", "enabled")):
        if table.enabled():
            desc.locations.append(Location(key, table.string("rsc", required=True) or "",
                                           table.string("node", required=True) or "",
                                           table.score("score"), table.path))
    for key, table in root.tables("colocation", ("rsc", "with", "score", "rsc_role", "with_role", "enabled")):
        if table.enabled():
            desc.colocations.append(Colocation(
                key, table.string("rsc", required=True) or "", table.string("with", required=True) or "",
                table.score("score"), table.string("rsc_role", None, choices=ROLES),
                table.string("with_role", None, choices=ROLES), table.path))
    for key, table in root.tables("order", ("first", "then", "first_action", "then_action", "kind",
                                            "enabled")):
        if table.enabled():
            desc.orders.append(Order(
                key, table.string("first", required=True) or "", table.string("then", required=True) or "",
                table.string("first_action", "start", choices=ACTIONS) or "start",
                table.string("then_action", "start", choices=ACTIONS) or "start",
                table.string("kind", "Mandatory", choices=ORDER_KINDS) or "Mandatory", table.path))


# A typed view of one TOML table ----------------------------------------------


def _type_name(value: object) -> str:
    return {str: "a string", int: "an integer", bool: "a boolean", float: "a float", dict: "a table",
            list: "an array"}.get(type(value), type(value).__name__)


def scalar_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return None


class Table:
    """Reads keys of one TOML table, recording a Finding for each problem."""

    def __init__(self, raw: object, path: str, findings: list[Finding], known: tuple[str, ...]) -> None:
        self.path = path
        self.findings = findings
        self.raw: dict[str, object] = raw if isinstance(raw, dict) else {}
        if not isinstance(raw, dict):
            self.finding(WRONG_TYPE, path or "<root>", f"must be a table, not {_type_name(raw)}")
        elif known:
            self._unknown_keys(known)

    def _unknown_keys(self, known: tuple[str, ...]) -> None:
        import difflib

        for key in self.raw:
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else f" (known: {', '.join(known)})"
                self.finding(UNKNOWN_KEY, self.child_path(key), f"unknown key{hint}")

    def child_path(self, *keys: str) -> str:
        return ".".join(k for k in (self.path, *(_quote(k) for k in keys)) if k)

    def finding(self, code: Code, path: str, message: str) -> None:
        self.findings.append(Finding(code, path, message))

    def _get(self, key: str, kinds: tuple[type, ...], what: str, required: bool) -> object:
        if key not in self.raw:
            if required:
                self.finding(MISSING_KEY, self.child_path(key), f"{what} is required")
            return None
        value = self.raw[key]
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            self.finding(WRONG_TYPE, self.child_path(key), f"must be {what}, not {_type_name(value)}")
            return None
        return value

    def string(self, key: str, default: str | None = None, *, required: bool = False,
               choices: tuple[str, ...] = ()) -> str | None:
        value = self._get(key, (str,), "a string", required)
        if not isinstance(value, str):
            return default
        if NOT_XML.search(value):
            self.finding(WRONG_TYPE, self.child_path(key), "contains characters XML cannot hold")
            return default
        if choices and value not in choices:
            self.finding(WRONG_TYPE, self.child_path(key),
                         f"must be one of {', '.join(choices)}, not {value!r}")
            return default
        return value

    def integer(self, key: str, default: int | None) -> int | None:
        value = self._get(key, (int,), "an integer", False)
        return value if isinstance(value, int) else default

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, (bool,), "a boolean", False)
        return value if isinstance(value, bool) else default

    def enabled(self) -> bool:
        return self.boolean("enabled", True)

    def duration(self, key: str, default: str | None) -> str | None:
        value = self._get(key, (str, int), "a duration (\"10s\", \"2min\" or seconds)", False)
        if not isinstance(value, (str, int)):
            return default
        text = f"{value}s" if isinstance(value, int) else value
        if not DURATION.match(text):
            self.finding(WRONG_TYPE, self.child_path(key), f"{value!r} is not a duration like 10s or 2min")
            return default
        return text

    def score(self, key: str) -> str:
        value = self._get(key, (str, int), "a score (an integer or \"INFINITY\")", False)
        if value is None:
            return INFINITY
        text = str(value)
        if not SCORE.match(text):
            self.finding(WRONG_TYPE, self.child_path(key), f"{value!r} is not a score")
            return INFINITY
        return text.lstrip("+")

    def strings(self, key: str, *, required: bool = False) -> list[str]:
        value = self._get(key, (list,), "an array of strings", required)
        if not isinstance(value, list):
            return []
        if not all(isinstance(item, str) for item in value):
            self.finding(WRONG_TYPE, self.child_path(key), "must be an array of strings")
            return []
        return list(value)

    def scalars(self, key: str) -> dict[str, str]:
        """A table of name = value pairs (strings, integers, booleans) as text."""
        value = self._get(key, (dict,), "a table of name = value pairs", False)
        result: dict[str, str] = {}
        if not isinstance(value, dict):
            return result
        for name, item in value.items():
            text = scalar_text(item)
            if not NAME.match(name):
                self.finding(WRONG_TYPE, self.child_path(key, name),
                             "is not a valid name (letters, digits, '_', '.', '-')")
            elif text is None:
                self.finding(WRONG_TYPE, self.child_path(key, name),
                             f"must be a string, integer or boolean, not {_type_name(item)}")
            elif NOT_XML.search(text):
                self.finding(WRONG_TYPE, self.child_path(key, name), "contains characters XML cannot hold")
            else:
                result[name] = text
        return result

    def table(self, key: str, known: tuple[str, ...]) -> Table | None:
        if key not in self.raw:
            return None
        return Table(self.raw[key], self.child_path(key), self.findings, known)

    def tables(self, key: str, known: tuple[str, ...]) -> list[tuple[str, Table]]:
        """A table of named tables: ``[primitive.vip]``, ``[nodes.ctl1]``, ..."""
        outer = self.table(key, ())
        if outer is None:
            return []
        return [(name, Table(value, outer.child_path(name), self.findings, known))
                for name, value in outer.raw.items()]

    def array_of_tables(self, key: str, known: tuple[str, ...]) -> list[Table]:
        value = self._get(key, (list,), "an array of tables", False)
        if not isinstance(value, list):
            return []
        return [Table(item, f"{self.child_path(key)}[{index}]", self.findings, known)
                for index, item in enumerate(value)]


def _quote(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else '"' + key.replace('"', '\\"') + '"'


def interval_ms(text: str) -> int:
    match = DURATION.match(text)
    if match is None:
        return 0
    unit = match.group(2)
    return int(match.group(1)) * UNITS_MS[unit]
