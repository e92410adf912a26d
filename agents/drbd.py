"""``drbd``: one DRBD 9 resource as a promotable clone, with split-brain handling.

Roles come from ``drbdsetup status --json``; promotion scores are node
attributes (``master-<instance>``, lifetime reboot) derived from the local disk
state and quorum.  A split brain is detected in ``monitor``: a connection that
stays StandAlone after a reconnect attempt (DRBD refused the handshake), or a
peer that reports the split brain with this node.  Each node publishes what it
knows (role, changes since the split, when it was promoted) as the transient
node attribute ``drbd-split-brain-<resource>``, visible in ``crm_mon -A``; both
nodes evaluate the configured policy on the same facts and agree on a victim.
The victim first saves its whole backing device into ``preserve_dir`` with a
detached worker (``agents.drbd_preserve``) that later monitors observe; only a
copy verified from disk and tied to the current data generation lets it
reconnect with ``--discard-my-data``.  Until then it stays disconnected.
"""

from __future__ import annotations

import os
import time

from agents.ocf.actions import Advert, action
from agents.ocf.agent import Agent
from agents.ocf.codes import OCF, OCFError
from agents.ocf.params import Param
from agents.ocf.proc import Identity, run
from agents.ocf.state import StateDir

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterable, Sequence

POLICIES = ("disconnect", "discard-least-changes", "discard-younger-primary", "discard-secondary",
            "discard-node")
# Promotion scores: UpToDate data everyone agrees on > UpToDate but peers unknown > Consistent.
SCORE_BEST = 10000
SCORE_LOCAL_OK = 1000
SCORE_CONSISTENT = 5
NO_SUCH_RESOURCE = 10  # drbdsetup's exit code for a resource the kernel does not know
# drbd-utils' exit code when the kernel module is not loaded (cannot reach the
# "drbd" generic netlink family): nothing of DRBD can run on this node.
NO_KERNEL_MODULE = 20
NOT_UP = frozenset((NO_SUCH_RESOURCE, NO_KERNEL_MODULE))
COMMAND_CAP_S = 30.0
# A preservation that failed (no space, an I/O error) is tried again after this long.
PRESERVE_RETRY_S = 300.0
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+")
# drbdadm reads "all" as every resource; a leading "-" would be read as an option.
RESERVED_NAMES = frozenset(("all",))


def _check_name(value: object) -> None:
    text = str(value)
    if not text or not set(text) <= NAME_CHARS or not text[0].isalnum() or text.lower() in RESERVED_NAMES:
        raise ValueError(f"{text!r} is not a DRBD resource or node name (a letter or digit, then letters, "
                         f"digits, - _ . +; not 'all')")


def _check_path(value: object) -> None:
    text = str(value)
    if not os.path.isabs(text) or os.path.normpath(text) != text or "\0" in text or "\n" in text:
        raise ValueError(f"{text!r} is not an absolute path in normal form")


class Peer:
    __slots__ = ("connection", "disk", "name", "out_of_sync", "role")

    def __init__(self, raw: dict[str, object]) -> None:
        devices = raw.get("peer_devices") or [{}]
        device = devices[0] if isinstance(devices, list) and devices else {}
        self.name = str(raw.get("name", ""))
        self.connection = str(raw.get("connection-state", "StandAlone"))
        self.role = str(raw.get("peer-role", "Unknown"))
        self.disk = str(device.get("peer-disk-state", "DUnknown"))
        self.out_of_sync = int(device.get("out-of-sync", 0) or 0)


class Status:
    """What ``drbdsetup status --json`` says about the resource on this node."""

    __slots__ = ("disk", "peers", "quorum", "role")

    def __init__(self, raw: dict[str, object]) -> None:
        devices = raw.get("devices") or [{}]
        device = devices[0] if isinstance(devices, list) and devices else {}
        connections = raw.get("connections") or []
        self.role = str(raw.get("role", "Unknown"))
        self.disk = str(device.get("disk-state", "Diskless"))
        self.quorum = bool(device.get("quorum", True))
        self.peers = [Peer(c) for c in connections] if isinstance(connections, list) else []

    def peer(self, name: str) -> Peer | None:
        return next((p for p in self.peers if p.name == name), None)

    @property
    def primary(self) -> bool:
        return self.role == "Primary"

    @property
    def degraded(self) -> bool:
        return self.disk != "UpToDate" or any(
            p.connection != "Connected" or p.disk != "UpToDate" for p in self.peers)

    def score(self) -> int:
        if not self.quorum:
            return 0
        if self.disk == "UpToDate":
            peers_good = all(p.connection == "Connected" and p.disk == "UpToDate" for p in self.peers)
            return SCORE_BEST if self.primary or peers_good else SCORE_LOCAL_OK
        return SCORE_CONSISTENT if self.disk == "Consistent" else 0


def encode_facts(facts: dict[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in facts.items())


def decode_facts(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    return dict(word.split("=", 1) for word in text.split() if "=" in word)


def choose_victim(policy: str, named: str, me: str, mine: dict[str, str], peer: str,  # noqa: PLR0911
                  theirs: dict[str, str]) -> str | None:
    """The node whose changes lose, by the same rule on both sides; None: no automatic choice."""
    if policy == "discard-node":
        return named if named in (me, peer) else None
    if policy == "discard-secondary":
        roles = (mine.get("role", ""), theirs.get("role", ""))
        if sorted(roles) != ["Primary", "Secondary"]:
            return None
        return me if roles[0] == "Secondary" else peer
    if policy == "discard-least-changes":
        mine_n, theirs_n = int(mine.get("changes", "0")), int(theirs.get("changes", "0"))
        if mine_n != theirs_n:
            return me if mine_n < theirs_n else peer
        policy = "discard-younger-primary"
    if policy == "discard-younger-primary":
        mine_t, theirs_t = float(mine.get("promoted", "0")), float(theirs.get("promoted", "0"))
        if mine_t == theirs_t:
            return None
        return me if mine_t > theirs_t else peer
    return None


class Drbd(Agent):
    name = "drbd"
    version = "1.0"
    shortdesc = "A DRBD 9 resource as a promotable clone, with split-brain policies"
    longdesc = (
        "Manages one DRBD 9 resource: brings it up and down, promotes and demotes it, and sets the "
        "promotion score from the local disk state and quorum (UpToDate > Consistent; none for "
        "Outdated, Inconsistent or Diskless, or without quorum). monitor returns 8 on the Primary, 0 on "
        "a Secondary, 191/190 when degraded (a peer not connected, a disk not UpToDate). It detects "
        "split brains and applies split_brain_policy; the losing node's data is saved into preserve_dir "
        "before it is discarded, and the event is recorded in the node attribute "
        "drbd-split-brain-<resource>. Notifications are optional: with notify=true a post-notification "
        "reconnects peers and refreshes the score at once; without them the next monitor does, and a "
        "failover waits for no notification round."
    )
    params = (
        Param("drbd_resource", required=True, unique=True, check=_check_name,
              shortdesc="DRBD resource name", longdesc="The name of the resource in drbdconf."),
        Param("drbdconf", default="/etc/drbd.conf", check=_check_path, shortdesc="DRBD configuration file",
              longdesc="Path of the drbd.conf that defines drbd_resource."),
        Param("split_brain_policy", "select", choices=POLICIES, default="disconnect",
              shortdesc="What to do after a split brain",
              longdesc="disconnect: report it (monitor returns degraded with the reason, node "
                       "attribute drbd-split-brain-<resource>) and change nothing. discard-least-changes: "
                       "the node with fewer changes since the split loses (tie: the younger Primary). "
                       "discard-younger-primary: the node promoted last loses. discard-secondary: the "
                       "Secondary loses when the other node is Primary. discard-node: the node named in "
                       "split_brain_victim loses. The loser's data is always preserved first."),
        Param("split_brain_victim", check=_check_name,
              shortdesc="Node whose changes lose (discard-node)",
              longdesc="With split_brain_policy=discard-node: the node whose changes are set aside."),
        Param("preserve_dir", default="/var/lib/openstack-ha/drbd-preserved", check=_check_path,
              shortdesc="Where a losing node's data is saved",
              longdesc="Directory (local to each node) that receives a copy of the losing node's backing "
                       "device with manifest.json and SHA256SUMS before its changes are discarded. Owned "
                       "by root, writable by no one else; it needs room for a whole device."),
    )

    # -- plumbing ------------------------------------------------------------------

    @property
    def resource(self) -> str:
        return self.config.text("drbd_resource")

    @property
    def state(self) -> StateDir:
        return StateDir(self.env.rsctmp, self.name, self.resource)

    @property
    def me(self) -> str:
        return self.env.node or os.uname().nodename

    @property
    def attribute(self) -> str:
        return f"drbd-split-brain-{self.resource}"

    @property
    def progress_attribute(self) -> str:
        return f"drbd-preserve-{self.resource}"

    def drbdadm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(["drbdadm", "-c", self.config.text("drbdconf"), *args], self.deadline, cap=COMMAND_CAP_S)

    def must(self, *args: str) -> None:
        done = self.drbdadm(*args)
        if done.returncode != 0 and self.module_missing():
            raise OCFError(OCF.ERR_INSTALLED, "the DRBD kernel module is not available on this node")
        if done.returncode != 0:
            detail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise OCFError(OCF.ERR_GENERIC, f"drbdadm {' '.join(args)} failed: {detail}")

    def module_missing(self) -> bool:
        """drbdadm reports a module it could not load as a failed drbdsetup call; ask drbdsetup."""
        done = run(["drbdsetup", "status", self.resource], self.deadline, cap=COMMAND_CAP_S)
        return done.returncode == NO_KERNEL_MODULE

    def status(self, statistics: bool = False) -> Status | None:
        """The resource as ``drbdsetup status`` sees it; ``statistics`` (the peers' out-of-sync
        amounts) only where a split brain needs them: the double computes them by comparing images."""
        import json

        argv = ["drbdsetup", "status", "--json", *(["--statistics"] if statistics else []), self.resource]
        done = run(argv, self.deadline, cap=COMMAND_CAP_S)
        if done.returncode in NOT_UP:
            return None
        if done.returncode != 0:
            raise OCFError(OCF.ERR_GENERIC, f"drbdsetup status failed: {done.stderr.strip()}")
        try:
            doc = json.loads(done.stdout)
        except ValueError:
            raise OCFError(OCF.ERR_GENERIC, "drbdsetup status printed no JSON") from None
        return Status(doc[0]) if doc else None

    def node_attribute(self, node: str | None, name: str, value: str | None) -> bool:
        argv = ["crm_attribute", "-l", "reboot", "-n", name]
        if node:
            argv += ["-N", node]
        argv += ["-D"] if value is None else ["-v", value]
        done = run(argv, self.deadline, cap=COMMAND_CAP_S)
        if done.returncode != 0:
            self.log.warning(f"crm_attribute {name} failed: {done.stderr.strip()}")
        return done.returncode == 0

    def read_attribute(self, node: str, name: str) -> str | None:
        done = run(["crm_attribute", "-l", "reboot", "-n", name, "-N", node, "-G", "-q"], self.deadline,
                   cap=COMMAND_CAP_S)
        return done.stdout.strip() if done.returncode == 0 else None

    def set_score(self, score: int) -> None:
        if self.state.read("score") == str(score):
            return
        instance = self.env.instance.split(":", 1)[0]
        value = str(score) if score > 0 else None
        if self.node_attribute(self.env.node or None, f"master-{instance}", value):
            self.state.write("score", str(score))

    # -- validation ----------------------------------------------------------------

    def validate(self) -> Iterable[OCFError]:
        problems = []
        for tool in ("drbdadm", "drbdsetup"):
            if not _on_path(tool):
                problems.append(OCFError(OCF.ERR_INSTALLED, f"{tool} is not installed"))
        conf = self.config.text("drbdconf")
        if not os.access(conf, os.R_OK):
            problems.append(OCFError(OCF.ERR_INSTALLED, f"drbdconf {conf} is not readable"))
        policy, victim = self.config.text("split_brain_policy"), self.config.text("split_brain_victim")
        if policy == "discard-node" and not victim:
            problems.append(OCFError(OCF.ERR_CONFIGURED,
                                     "split_brain_policy=discard-node needs split_brain_victim"))
        for meta in ("clone_node_max", "promoted_node_max", "master_node_max"):
            if self.env.meta(meta, "1") not in ("", "1"):
                problems.append(OCFError(OCF.ERR_CONFIGURED, f"meta {meta} must be 1 for a DRBD clone"))
        # A running instance is defined: promote (on the failover path) does not ask again.
        defining = self.env.action in ("start", "validate-all")
        if not problems and defining and self.drbdadm("sh-dev", self.resource).returncode != 0:
            problems.append(OCFError(OCF.ERR_INSTALLED,
                                     f"resource {self.resource} is not defined in {conf} for this node"))
        return problems

    def stop_unconfigured(self, problems: Sequence[OCFError]) -> OCF:
        if not _on_path("drbdsetup") or not self.config.text("drbd_resource"):
            return OCF.SUCCESS  # no resource name we could trust: nothing provably ours to take down
        done = run(["drbdsetup", "down", self.resource], self.deadline, cap=COMMAND_CAP_S)
        return OCF.SUCCESS if done.returncode == 0 or done.returncode in NOT_UP else OCF.ERR_GENERIC

    # -- actions -------------------------------------------------------------------

    @action("start", timeout=90)
    def start(self) -> OCF:
        self.must("adjust", self.resource)  # brings it up, or re-attaches and reconnects what is missing
        self.deadline.wait_for(lambda: self.status() is not None, "the resource to come up", poll_s=0.2)
        status = self.status()
        if status is None or status.disk == "Diskless":
            raise OCFError(OCF.ERR_GENERIC, "the resource came up without its backing disk")
        self.set_score(status.score())
        return OCF.SUCCESS

    @action("stop", timeout=100)
    def stop(self) -> OCF:
        status = self.status()
        if status is not None:
            if status.primary:
                self.must("secondary", self.resource)
            self.must("down", self.resource)
            if self.status() is not None:
                raise OCFError(OCF.ERR_GENERIC, "the resource is still up after drbdadm down")
        self.set_score(0)
        self.state.remove("score")
        return OCF.SUCCESS

    @action("monitor", Advert(timeout=20, interval=20, role="Unpromoted"),
            Advert(timeout=20, interval=10, role="Promoted"))
    def monitor(self) -> OCF:
        status = self.status()
        if status is None:
            return OCF.NOT_RUNNING
        status, reason = self.split_brain(status)
        self.set_score(status.score())
        if status.degraded:
            code = OCF.DEGRADED_PROMOTED if status.primary else OCF.DEGRADED
            if reason:
                raise OCFError(code, reason)
            return code
        return OCF.RUNNING_PROMOTED if status.primary else OCF.SUCCESS

    @action("promote", timeout=90)
    def promote(self) -> OCF:
        status = self.status()
        if status is None:
            raise OCFError(OCF.ERR_GENERIC, "cannot promote: the resource is not started")
        if status.primary:
            return OCF.SUCCESS
        if not status.quorum:
            raise OCFError(OCF.ERR_GENERIC, "refusing to promote: this node has no quorum")
        if status.disk != "UpToDate":
            raise OCFError(OCF.ERR_GENERIC,
                           f"refusing to promote: the local disk is {status.disk}, not UpToDate")
        self.must("primary", self.resource)
        status = self.status()
        if status is None or not status.primary:
            raise OCFError(OCF.ERR_GENERIC, "drbdadm primary succeeded but the role is not Primary")
        self.state.write("promoted_at", f"{time.time():.3f}")
        self.forget_preservations()  # a new data generation: no earlier copy stands for it
        self.set_score(status.score())
        return OCF.SUCCESS

    @action("demote", timeout=90)
    def demote(self) -> OCF:
        status = self.status()
        if status is None:
            raise OCFError(OCF.ERR_GENERIC, "cannot demote: the resource is not started")
        if status.primary:
            self.must("secondary", self.resource)
        status = self.status()
        if status is None or status.primary:
            raise OCFError(OCF.ERR_GENERIC, "the resource is still Primary after drbdadm secondary")
        self.set_score(status.score())
        return OCF.SUCCESS

    @action("notify", timeout=90)
    def notify(self) -> OCF:
        note = self.env.notify()
        if note.type != "post":
            return OCF.SUCCESS
        status = self.status()
        if status is None:
            return OCF.SUCCESS
        # Reconnect only to peers Pacemaker says are up: adjusting towards a
        # node that has just crashed costs a connection timeout on the failover path.
        running = set(note.unames("active")) | set(note.unames("start"))
        if note.operation in ("start", "promote", "demote") and any(
                p.connection != "Connected" and p.name in running for p in status.peers):
            done = self.drbdadm("adjust", self.resource)
            if done.returncode != 0:
                self.log.warning(f"drbdadm adjust after {note.operation}: {done.stderr.strip()}")
            status = self.status() or status
        self.set_score(status.score())
        return OCF.SUCCESS

    # -- split brain -----------------------------------------------------------------

    def split_brain(self, status: Status) -> tuple[Status, str]:
        reasons = []
        for peer in list(status.peers):
            known = self.state.read(f"split-brain-{peer.name}") is not None
            if peer.connection == "Connected":
                if known:
                    self.resolved(peer.name)
                continue
            theirs = decode_facts(self.read_attribute(peer.name, self.attribute))
            told = theirs is not None and theirs.get("state") == "detected" and theirs.get("peer") == self.me
            if not known and not told:
                if peer.connection != "StandAlone":
                    continue
                # StandAlone: try to reconnect; DRBD refusing the handshake again means split brain.
                self.drbdadm("adjust", self.resource)
                status = self.status() or status
                again = status.peer(peer.name)
                if again is None or again.connection != "StandAlone":
                    continue
            if not known:
                self.log.error(f"split brain between {self.me} and {peer.name} on {self.resource}")
                self.state.write(f"split-brain-{peer.name}", f"{time.time():.3f}")
            reason = self.apply_policy(status, peer.name, theirs)
            status = self.status() or status
            again = status.peer(peer.name)
            if again is not None and again.connection == "Connected":
                self.resolved(peer.name)
            else:
                reasons.append(reason)
        return status, "; ".join(reasons)

    def my_facts(self, status: Status, peer: str) -> dict[str, str]:
        return {
            "state": "detected", "peer": peer, "role": status.role, "changes": self.changes(peer),
            "promoted": self.state.read("promoted_at") or "0",
            "policy": self.config.text("split_brain_policy"),
        }

    def changes(self, peer: str) -> str:
        """KiB out of sync with ``peer``, taken once per split brain: both nodes then compare the
        same published facts, and the statistics (a whole-device comparison in the double) are
        not re-read by every monitor while the data is preserved."""
        known = self.state.read(f"changes-{peer}")
        if known is None:
            entry = (self.status(statistics=True) or Status({})).peer(peer)
            known = str(entry.out_of_sync if entry else 0)
            self.state.write(f"changes-{peer}", known)
        return known

    def apply_policy(self, status: Status, peer: str, theirs: dict[str, str] | None) -> str:
        policy = self.config.text("split_brain_policy")
        mine = self.my_facts(status, peer)
        prefix = f"split brain with {peer} on {self.resource}"
        if policy == "disconnect":
            self.publish(mine)
            return (f"{prefix}: policy disconnect, nothing changed; resolve by hand (on the losing node "
                    f"'drbdadm connect --discard-my-data {self.resource}:{peer}')")
        if not theirs or theirs.get("state") != "detected" or theirs.get("peer") != self.me:
            self.publish(mine)
            return f"{prefix}: waiting for {peer} to report its side"
        victim = choose_victim(policy, self.config.text("split_brain_victim"), self.me, mine, peer, theirs)
        if victim is None:
            self.publish(mine)
            return f"{prefix}: policy {policy} cannot choose a losing node; resolve by hand"
        if victim != self.me:
            self.publish({**mine, "victim": victim})
            self.drbdadm("adjust", self.resource)  # be ready to accept the victim's reconnect
            return f"{prefix}: {victim}'s changes lose (policy {policy}) once preserved there"
        return self.discard_mine(status, peer, mine, theirs, prefix)

    def discard_mine(self, status: Status, peer: str, mine: dict[str, str], theirs: dict[str, str],
                     prefix: str) -> str:
        """This node lost: save its data, then reconnect discarding it (never while Primary)."""
        policy = self.config.text("split_brain_policy")
        if status.primary or self.env.is_probe:
            self.publish({**mine, "victim": self.me})
            if status.primary:
                return f"{prefix}: this node loses (policy {policy}) but is Primary; demote it to proceed"
            return f"{prefix}: this node loses (policy {policy}); the next monitor preserves and discards"
        preserved, waiting = self.preservation(peer, mine, theirs)
        if preserved is None:
            self.publish({**mine, "victim": self.me})
            return (f"{prefix}: this node loses (policy {policy}); {waiting}; it stays disconnected "
                    f"until its data is preserved")
        self.publish({**mine, "victim": self.me, "preserved": preserved})
        self.drbdadm("disconnect", f"{self.resource}:{peer}")
        self.must("connect", "--discard-my-data", f"{self.resource}:{peer}")
        self.log.warning(f"{prefix}: discarding this node's changes (policy {policy}), kept in {preserved}")
        return f"{prefix}: this node's changes were discarded (policy {policy}), preserved in {preserved}"

    def publish(self, facts: dict[str, str], attribute: str = "") -> None:
        name = attribute or self.attribute
        text = encode_facts(facts)
        if self.state.read(f"published-{name}") != text and self.node_attribute(self.env.node or None,
                                                                               name, text):
            self.state.write(f"published-{name}", text)

    def resolved(self, peer: str) -> None:
        facts = decode_facts(self.state.read(f"published-{self.attribute}")) or {}
        facts.update(state="resolved", peer=peer)
        self.publish(facts)
        self.log.warning(f"split brain with {peer} on {self.resource} is resolved: {encode_facts(facts)}")
        self.state.remove(f"split-brain-{peer}")
        self.state.remove(f"changes-{peer}")
        self.forget_preservations(peer)

    # -- preservation ----------------------------------------------------------------

    def generation(self, peer: str) -> str:
        """The device's current data generation: DRBD's current UUID (first field of get-gi)."""
        done = self.drbdadm("get-gi", f"{self.resource}:{peer}")
        first = (done.stdout.strip().splitlines() or [""])[0] if done.returncode == 0 else ""
        current = first.split(":", 1)[0]
        return current if len(current) == 16 and all(c in "0123456789ABCDEFabcdef" for c in current) else ""

    def forget_preservations(self, peer: str = "") -> None:
        """Drop the records of copies (a running worker keeps its folder; it no longer authorises)."""
        try:
            names = os.listdir(self.state.path)
        except OSError:
            return
        for name in names:
            if name in (f"preserve-{peer}", f"preserve-failed-{peer}") or (
                    not peer and name.startswith("preserve-")):
                self.state.remove(name)

    def preservation(self, peer: str, mine: dict[str, str], theirs: dict[str, str]) -> tuple[str | None, str]:
        """(folder, "") once a verified copy of the current generation exists, else (None, why not yet)."""
        from agents import drbd_preserve as keep

        generation = self.generation(peer)
        if not generation:
            return None, "its data generation cannot be read, so its data cannot be preserved"
        record = (self.state.read(f"preserve-{peer}") or "").split(" ", 2)
        identity = Identity.parse(" ".join(record[:2])) if len(record) == 3 else None
        if identity is not None and (keep.read_json(os.path.join(record[2], keep.REQUEST)) or {}).get(
                "generation") != generation:
            self.state.remove(f"preserve-{peer}")  # a copy of another generation: not ours to wait for
            identity = None
        if identity is not None:
            observed = self.observe(peer, generation, identity, record[2])
            if observed is not None:
                return observed
        failed = (self.state.read(f"preserve-failed-{peer}") or "").split(" ", 2)
        if len(failed) == 3 and failed[1] == generation and time.time() - float(failed[0]) < PRESERVE_RETRY_S:
            return None, (f"its data could not be preserved ({failed[2]}); "
                          f"next attempt within {PRESERVE_RETRY_S:.0f} s")
        try:
            folder = self.start_preserving(peer, generation, mine, theirs)
        except (OSError, keep.PreserveError) as exc:
            reason = str(exc) if isinstance(exc, keep.PreserveError) else f"{exc.strerror or exc}"
            self.preserve_failed(peer, generation, reason)
            return None, f"its data could not be preserved ({reason})"
        return None, f"preserving its data into {folder}"

    def observe(self, peer: str, generation: str, worker: Identity,
                folder: str) -> tuple[str | None, str] | None:
        """What the worker copying ``folder`` achieved: done, still copying, or (None) it failed."""
        from agents import drbd_preserve as keep

        if keep.verified(folder, generation):
            self.publish({"state": "verified", "generation": generation, "folder": folder},
                         self.progress_attribute)
            return folder, ""
        if worker.alive():
            done, total = keep.progress(folder) or (0, 0)
            percent, step = f"{100 * done // total}%" if total else "0%", keep.phase(folder)
            self.publish({"state": step, "done": percent, "bytes": str(done), "total": str(total),
                          "folder": folder}, self.progress_attribute)
            return None, f"preserving its data into {folder} ({step}, {percent})"
        self.preserve_failed(peer, generation, keep.failure(folder) or "the copy stopped unverified")
        return None

    def preserve_failed(self, peer: str, generation: str, reason: str) -> None:
        self.log.error(f"preserving {self.resource}'s data before discarding it failed: {reason}")
        self.state.remove(f"preserve-{peer}")
        self.state.write(f"preserve-failed-{peer}", f"{time.time():.3f} {generation} {reason}")
        self.publish({"state": "failed"}, self.progress_attribute)

    def start_preserving(self, peer: str, generation: str, mine: dict[str, str],
                         theirs: dict[str, str]) -> str:
        """Check the room, create the folder and its request, start the worker; return the folder."""
        import json
        import subprocess
        import sys

        from agents import drbd_preserve as keep

        source = self.drbdadm("sh-ll-dev", self.resource).stdout.strip()
        root = self.config.text("preserve_dir")
        keep.make_root(root)
        keep.check_free_space(root, keep.device_size(source))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        folder = os.path.join(root, f"{self.resource}-{self.me}-{stamp}-{generation}")
        os.mkdir(folder, 0o700)
        request = {
            "resource": self.resource, "node": self.me, "peer": peer, "source": source,
            "generation": generation, "policy": self.config.text("split_brain_policy"), "created": stamp,
            "this_node": mine, "peer_node": theirs,
        }
        keep.write_file(folder, keep.REQUEST, json.dumps(request, indent=2, sort_keys=True) + "\n")
        child = subprocess.Popen([sys.executable, "-I", keep.__file__, folder], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
                                 start_new_session=True, close_fds=True)
        identity = Identity.of(child.pid) or Identity(child.pid, 0)
        self.state.write(f"preserve-{peer}", f"{identity.dump()} {folder}")
        self.publish({"state": "copying", "done": "0%", "folder": folder}, self.progress_attribute)
        self.log.warning(f"preserving {source} in {folder} before discarding it (worker pid {child.pid})")
        return folder


def _on_path(tool: str) -> bool:
    return any(os.access(os.path.join(d, tool), os.X_OK) for d in os.environ.get("PATH", "").split(":") if d)


AGENT = Drbd

if __name__ == "__main__":
    Drbd.main()
