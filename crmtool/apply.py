"""diff and apply: a versioned patch from the live CIB to the description.

crmtool owns the elements it renders (by id) and the name/value pairs it
sets; everything else in the live CIB stays: nodes and status, constraints
added with pcs (``cli-ban-*``, ``cli-prefer-*``), meta attributes such as
``target-role`` from ``pcs resource disable``, resources it never rendered.
The patch carries the live version as its source and epoch + 1 as its
target, so ``cibadmin --patch`` refuses it if anyone changed the
configuration in between (compare-and-swap).
"""

from __future__ import annotations

import copy
import os
import tempfile

from crmtool import pacemaker, validate
from crmtool.exits import Exit
from crmtool.findings import ConcurrentChange, CrmtoolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lxml import etree

# Pacemaker's CRM_EX_OLD: the patch's source version is not the CIB's any more.
CIB_UPDATE_OLDER = 103
STATUS_RETRIES = 5
VERSION_ATTRS = ("admin_epoch", "epoch", "num_updates")
META = "meta_attributes"


class Plan:
    """The live CIB as read, the target CIB, and the patch between them (None: nothing to do)."""

    def __init__(self, cib_file: str | None, live: etree._Element, target: etree._Element,
                 patch: etree._Element | None) -> None:
        self.cib_file = cib_file
        self.live = live
        self.target = target
        self.patch = patch

    def epoch_text(self) -> str:
        return version_text(self.live)


def version_text(cib: etree._Element) -> str:
    return ".".join(cib.get(a, "0") for a in VERSION_ATTRS)


def plan(configuration: etree._Element, cib_file: str | None) -> Plan:
    """Read the live CIB and compute the patch that makes it match ``configuration``."""
    live = pacemaker.query(cib_file)
    target = validated_merge(live, configuration)
    patch = None
    if not same_configuration(live, target):
        target.set("epoch", str(int(live.get("epoch", "0")) + 1))
        target.set("num_updates", "0")
        patch = diff(live, target)
    return Plan(cib_file, live, target, patch)


def onto(configuration: etree._Element, cib_file: str | None) -> etree._Element:
    """The live CIB's configuration as ``apply`` would leave it, for ``cibadmin --replace``.

    A replace of the configuration section drops whatever its input lacks, so
    the input must carry what crmtool does not own: the properties the DC
    maintains (``dc-version``, ``cluster-infrastructure``, ``cluster-name``,
    ``last-lrm-refresh``), node entries, operators' constraints and meta.
    """
    target = validated_merge(pacemaker.query(cib_file), configuration)
    section = target.find("configuration")
    if section is None:
        raise CrmtoolError("the CIB has no <configuration> section")
    return section


def commit(plan: Plan) -> str:
    """Apply the plan's patch; return the new version; ConcurrentChange if the configuration moved."""
    if plan.patch is None:
        return plan.epoch_text()
    return _patch(plan.patch, plan.cib_file)


def commit_file(path: str, cib_file: str | None) -> str:
    """Apply a patch saved earlier by ``diff``: refused if the configuration changed since."""
    from crmtool.findings import NoInput

    try:
        patch = pacemaker.parse(read_input(path))
    except OSError as exc:
        raise NoInput(f"{path}: {exc.strerror}") from None
    except SyntaxError as exc:
        raise CrmtoolError(f"{path}: not a patch written by crmtool diff ({exc})", Exit.DATAERR) from None
    if patch.tag != "diff" or patch.find("version/source") is None:
        raise CrmtoolError(f"{path}: not a versioned patch (no <version><source>)", Exit.DATAERR)
    return _patch(patch, cib_file)


def read_input(path: str) -> bytes:
    """A file's bytes; ``-`` is standard input."""
    import sys

    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()


def _patch(patch: etree._Element, cib_file: str | None) -> str:
    """``cibadmin --patch`` as a compare-and-swap on the configuration version.

    The patch applies only to the exact CIB version it names.  The status
    section moves on its own (``num_updates``: monitor results, node
    attributes), so while ``admin_epoch`` and ``epoch`` still match, the patch
    is re-based on the current ``num_updates`` and tried again; a changed
    epoch means someone changed the configuration: refused, nothing applied.
    """
    source = patch.find("version/source")
    if source is None:
        raise CrmtoolError("the patch has no <version><source>")
    expected = version_text(source)
    for _attempt in range(STATUS_RETRIES):
        now = pacemaker.query(cib_file)
        if _configuration_version(now) != _configuration_version(source):
            raise ConcurrentChange(f"the CIB configuration changed after the patch was prepared (version "
                                   f"{expected} became {version_text(now)}); nothing was applied: "
                                   "run diff/apply again")
        _rebase(patch, source, now)
        with tempfile.TemporaryDirectory(prefix="crmtool-apply-") as tmp:
            path = os.path.join(tmp, "patch.xml")
            pacemaker.write(path, patch)
            done = pacemaker.run(["cibadmin", "--patch", "--xml-file", path], cib_file=cib_file,
                                 ok=tuple(range(256)))
        if done.returncode == 0:
            return version_text(pacemaker.query(cib_file))
        if done.returncode != CIB_UPDATE_OLDER:
            message = done.stderr.decode(errors="replace").strip()
            raise CrmtoolError(f"cibadmin --patch failed with exit code {done.returncode}: {message}")
    raise ConcurrentChange(f"the CIB kept changing while the patch was applied ({STATUS_RETRIES} attempts); "
                           "nothing was applied: run apply again")


def _rebase(patch: etree._Element, source: etree._Element, now: etree._Element) -> None:
    """Make the patch apply to ``now`` and leave the epoch to the CIB manager.

    ``cibadmin --patch`` raises the epoch itself when the configuration
    changes; a patch that also sets it (crm_diff writes the target's epoch
    into a change of ``/cib``) raised it twice.  The patch keeps its changes;
    its version moves by one ``num_updates`` only, so Pacemaker still sees a
    newer version, and the epoch rises by exactly one.
    """
    for name in VERSION_ATTRS:
        source.set(name, now.get(name, "0"))
    target = patch.find("version/target")
    if target is not None:
        target.set("admin_epoch", source.get("admin_epoch", "0"))
        target.set("epoch", source.get("epoch", "0"))
        target.set("num_updates", str(int(source.get("num_updates", "0")) + 1))
    for change in patch.findall("change[@path='/cib']"):
        for changes in change.findall("change-list"):
            for attr in changes.findall("change-attr"):
                if attr.get("name") in VERSION_ATTRS:
                    changes.remove(attr)
        if not change.findall("change-list/*"):
            patch.remove(change)


def _configuration_version(element: etree._Element) -> tuple[str, str]:
    return element.get("admin_epoch", "0"), element.get("epoch", "0")


def diff(live: etree._Element, target: etree._Element) -> etree._Element:
    with tempfile.TemporaryDirectory(prefix="crmtool-diff-") as tmp:
        old, new = os.path.join(tmp, "live.xml"), os.path.join(tmp, "target.xml")
        pacemaker.write(old, live)
        pacemaker.write(new, target)
        done = pacemaker.run(["crm_diff", "--original", old, "--new", new], ok=(0, 1))
    return pacemaker.parse(done.stdout)


def same_configuration(a: etree._Element, b: etree._Element) -> bool:
    from lxml import etree

    def canonical(cib: etree._Element) -> bytes:
        section = cib.find("configuration")
        return etree.tostring(section, method="c14n") if section is not None else b""

    return canonical(a) == canonical(b)


def simulated_transition(plan: Plan) -> list[str]:
    """What the cluster would do with the target configuration (crm_simulate -R on a copy)."""
    with tempfile.TemporaryDirectory(prefix="crmtool-dry-run-") as tmp:
        path = os.path.join(tmp, "target.xml")
        pacemaker.write(path, plan.target)
        done = pacemaker.run(["crm_simulate", "-x", path, "-R", "--output-as=xml"])
    result = pacemaker.parse(done.stdout)
    lines = [f"transition: {a.get('op')} {a.get('resource')} on {a.get('node')}"
             for a in result.iterfind("transition/rsc_action")]
    lines += [f"transition: fence {f.get('target')}" for f in result.iterfind("transition/fencing_action")]
    return lines or ["transition: nothing to do"]


# Merging the description into the live CIB ----------------------------------


def validated_merge(live: etree._Element, ours: etree._Element) -> etree._Element:
    target = merged(live, ours)
    validate.validate(target)
    return target


def merged(live: etree._Element, ours: etree._Element) -> etree._Element:
    """A copy of ``live`` whose owned parts are replaced by ``ours``."""
    target = copy.deepcopy(live)
    config = target.find("configuration")
    if config is None:
        raise CrmtoolError("the CIB has no <configuration> section")
    for section in ("crm_config", "rsc_defaults", "op_defaults"):
        _merge_nvsets(config, ours.find(section), section)
    _merge_nodes(config, ours.find("nodes"))
    _merge_children(config, ours.find("resources"), "resources", keep_foreign_meta=True)
    _merge_children(config, ours.find("constraints"), "constraints", keep_foreign_meta=False)
    return target


def _section(config: etree._Element, tag: str) -> etree._Element:
    from lxml import etree

    found = config.find(tag)
    return found if found is not None else etree.SubElement(config, tag)


def _merge_nvsets(config: etree._Element, ours: etree._Element | None, tag: str) -> None:
    """Set our name/value pairs inside the live sets of the same id; keep every other pair."""
    if ours is None:
        return
    live = _section(config, tag)
    for our_set in ours:
        live_set = _by_id(live, our_set.get("id", ""))
        if live_set is None:
            live.append(copy.deepcopy(our_set))
            continue
        for pair in our_set:
            old = next((p for p in live_set if p.get("name") == pair.get("name")), None)
            if old is None:
                live_set.append(copy.deepcopy(pair))
            elif old.get("value") != pair.get("value"):
                old.set("value", pair.get("value", ""))


def _merge_nodes(config: etree._Element, ours: etree._Element | None) -> None:
    """Live node entries (ids from corosync, standby, attributes) stay; missing nodes are added."""
    if ours is None:
        return
    live = _section(config, "nodes")
    known = {n.get("uname") for n in live}
    for node in ours:
        if node.get("uname") not in known and _by_id(live, node.get("id", "")) is None:
            live.append(copy.deepcopy(node))


def _merge_children(config: etree._Element, ours: etree._Element | None, tag: str, *,
                    keep_foreign_meta: bool) -> None:
    if ours is None:
        return
    live = _section(config, tag)
    for element in ours:
        replacement = copy.deepcopy(element)
        old = _by_id(live, element.get("id", ""))
        if old is None:
            live.append(replacement)
            continue
        if keep_foreign_meta:
            _carry_meta(old, replacement)
        live.replace(old, replacement)


def _carry_meta(old: etree._Element, new: etree._Element) -> None:
    """Meta attributes set by operators (target-role, is-managed ...) survive, at every level."""
    from lxml import etree

    old_by_id = {e.get("id"): e for e in old.iter("primitive", "group", "clone")}
    for element in new.iter("primitive", "group", "clone"):
        before = old_by_id.get(element.get("id"))
        if before is None:
            continue
        ours = element.find(META)
        our_names = {p.get("name") for p in ours} if ours is not None else set()
        foreign = [p for s in before.findall(META) for p in s if p.get("name") not in our_names]
        if not foreign:
            continue
        if ours is None:
            ours = etree.Element(META, id=f"{element.get('id')}-{META}")
            element.insert(0, ours)
        taken = {p.get("id") for p in ours}
        for pair in foreign:
            if pair.get("id") not in taken:
                ours.append(copy.deepcopy(pair))


def _by_id(parent: etree._Element, element_id: str) -> etree._Element | None:
    return next((e for e in parent if e.get("id") == element_id), None)
