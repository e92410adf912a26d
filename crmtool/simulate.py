"""simulate: crm_simulate scenarios that assert placement and actions.

Exit codes of crm_simulate say little (an ordering loop leaves everything
stopped with rc 0), so every scenario runs transitions until the cluster is
steady and then judges where each resource ended up and which actions ran.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from crmtool import pacemaker
from crmtool.exits import Exit
from crmtool.findings import CrmtoolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lxml import etree

    from crmtool.model import Description
    from crmtool.pipeline import Result

MAX_TRANSITIONS = 12
PROMOTION_SCORE = "10"
STOPPING = frozenset(("stop", "demote"))


class Action:
    __slots__ = ("node", "op", "resource")

    def __init__(self, resource: str, op: str, node: str) -> None:
        self.resource = resource.split(":", maxsplit=1)[0]
        self.op = op
        self.node = node

    def __str__(self) -> str:
        return f"{self.op} {self.resource} on {self.node}"


class Placement:
    """Where every resource instance is after a transition: id → [(node, role)]."""

    def __init__(self, status: etree._Element) -> None:
        self.online = sorted(n.get("name", "") for n in status.iterfind("nodes/node")
                             if n.get("online") == "true")
        self.where: dict[str, list[tuple[str, str]]] = {}
        for rsc in status.iterfind("resources//resource"):
            rsc_id = rsc.get("id", "")
            placed = self.where.setdefault(rsc_id, [])
            if rsc.get("active") == "true":
                placed.extend((n.get("name", ""), rsc.get("role", "")) for n in rsc.iterfind("node"))

    def nodes_of(self, rsc_id: str, role: str | None = None) -> list[str]:
        return sorted(n for n, r in self.where.get(rsc_id, []) if role is None or r == role)

    def table(self) -> str:
        width = max((len(r) for r in self.where), default=8)
        lines = [f"  {'resource'.ljust(width)}  placement"]
        for rsc_id in sorted(self.where):
            places = ", ".join(f"{n} ({r})" if r not in ("Started", "") else n
                               for n, r in sorted(self.where[rsc_id])) or "-"
            lines.append(f"  {rsc_id.ljust(width)}  {places}")
        return "\n".join(lines)


class Cluster:
    """A CIB file stepped through simulated transitions."""

    def __init__(self, directory: str, start: etree._Element | str) -> None:
        """A new directory of steps, from a CIB element or a copy of a CIB file."""
        os.mkdir(directory)
        self.directory = directory
        self.step = 0
        self.path = self._next_path()
        if isinstance(start, str):
            shutil.copyfile(start, self.path)
        else:
            pacemaker.write(self.path, start)
        self.quorum = "1"

    def _next_path(self) -> str:
        self.step += 1
        return os.path.join(self.directory, f"step-{self.step}.xml")

    def transition(self, events: list[str]) -> tuple[list[Action], Placement, list[str]]:
        """One simulated transition: the actions run, the placement after, crm_simulate's errors."""
        target = self._next_path()
        done = pacemaker.run(["crm_simulate", "-x", self.path, "-S", "-q", self.quorum, *events,
                              "-O", target, "--output-as=xml"], ok=(0, 1))
        try:
            result = pacemaker.parse(done.stdout)
        except SyntaxError:
            raise CrmtoolError(f"crm_simulate exited {done.returncode} without a result: "
                               f"{done.stderr.decode(errors='replace')[-300:]}") from None
        errors = [f"crm_simulate: {e.text}" for e in result.iterfind("status/errors/error") if e.text]
        actions = [Action(a.get("resource", ""), a.get("op", ""), a.get("node", ""))
                   for a in result.iterfind("transition/rsc_action")]
        actions += [Action("", "fence", f.get("target", ""))
                    for f in result.iterfind("transition/fencing_action")]
        status = result.find("revised_cluster_status")
        if status is None:
            raise CrmtoolError("crm_simulate printed no revised cluster status")
        if os.path.exists(target):
            self.path = target
        return actions, Placement(status), errors

    def settle(self, events: list[str]) -> tuple[list[Action], Placement, list[str]]:
        """Apply ``events``, then run transitions until one schedules nothing.

        Returns every action run, the final placement and a problem when the
        cluster never became steady (e.g. actions pending forever).
        """
        actions, placement, errors = self.transition(events)
        history = list(actions)
        for _ in range(MAX_TRANSITIONS):
            if errors:
                return history, placement, errors
            if not actions:
                return history, placement, []
            actions, placement, errors = self.transition([])
            history += actions
        return history, placement, [f"the cluster did not settle within {MAX_TRANSITIONS} transitions "
                                    f"(still scheduling: {', '.join(map(str, actions[:5]))})"]

    def set_promotion_scores(self, resource: str, nodes: list[str]) -> None:
        for node in nodes:
            pacemaker.run(["crm_attribute", "-N", node, "-n", f"master-{resource}", "-v", PROMOTION_SCORE,
                           "-l", "reboot"], cib_file=self.path)


class Report:
    def __init__(self, name: str, placement: Placement, actions: list[Action], problems: list[str]) -> None:
        self.name = name
        self.scenario = name  # the name it was asked for (``name`` may add the node)
        self.placement = placement
        self.actions = actions
        self.problems = problems

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        head = f"scenario {self.name}: {'ok' if self.ok else 'FAILED'}"
        lines = [head, self.placement.table()]
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines) + "\n"


# Expectations ----------------------------------------------------------------


def expected_instances(desc: Description, rsc_id: str, online: list[str]) -> tuple[int, int]:
    """How many instances of a primitive should run, and how many of them Promoted.

    Only online nodes its locations allow count (DRBD runs on the storage nodes alone).
    """
    allowed = len(set(online) - desc.banned_nodes(rsc_id))
    clone = desc.clone_of(rsc_id)
    if clone is None:
        return min(1, allowed), 0
    clone_max = int(clone.meta.get("clone-max", len(desc.nodes)))
    per_node = int(clone.meta.get("clone-node-max", 1))
    running = min(clone_max, allowed * per_node)
    promoted = min(int(clone.meta.get("promoted-max", 1)), running) if clone.promotable else 0
    return running, promoted


def unplaced(desc: Description, placement: Placement) -> list[str]:
    problems = []
    for primitive in desc.primitives:
        running, promoted = expected_instances(desc, primitive.id, placement.online)
        found = len(placement.nodes_of(primitive.id))
        if found < running:
            problems.append(f"{primitive.id}: {found} of {running} instance(s) placed")
        if promoted and len(placement.nodes_of(primitive.id, "Promoted")) < promoted:
            problems.append(f"{primitive.id}: no Promoted instance")
        stray = sorted(set(placement.nodes_of(primitive.id)) & desc.banned_nodes(primitive.id))
        if stray:
            problems.append(f"{primitive.id} runs on {', '.join(stray)}, where a location bans it")
    return problems


def colocations_hold(desc: Description, placement: Placement) -> list[str]:
    """Every mandatory colocation is satisfied by the final placement."""
    problems = []
    for col in desc.colocations:
        if col.score != "INFINITY":
            continue
        dependents = {n for p in desc.primitives_under(col.rsc) for n in placement.nodes_of(p.id)}
        anchors = [p.id for p in desc.primitives_under(col.with_rsc)]
        allowed = {n for a in anchors for n in placement.nodes_of(a, col.with_role)}
        stray = sorted(dependents - allowed)
        if stray:
            role = f" ({col.with_role})" if col.with_role else ""
            problems.append(f"{col.rsc} runs on {', '.join(stray)} without {col.with_rsc}{role} ({col.path})")
    return problems


def restarts_on(nodes: list[str], actions: list[Action], spared: frozenset[str] = frozenset()) -> list[str]:
    return sorted({str(a) for a in actions
                   if a.op in STOPPING and a.node in nodes and a.resource not in spared})


def bound_to(desc: Description, rsc_id: str) -> set[str]:
    """The primitives that must stop when ``rsc_id`` stops on its node: itself, the members after it in
    its group and, transitively, whatever a mandatory colocation places with it or its containers."""
    bound = {rsc_id}
    pending = [rsc_id]
    while pending:
        current = pending.pop()
        owners = {current}
        for group in desc.groups:
            if current in group.members:
                owners.add(group.id)
                later = group.members[group.members.index(current) + 1:]
                pending += [m for m in later if m not in bound]
                bound |= set(later)
        clone = desc.clone_of(current)
        if clone is not None:
            owners.add(clone.id)
        for col in desc.colocations:
            if col.with_rsc in owners and col.score == "INFINITY":
                fresh = [p.id for p in desc.primitives_under(col.rsc) if p.id not in bound]
                bound |= set(fresh)
                pending += fresh
    return bound


# Scenarios -------------------------------------------------------------------


def cold_start(desc: Description, cluster: Cluster) -> Report:
    nodes = desc.node_names()
    _, _, errors = cluster.transition([arg for n in nodes for arg in ("-u", n)])
    for clone in desc.clones:
        if clone.promotable:
            for primitive in desc.primitives_under(clone.id):
                # an agent sets a promotion score only where it runs, i.e. where its disk is
                allowed = [n for n in nodes if n not in desc.banned_nodes(primitive.id)]
                cluster.set_promotion_scores(primitive.id, allowed)
    actions, placement, problems = cluster.settle([])
    problems = errors + problems + unplaced(desc, placement) + colocations_hold(desc, placement)
    return Report("cold-start", placement, actions, problems)


def node_failure(desc: Description, cluster: Cluster, node: str) -> Report:
    actions, placement, problems = cluster.settle(["-f", node])
    survivors = [n for n in desc.node_names() if n != node]
    problems += unplaced(desc, placement) + colocations_hold(desc, placement)
    if not any(a.op == "fence" and a.node == node for a in actions):
        problems.append(f"{node} was never fenced")
    problems += [f"restarted on a surviving node: {r}" for r in restarts_on(survivors, actions)]
    return Report(f"node-failure-{node}", placement, actions, problems)


def resource_failure(desc: Description, cluster: Cluster, rsc_id: str, before: Placement) -> Report | None:
    primitive = desc.primitive(rsc_id)
    running = before.where.get(rsc_id, [])
    if primitive is None or not running:
        return None
    node, role = sorted(running)[0]
    monitors = [op for op in primitive.ops if op.name == "monitor" and op.role in (None, role)]
    if not monitors:
        return None
    from crmtool.load import interval_ms

    spec = f"{rsc_id}_monitor_{interval_ms(monitors[0].interval)}@{node}=1"
    actions, placement, problems = cluster.settle(["-i", spec])
    others = [n for n in desc.node_names() if n != node]
    problems += unplaced(desc, placement) + colocations_hold(desc, placement)
    if not any(a.op == "start" and a.resource == rsc_id for a in actions):
        problems.append(f"the failure of {rsc_id} on {node} was never recovered")
    problems += [f"restarted on another node: {r}" for r in restarts_on(others, actions)]
    problems += [f"restarted with {rsc_id} though only ordered after it: {r}"
                 for r in restarts_on([node], actions, frozenset(bound_to(desc, rsc_id)))]
    return Report(f"resource-failure-{rsc_id}@{node}", placement, actions, problems)


def quorum_loss(desc: Description, cluster: Cluster) -> Report:
    nodes = desc.node_names()
    keep = (len(nodes) - 1) // 2
    lost, survivors = nodes[keep:], nodes[:keep]
    cluster.quorum = "0"
    actions, placement, problems = cluster.settle([arg for n in lost for arg in ("-f", n)])
    problems += [f"{rsc} still runs on {', '.join(placement.nodes_of(rsc))} without quorum"
                for rsc in sorted(placement.where)
                if set(placement.nodes_of(rsc)) & set(survivors)]
    return Report(f"quorum-loss-{'-'.join(lost)}", placement, actions, problems)


def scenario_names(desc: Description) -> list[str]:
    names = ["cold-start"]
    names += [f"node-failure-{n}" for n in desc.node_names()]
    names += [f"resource-failure-{p.id}" for p in sorted(desc.primitives, key=lambda p: p.id)]
    names.append("quorum-loss")
    return names


def run_scenarios(result: Result, only: list[str] | None = None) -> list[Report]:
    """Cold start, then each node failure, each resource failure and a quorum loss from the steady state."""
    desc = result.description
    cib = pacemaker.full_cib(result.configuration)
    wanted = set(only or scenario_names(desc))
    unknown = wanted - set(scenario_names(desc))
    if unknown:
        raise CrmtoolError(f"unknown scenario(s): {', '.join(sorted(unknown))} "
                           f"(known: {', '.join(scenario_names(desc))})", Exit.USAGE)
    reports: list[Report] = []
    with tempfile.TemporaryDirectory(prefix="crmtool-simulate-") as tmp:
        start = Cluster(os.path.join(tmp, "cold-start"), cib)
        first = cold_start(desc, start)
        if "cold-start" in wanted:
            reports.append(first)
        for name in scenario_names(desc)[1:]:
            if name not in wanted:
                continue
            cluster = Cluster(os.path.join(tmp, name), start.path)
            report = _one(desc, cluster, name, first.placement)
            if report is not None:
                report.scenario = name
                reports.append(report)
    return reports


def _one(desc: Description, cluster: Cluster, name: str, before: Placement) -> Report | None:
    if name.startswith("node-failure-"):
        return node_failure(desc, cluster, name.removeprefix("node-failure-"))
    if name.startswith("resource-failure-"):
        return resource_failure(desc, cluster, name.removeprefix("resource-failure-"), before)
    return quorum_loss(desc, cluster)
