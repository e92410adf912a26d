"""Split brain, per policy: two replicas write different data while disconnected, then reconnect.

The survivor's data must be live afterwards, and the loser's data byte-for-byte
recoverable from the preserved copy (sha256 of the copy == sha256 of the loser's
backing device taken just before the reconnect).  With ``disconnect`` nothing changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time

import pytest

from harness.drbd_double.agent import Cluster
from harness.drbd_double.fixture import mounted, replicas

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices, mknod, mounts)")
ATTR = "drbd-split-brain-r0"
ROUNDS = 6
SETTLE_S = 60.0


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def backing(drbd, node):
    return drbd.run(node, "drbdadm", "sh-ll-dev", drbd.resource).stdout.strip()


def fs_file(image, name):
    """A file's content from an ext4 image, read with debugfs (no mount, no loop device)."""
    done = subprocess.run(["debugfs", "-R", f"cat /{name}", image], capture_output=True, check=True)
    return done.stdout


def write(path, data):
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_as_primary(drbd, agent, node, name, size, demote):
    """Promote (if needed), mount, write a file, unmount, optionally demote."""
    assert agent(node, "promote").rc == 0
    with mounted(drbd.device(node), os.path.join(drbd.workdir, f"mnt-{node}")) as mnt:
        write(os.path.join(mnt, name), os.urandom(size))
    if demote:
        assert agent(node, "demote").rc == 0


def split_brain(policy, alpha_bytes=4096, beta_bytes=4096, demote_alpha=True, demote_beta=True, **params):
    """alpha Primary writes, the link breaks, both write, the link heals. Yields (drbd, agent, sums)."""
    drbd_cm = replicas(("alpha", "beta"), quorum=False)
    drbd = drbd_cm.__enter__()
    try:
        agent = Cluster(drbd, split_brain_policy=policy,
                        preserve_dir=os.path.join(drbd.workdir, "preserved"), **params)
        for node in drbd.nodes:
            assert agent(node, "start").rc == 0
        write_as_primary(drbd, agent, "alpha", "shared", 8192, demote=False)
        drbd.block("alpha", "beta")
        assert agent("alpha", "monitor").rc == 191  # the peer is gone: degraded
        write_as_primary(drbd, agent, "alpha", "alpha-only", alpha_bytes, demote=demote_alpha)
        write_as_primary(drbd, agent, "beta", "beta-only", beta_bytes, demote=demote_beta)
        sums = {node: sha256(backing(drbd, node)) for node in drbd.nodes}
        drbd.unblock()
        return drbd_cm, drbd, agent, sums
    except BaseException:
        drbd_cm.__exit__(None, None, None)
        raise


def settle(agent, nodes=("alpha", "beta"), budget_s=SETTLE_S):
    """Monitor every node until all are healthy (the preservation runs detached) or the budget ends."""
    results, rounds, end = {}, 0, time.monotonic() + budget_s
    while rounds < ROUNDS or time.monotonic() < end:
        results = {node: agent(node, "monitor") for node in nodes}
        rounds += 1
        if all(r.rc in (0, 8) for r in results.values()):
            break
    return results


def check_preserved(drbd, agent, victim, survivor, sums):
    results = settle(agent)
    assert all(r.rc in (0, 8) for r in results.values()), {n: (r.rc, r.stderr) for n, r in results.items()}
    status = drbd.status(survivor)
    assert status["connections"][0]["connection-state"] == "Connected"
    # The survivor's data is live on both replicas.
    assert backing(drbd, victim) and sha256(backing(drbd, victim)) == sha256(backing(drbd, survivor))
    assert fs_file(backing(drbd, victim), f"{survivor}-only")
    assert has_file(backing(drbd, victim), "shared")
    assert not has_file(backing(drbd, victim), f"{victim}-only")
    # The victim's data is set aside, byte for byte, with its manifest and checksums.
    root = os.path.join(drbd.workdir, "preserved")
    (folder,) = os.listdir(root)
    assert folder.startswith(f"r0-{victim}-")
    folder = os.path.join(root, folder)
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert manifest["node"] == victim and manifest["peer"] == survivor
    image = os.path.join(folder, "data.img")
    assert manifest["files"][0]["sha256"] == sha256(image) == sums[victim]
    with open(os.path.join(folder, "SHA256SUMS"), encoding="utf-8") as handle:
        assert handle.read() == f"{sums[victim]}  data.img\n"
    assert fs_file(image, f"{victim}-only")
    assert not has_file(image, f"{survivor}-only")
    # Operators see what happened in the node attributes.
    victim_attr = agent.attribute(victim, ATTR)
    assert "state=resolved" in victim_attr and f"victim={victim}" in victim_attr
    assert f"preserved={folder}" in victim_attr
    assert "state=resolved" in agent.attribute(survivor, ATTR)


def crm_mon_attribute(cib, node, name):
    from lxml import etree

    xml = subprocess.run(["crm_mon", "-1", "-A", "--output-as=xml"], env=dict(os.environ, CIB_file=cib),
                         capture_output=True, check=True).stdout
    found = etree.fromstring(xml).xpath("//node_attributes/node[@name=$n]/attribute[@name=$a]/@value",
                                        n=node, a=name)
    return found[0] if found else None


def has_file(image, name):
    done = subprocess.run(["debugfs", "-R", f"stat /{name}", image], capture_output=True, text=True,
                          check=True)
    return "File not found" not in done.stdout + done.stderr


@pytest.fixture
def scenario(request):
    handles = []

    def make(policy, **kwargs):
        cm, drbd, agent, sums = split_brain(policy, **kwargs)
        handles.append(cm)
        return drbd, agent, sums

    yield make
    for cm in handles:
        cm.__exit__(None, None, None)


def test_disconnect_changes_nothing_and_tells_the_operator(scenario):
    drbd, agent, sums = scenario("disconnect")
    results = settle(agent)
    for node, result in results.items():
        assert result.rc == 190
        assert "split brain with" in result.exit_reasons[0]
        assert "policy disconnect, nothing changed" in result.exit_reasons[0]
        assert "state=detected" in agent.attribute(node, ATTR)
        assert sha256(backing(drbd, node)) == sums[node]  # nothing discarded
        assert drbd.status(node)["connections"][0]["connection-state"] == "StandAlone"
    assert not os.path.exists(os.path.join(drbd.workdir, "preserved"))
    assert "state=detected" in crm_mon_attribute(agent.cib, "alpha", ATTR)  # what the operator sees
    kernel = drbd.run("alpha", "drbd-double", "dmesg", drbd.resource).stdout
    assert "Split-Brain detected but unresolved, dropping connection!" in kernel


def test_discard_secondary_while_the_primary_keeps_serving(scenario):
    drbd, agent, sums = scenario("discard-secondary", demote_alpha=False)  # alpha stays Primary
    # alpha's file system stays mounted and in use during the resolution
    with mounted(drbd.device("alpha"), os.path.join(drbd.workdir, "mnt-alpha")) as mnt:
        check_preserved(drbd, agent, victim="beta", survivor="alpha", sums=sums)
        write(os.path.join(mnt, "after"), b"written after the resolution")
    assert agent("alpha", "monitor").rc == 8
    assert fs_file(backing(drbd, "beta"), "after") == b"written after the resolution"  # replicated


def test_discard_named_node(scenario):
    drbd, agent, sums = scenario("discard-node", split_brain_victim="alpha")
    check_preserved(drbd, agent, victim="alpha", survivor="beta", sums=sums)


def test_discard_younger_primary(scenario):
    drbd, agent, sums = scenario("discard-younger-primary")  # beta was promoted last
    check_preserved(drbd, agent, victim="beta", survivor="alpha", sums=sums)


def test_discard_least_changes(scenario):
    drbd, agent, sums = scenario("discard-least-changes", alpha_bytes=4096, beta_bytes=2 << 20)
    check_preserved(drbd, agent, victim="alpha", survivor="beta", sums=sums)


def plant(agent, node, name, text):
    """A record in the agent's state directory on ``node``, as an earlier run could have left it."""
    path = os.path.join(agent.rsctmp(node), "openstack-drbd-r0")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def stale_copy(drbd, victim):
    """A finished-looking copy of the victim's device, of another data generation."""
    folder = os.path.join(drbd.workdir, "stale")
    os.makedirs(folder)
    size = os.path.getsize(backing(drbd, victim))
    write(os.path.join(folder, "data.img"), b"\0" * size)
    manifest = {"generation": "0123456789ABCDEF", "files": [{"name": "data.img", "bytes": size}]}
    for name in ("manifest.json", "request.json"):
        write(os.path.join(folder, name), json.dumps(manifest).encode())
    return folder


def test_a_leftover_preservation_record_does_not_authorise_a_discard(scenario):
    drbd, agent, sums = scenario("discard-node", split_brain_victim="alpha")
    plant(agent, "alpha", "preserved-beta", "/nonexistent")  # the marker format of earlier versions
    plant(agent, "alpha", "preserve-beta", f"1 0 {stale_copy(drbd, 'alpha')}")  # dead worker, old copy
    # A real copy of the current generation is made before the discard, whatever was left behind.
    check_preserved(drbd, agent, victim="alpha", survivor="beta", sums=sums)


def test_promote_forgets_earlier_preservations():
    with replicas(("alpha", "beta"), quorum=False) as drbd:
        agent = Cluster(drbd, preserve_dir=os.path.join(drbd.workdir, "preserved"))
        for node in drbd.nodes:
            assert agent(node, "start").rc == 0
        state = plant(agent, "alpha", "preserve-beta", "1 0 /nonexistent")
        plant(agent, "alpha", "preserve-failed-beta", "0 0123456789ABCDEF no room")
        assert agent("alpha", "promote").rc == 0
        assert not [name for name in os.listdir(state) if name.startswith("preserve")]


@contextlib.contextmanager
def small_filesystem(path, size="2m"):
    os.makedirs(path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=True)


def test_a_copy_that_cannot_be_made_leaves_the_victim_disconnected(scenario):
    drbd, agent, sums = scenario("discard-node", split_brain_victim="alpha")
    with small_filesystem(os.path.join(drbd.workdir, "preserved")) as root:
        results = settle(agent, budget_s=0)  # ROUNDS monitors: nothing changes without a copy
        victim = results["alpha"]
        assert victim.rc == 190, (victim.rc, victim.stderr)
        assert "could not be preserved" in victim.exit_reasons[0]
        assert "stays disconnected" in victim.exit_reasons[0]
        assert drbd.status("alpha")["connections"][0]["connection-state"] == "StandAlone"
        assert sha256(backing(drbd, "alpha")) == sums["alpha"]  # nothing discarded
        assert sha256(backing(drbd, "beta")) == sums["beta"]
        assert "state=failed" in agent.attribute("alpha", "drbd-preserve-r0")
        assert "state=failed" in crm_mon_attribute(agent.cib, "alpha", "drbd-preserve-r0")
        assert not os.listdir(root)  # refused before writing anything


def test_the_worker_verifies_from_disk_and_writes_the_manifest_last(tmp_path):
    from agents import drbd_preserve as keep

    source = tmp_path / "device"
    source.write_bytes(os.urandom(3 << 20) + b"\0" * (5 << 20))
    folder = tmp_path / "copy"
    folder.mkdir()
    keep.write_file(str(folder), keep.REQUEST, json.dumps({"source": str(source), "generation": "A" * 16}))
    assert keep.main([str(folder)]) == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"] == [{"name": "data.img", "bytes": 8 << 20, "sha256": sha256(source)}]
    assert keep.verified(str(folder), "A" * 16)
    assert not keep.verified(str(folder), "B" * 16)  # another data generation: not preserved
    assert keep.progress(str(folder)) == (8 << 20, 8 << 20) and keep.phase(str(folder)) == "verifying"
    (folder / "data.img").write_bytes(b"short")
    assert not keep.verified(str(folder), "A" * 16)  # a copy that does not match its manifest


def test_the_worker_leaves_no_partial_copy(tmp_path):
    from agents import drbd_preserve as keep

    folder = tmp_path / "copy"
    folder.mkdir()
    keep.write_file(str(folder), keep.REQUEST, json.dumps({"source": str(tmp_path / "missing"),
                                                           "generation": "A" * 16}))
    assert keep.main([str(folder)]) == 1
    assert "No such file" in keep.failure(str(folder))
    assert not (folder / "data.img").exists() and not (folder / "manifest.json").exists()


BIG_MB = 2048
BIG_DATA_MB = 1024


def write_random(path, megabytes):
    with open(path, "wb") as handle:
        for _ in range(megabytes // 8):
            handle.write(os.urandom(8 << 20))
        handle.flush()
        os.fsync(handle.fileno())


@pytest.mark.measurement
def test_preserve_and_resync_of_a_2gib_device():
    """The victim holds 1 GiB of fresh data on a 2 GiB device; every monitor stays short while the
    detached copy runs; report the preservation (first monitor to the one that finds the copy
    verified) and the resync (that monitor's start to both nodes healthy) in seconds and MB/s.
    The double's split-brain handshake and statistics compare whole images, so the monitors that
    detect the split brain are slow here (not with DRBD, which compares UUIDs); they are reported,
    not bounded."""
    with replicas(("alpha", "beta"), quorum=False, size_mb=BIG_MB) as drbd:
        agent = Cluster(drbd, split_brain_policy="discard-node", split_brain_victim="alpha",
                        preserve_dir=os.path.join(drbd.workdir, "preserved"))
        for node in drbd.nodes:
            assert agent(node, "start").rc == 0
        write_as_primary(drbd, agent, "alpha", "shared", 8192, demote=False)
        drbd.block("alpha", "beta")
        assert agent("alpha", "monitor").rc == 191
        with mounted(drbd.device("alpha"), os.path.join(drbd.workdir, "mnt-alpha")) as mnt:
            write_random(os.path.join(mnt, "alpha-only"), BIG_DATA_MB)
        assert agent("alpha", "demote").rc == 0
        write_as_primary(drbd, agent, "beta", "beta-only", 4096, demote=True)
        drbd.unblock()
        slowest, copying, seen, marks, start = 0.0, 0.0, set(), {}, time.monotonic()
        while time.monotonic() - start < 900 and "resynced" not in marks:
            for node in drbd.nodes:
                began = time.monotonic()
                result = agent(node, "monitor")
                slowest = max(slowest, time.monotonic() - began)
                if "preserving its data" in "".join(result.exit_reasons):
                    copying = max(copying, time.monotonic() - began)
                if node == "alpha":
                    progress = agent.attribute("alpha", "drbd-preserve-r0") or ""
                    seen.add(progress.split(" ", 1)[0])
                    if "state=verified" in progress:  # this monitor discarded and reconnected
                        marks.setdefault("preserved", began)
                if marks.get("preserved") and result.rc in (0, 8):
                    marks.setdefault(f"ok-{node}", time.monotonic())
            if all(f"ok-{n}" in marks for n in drbd.nodes):
                marks["resynced"] = time.monotonic()
        assert "resynced" in marks, marks
        (folder,) = os.listdir(os.path.join(drbd.workdir, "preserved"))
        with open(os.path.join(drbd.workdir, "preserved", folder, "manifest.json"), encoding="utf-8") as f:
            worker_s = json.load(f)["seconds"]
        preserve_s, resync_s = marks["preserved"] - start, marks["resynced"] - marks["preserved"]
        mb = BIG_MB * 1.048576
        print(f"\n2 GiB device, {BIG_DATA_MB} MiB written: preserve {preserve_s:.1f} s from the first "
              f"monitor ({mb / preserve_s:.0f} MB/s; worker copy+verify {worker_s:.1f} s, "
              f"{mb / worker_s:.0f} MB/s), resync {resync_s:.1f} s ({mb / max(resync_s, 0.001):.0f} MB/s), "
              f"slowest monitor while copying {copying:.2f} s, slowest of all {slowest:.2f} s, "
              f"progress states seen {sorted(seen)}")
        assert "state=copying" in seen and copying < 20
