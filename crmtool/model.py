"""The cluster description after loading: plain objects, each with its TOML path.

Ids follow pcs's conventions and are derived here, once, so that the
checks, the renderer, the pcs export and the graph agree on them.
"""

from __future__ import annotations

from agents.ocf.params import TRUE_WORDS

INFINITY = "INFINITY"
ROLES = ("Started", "Promoted", "Unpromoted", "Stopped")
ACTIONS = ("start", "stop", "promote", "demote")
ORDER_KINDS = ("Mandatory", "Optional", "Serialize")


class Op:
    __slots__ = ("depth", "interval", "name", "on_fail", "path", "role", "timeout")

    def __init__(self, name: str, interval: str, timeout: str | None, role: str | None,
                 depth: int | None, on_fail: str | None, path: str) -> None:
        self.name = name
        self.interval = interval  # "" until load fills it in (the agent's advert, else 0s)
        self.timeout = timeout
        self.role = role
        self.depth = depth
        self.on_fail = on_fail
        self.path = path

    def id_for(self, rsc_id: str) -> str:
        return f"{rsc_id}-{self.name}-interval-{self.interval}"


class Agent:
    """``standard[:provider]:type`` of a primitive."""

    __slots__ = ("provider", "standard", "type")

    def __init__(self, standard: str, provider: str | None, type_: str) -> None:
        self.standard = standard
        self.provider = provider
        self.type = type_

    @classmethod
    def parse(cls, text: str) -> Agent | None:
        parts = text.split(":")
        if len(parts) == 3 and parts[0] == "ocf" and all(parts):
            return cls(parts[0], parts[1], parts[2])
        if len(parts) == 2 and parts[0] != "ocf" and all(parts):
            return cls(parts[0], None, parts[1])
        return None

    def __str__(self) -> str:
        return ":".join(p for p in (self.standard, self.provider, self.type) if p)


class Primitive:
    __slots__ = ("agent", "id", "meta", "ops", "param_paths", "params", "path")

    def __init__(self, id_: str, agent: Agent, params: dict[str, str], meta: dict[str, str],
                 ops: list[Op], path: str, param_paths: dict[str, str] | None = None) -> None:
        self.id = id_
        self.agent = agent
        self.params = params
        self.meta = meta
        self.ops = ops
        self.path = path
        # where each parameter was written, when not under ``<path>.params`` (generated fencing)
        self.param_paths = param_paths or {}

    def param_path(self, name: str) -> str:
        return self.param_paths.get(name, f"{self.path}.params.{name}")


class Group:
    __slots__ = ("id", "members", "meta", "path")

    def __init__(self, id_: str, members: list[str], meta: dict[str, str], path: str) -> None:
        self.id = id_
        self.members = members
        self.meta = meta
        self.path = path


class Clone:
    __slots__ = ("id", "meta", "path", "promotable", "resource")

    def __init__(self, id_: str, resource: str, promotable: bool, meta: dict[str, str], path: str) -> None:
        self.id = id_
        self.resource = resource
        self.promotable = promotable
        self.meta = meta
        self.path = path

    @property
    def interleaved(self) -> bool:
        return self.meta.get("interleave", "false").lower() in TRUE_WORDS

    def all_meta(self) -> dict[str, str]:
        """The meta attributes as rendered: ``promotable`` first, as pcs writes it."""
        return {"promotable": "true", **self.meta} if self.promotable else dict(self.meta)


class Location:
    __slots__ = ("discovery", "key", "node", "path", "rsc", "score")

    def __init__(self, key: str, rsc: str, node: str, score: str, path: str,
                 discovery: str | None = None) -> None:
        self.key = key
        self.rsc = rsc
        self.node = node
        self.score = score
        self.path = path
        # resource-discovery: "never" where the resource cannot exist (no probes there)
        self.discovery = discovery

    @property
    def id(self) -> str:
        return f"location-{self.rsc}-{self.node}-{self.score}"


class Colocation:
    __slots__ = ("key", "path", "rsc", "rsc_role", "score", "with_role", "with_rsc")

    def __init__(self, key: str, rsc: str, with_rsc: str, score: str, rsc_role: str | None,
                 with_role: str | None, path: str) -> None:
        self.key = key
        self.rsc = rsc
        self.with_rsc = with_rsc
        self.score = score
        self.rsc_role = rsc_role
        self.with_role = with_role
        self.path = path

    @property
    def id(self) -> str:
        return f"colocation-{self.rsc}-{self.with_rsc}-{self.score}"


class Order:
    __slots__ = ("first", "first_action", "key", "kind", "path", "then", "then_action")

    def __init__(self, key: str, first: str, then: str, first_action: str, then_action: str,
                 kind: str, path: str) -> None:
        self.key = key
        self.first = first
        self.then = then
        self.first_action = first_action
        self.then_action = then_action
        self.kind = kind
        self.path = path

    @property
    def id(self) -> str:
        return f"order-{self.first}-{self.then}-{self.kind.lower()}"


class Node:
    __slots__ = ("address", "attributes", "name", "node_id", "path")

    def __init__(self, name: str, node_id: int, attributes: dict[str, str], path: str,
                 address: str | None = None) -> None:
        self.name = name
        self.node_id = node_id
        self.attributes = attributes
        self.path = path
        self.address = address  # the node's own address on the API network (as written; checked later)


class Haproxy:
    """The ``[haproxy]`` table: HAProxy on every node in front of the cloned APIs."""

    __slots__ = ("config", "network", "path", "resource", "timeouts", "vip")

    def __init__(self, vip: str | None, network: str | None, config: str, resource: str | None,
                 timeouts: dict[str, str], path: str) -> None:
        self.vip = vip                # the VIP primitive whose address the frontends bind
        self.network = network        # the controllers' API network (CIDR): each API's host
        self.config = config          # the generated file's path on the nodes
        self.resource = resource      # the ocf:<provider>:haproxy primitive (config, config_digest)
        self.timeouts = timeouts      # overrides of the generated defaults' timeouts
        self.path = path


class Storage:
    """The nodes that hold the replicated disk, and the resources that live only there."""

    __slots__ = ("declared", "nodes", "path", "resources")

    def __init__(self, nodes: list[str], resources: list[str], declared: bool, path: str) -> None:
        self.nodes = nodes
        self.resources = resources
        self.declared = declared  # False: the default, the first nodes
        self.path = path


class Description:
    """Everything a CIB configuration is rendered from."""

    def __init__(self) -> None:
        self.properties: dict[str, str] = {}
        self.rsc_defaults: dict[str, str] = {}
        self.op_defaults: dict[str, str] = {}
        self.nodes: list[Node] = []
        self.primitives: list[Primitive] = []
        self.groups: list[Group] = []
        self.clones: list[Clone] = []
        self.locations: list[Location] = []
        self.colocations: list[Colocation] = []
        self.orders: list[Order] = []
        self.storage = Storage([], [], False, "storage")
        self.haproxy: Haproxy | None = None
        # how the site is named in generated files (its file name; "-" for standard input)
        self.site = ""
        # TOML path of each cluster-wide setting, for findings
        self.paths: dict[str, str] = {}
        self._cache: _Index | None = None

    # Lookups ---------------------------------------------------------------

    def resources(self) -> list[Primitive | Group | Clone]:
        return [*self.primitives, *self.groups, *self.clones]

    def _index(self) -> _Index:
        """Lookups by id, rebuilt when resources were added since (checks stay linear)."""
        sizes = (len(self.primitives), len(self.groups), len(self.clones))
        if self._cache is None or self._cache.sizes != sizes:
            self._cache = _Index(self, sizes)
        return self._cache

    def resource_ids(self) -> set[str]:
        return self._index().ids

    def primitive(self, rsc_id: str) -> Primitive | None:
        return self._index().primitives.get(rsc_id)

    def clone(self, rsc_id: str) -> Clone | None:
        return self._index().clones.get(rsc_id)

    def group(self, rsc_id: str) -> Group | None:
        return self._index().groups.get(rsc_id)

    def top_level(self) -> list[Primitive | Group | Clone]:
        """Resources not inside a group or clone, in id order."""
        inner = {m for g in self.groups for m in g.members} | {c.resource for c in self.clones}
        tops = [r for r in self.resources() if r.id not in inner]
        return sorted(tops, key=lambda r: r.id)

    def primitives_under(self, rsc_id: str) -> list[Primitive]:
        """The primitives a resource id stands for (itself, a group's members, a clone's child)."""
        clone = self.clone(rsc_id)
        if clone is not None:
            return self.primitives_under(clone.resource)
        group = self.group(rsc_id)
        if group is not None:
            return [p for m in group.members for p in self.primitives_under(m)]
        primitive = self.primitive(rsc_id)
        return [primitive] if primitive is not None else []

    def clone_of(self, rsc_id: str) -> Clone | None:
        """The clone that contains ``rsc_id`` (directly or via a group), if any."""
        return self._index().clone_of.get(rsc_id)

    def is_promotable(self, rsc_id: str) -> bool:
        clone = self.clone(rsc_id)
        return clone is not None and clone.promotable

    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def banned_nodes(self, rsc_id: str) -> set[str]:
        """Nodes a -INFINITY location keeps ``rsc_id`` off, directly or through its group or clone."""
        owners = {rsc_id}
        owners |= {g.id for g in self.groups if rsc_id in g.members}
        clone = self.clone_of(rsc_id)
        if clone is not None:
            owners.add(clone.id)
            owners |= {g.id for g in self.groups if clone.id in g.members}
        return {loc.node for loc in self.locations if loc.rsc in owners and loc.score == f"-{INFINITY}"}


class _Index:
    __slots__ = ("clone_of", "clones", "groups", "ids", "primitives", "sizes")

    def __init__(self, desc: Description, sizes: tuple[int, int, int]) -> None:
        self.sizes = sizes
        # the first declaration wins, as in a linear search; duplicates are reported by the checks
        self.primitives: dict[str, Primitive] = {}
        self.groups: dict[str, Group] = {}
        self.clones: dict[str, Clone] = {}
        for p in desc.primitives:
            self.primitives.setdefault(p.id, p)
        for g in desc.groups:
            self.groups.setdefault(g.id, g)
        for c in desc.clones:
            self.clones.setdefault(c.id, c)
        self.ids = {*self.primitives, *self.groups, *self.clones}
        self.clone_of: dict[str, Clone] = {}
        for clone in desc.clones:
            self.clone_of.setdefault(clone.resource, clone)
            group = self.groups.get(clone.resource)
            for member in group.members if group is not None else ():
                self.clone_of.setdefault(member, clone)
