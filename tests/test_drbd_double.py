"""The DRBD double on its own: configuration, command lines, exit codes, data semantics, cleanup."""

from __future__ import annotations

import errno
import json
import mmap
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.drbd_double import volatile
from harness.drbd_double.fixture import MountError, mounted, replicas

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices, mknod, mounts)")


@pytest.fixture
def three():
    with replicas() as drbd:
        yield drbd


@pytest.fixture
def two():
    with replicas(("alpha", "beta"), quorum=False) as drbd:
        yield drbd


def mount(drbd, node):
    return mounted(drbd.device(node), os.path.join(drbd.workdir, f"mnt-{node}"))


def write(path, text):
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def conn(drbd, node, peer):
    return next(c for c in drbd.status(node)["connections"] if c["name"] == peer)


def test_real_drbdadm_parses_the_generated_configuration(three):
    dump = subprocess.run(["unshare", "--uts", "--", "/bin/sh", "-c", 'hostname alpha && exec "$@"', "sh",
                           "/usr/sbin/drbdadm", "-c", three.conf, "-d", "up", three.resource],
                          capture_output=True, text=True, check=False)
    assert dump.returncode == 0, dump.stderr
    minor = three.device("alpha").removeprefix("/dev/drbd")
    assert f"drbdsetup attach {minor} {three.disk('alpha')}" in dump.stdout
    ours = three.run("alpha", "drbdadm", "-d", "up", three.resource).stdout
    assert f"drbdsetup attach {minor} {three.disk('alpha')}" in ours


def test_status_formats_and_exit_codes(three):
    unknown = three.run("alpha", "drbdadm", "up", "nosuch", check=False)
    assert unknown.returncode == 10
    assert unknown.stderr.strip() == "'nosuch' not defined in your config (for this host)."
    down = three.run("alpha", "drbdsetup", "status", three.resource, check=False)
    assert (down.returncode, down.stderr.strip()) == (10, f"{three.resource}: No such resource")
    assert three.run("alpha", "drbdsetup", "events2", "--now", three.resource).stdout == "exists -\n"
    three.up_all()
    text = three.run("alpha", "drbdadm", "status", three.resource).stdout
    assert text.splitlines() == [f"{three.resource} role:Secondary", "  disk:UpToDate",
                                 "  beta role:Secondary", "    peer-disk:UpToDate",
                                 "  gamma role:Secondary", "    peer-disk:UpToDate"]
    events = three.run("alpha", "drbdsetup", "events2", "--now", three.resource).stdout.splitlines()
    assert events[0].startswith(f"exists resource name:{three.resource} role:Secondary ")
    assert ("exists connection name:r0 peer-node-id:1 conn-name:beta connection:Connected role:Secondary"
            in events)
    assert any(e.startswith("exists device name:r0 volume:0 minor:") and " disk:UpToDate client:no quorum:yes"
               in e for e in events)
    assert events[-1] == "exists -"
    doc = json.loads(three.run("alpha", "drbdsetup", "status", "--json", three.resource).stdout)
    assert doc[0]["devices"][0]["disk-state"] == "UpToDate"
    assert [c["connection-state"] for c in doc[0]["connections"]] == ["Connected", "Connected"]
    assert three.run("alpha", "drbdadm", "role", three.resource).stdout == "Secondary\n"
    assert three.run("alpha", "drbdadm", "cstate", f"{three.resource}:beta").stdout == "Connected\n"
    assert three.run("alpha", "drbdadm", "dstate", three.resource).stdout == "UpToDate/UpToDate/UpToDate\n"
    version = three.run("alpha", "drbdadm", "--version").stdout
    assert "DRBD_KERNEL_VERSION_CODE=0x090208" in version


def test_secondary_device_refuses_and_primary_device_serves(three):
    three.up_all()
    with pytest.raises(OSError) as refused:
        open(three.device("alpha"), "rb").close()
    assert refused.value.errno == errno.ENXIO
    with pytest.raises(MountError, match="not a valid block device"), mount(three, "alpha"):
        pass
    three.run("alpha", "drbdadm", "primary", three.resource)
    second = three.run("beta", "drbdadm", "primary", three.resource, check=False)
    assert second.returncode == 11
    assert "(-1) Multiple primaries not allowed by config" in second.stderr
    with mount(three, "alpha"):
        held = three.run("alpha", "drbdadm", "secondary", three.resource, check=False)
        assert held.returncode == 11 and "(-12) Device is held open by someone" in held.stderr
    three.run("alpha", "drbdadm", "secondary", three.resource)


def test_acknowledged_writes_survive_the_primary_crash(three):
    three.up_all()
    three.run("alpha", "drbdadm", "primary", three.resource)
    with mount(three, "alpha") as path:  # the node "dies" with its mount namespace
        write(os.path.join(path, "committed"), "acknowledged")
        three.crash("alpha")
    three.run("beta", "drbdadm", "primary", three.resource)  # beta + gamma: quorum
    with mount(three, "beta") as path, open(os.path.join(path, "committed")) as handle:
        assert handle.read() == "acknowledged"
    # alpha comes back and resyncs: it was not Primary while apart, so it takes beta's data.
    three.run("alpha", "drbdadm", "up", three.resource)
    assert conn(three, "alpha", "beta")["connection-state"] == "Connected"
    assert os.path.realpath(three.disk("alpha")) == os.path.realpath(three.disk("beta"))


def raw_write(device, offset, data, flush):
    """An O_DIRECT write straight to the device (no page cache above it), flushed or not."""
    buffer = mmap.mmap(-1, 4096)
    buffer.write(data.ljust(4096, b"\0"))
    fd = os.open(device, os.O_RDWR | os.O_DIRECT)
    try:
        assert os.pwrite(fd, buffer, offset) == 4096
        if flush:
            os.fsync(fd)  # a block-layer flush
    finally:
        os.close(fd)


def raw_read(path, offset, length):
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def test_unflushed_writes_die_with_the_primary_flushed_ones_are_on_every_connected_replica():
    with replicas(mkfs=False) as drbd:
        drbd.up_all()
        drbd.run("alpha", "drbdadm", "primary", drbd.resource)
        device = drbd.device("alpha")
        raw_write(device, 0, b"flushed", flush=True)
        raw_write(device, 1 << 20, b"unflushed", flush=False)
        assert raw_read(device, 1 << 20, 9) == b"unflushed"  # the Primary reads its own writes
        images = {os.path.realpath(drbd.disk(node)) for node in drbd.nodes}
        assert len(images) == 1  # connected: one image
        (image,) = images
        assert raw_read(image, 0, 7) == b"flushed"
        assert raw_read(image, 1 << 20, 9) == b"\0" * 9
        drbd.crash("alpha")
        assert volatile_disks(drbd.workdir) == []
        drbd.run("beta", "drbdadm", "primary", drbd.resource)
        assert raw_read(drbd.device("beta"), 0, 7) == b"flushed"
        assert raw_read(drbd.device("beta"), 1 << 20, 9) == b"\0" * 9
        for node in ("beta", "gamma"):
            assert raw_read(os.path.realpath(drbd.disk(node)), 0, 7) == b"flushed"


def test_a_clean_demotion_flushes_what_the_primary_wrote(two):
    two.up_all()
    two.run("alpha", "drbdadm", "primary", two.resource)
    raw_write(two.device("alpha"), 1 << 20, b"written", flush=False)
    two.run("alpha", "drbdadm", "secondary", two.resource)
    assert volatile_disks(two.workdir) == []
    assert raw_read(os.path.realpath(two.disk("beta")), 1 << 20, 7) == b"written"


NODE_SCRIPT = """
loop=$(/usr/bin/python3 -I -S "$1" mount "$2" "$3") || exit 1
echo kept > "$3/kept" && sync "$3/kept"
echo lost > "$3/lost"
echo "$loop"
read -r _
"""


def test_a_volatile_directory_keeps_only_what_was_fsynced_when_its_node_dies(tmp_path):
    """The helper for node-local directories (brokers' data): a node (PID and mount namespace)
    writes two files, fsyncs one and dies; the image has only that one."""
    image, directory = tmp_path / "dir.img", tmp_path / "dir"
    directory.mkdir()
    with open(image, "wb") as handle:
        handle.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    node = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--mount", "--propagation", "private", "--",
         "/bin/sh", "-c", NODE_SCRIPT, "sh", volatile.__file__, str(image), str(directory)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        loop = node.stdout.readline().strip()
        assert loop.startswith("/dev/loop"), loop
        with open(f"/proc/{node.pid}/task/{node.pid}/children") as handle:
            pid1 = int(handle.read().split()[0])
        assert volatile_disks(str(tmp_path))
        os.kill(pid1, 9)  # the node's power: its PID namespace dies, the disk with it
        node.wait(30)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
    subprocess.run(["losetup", "--detach", loop], check=False)
    assert volatile_disks(str(tmp_path)) == []
    listing = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                              'mount -o loop "$1" "$2" && ls "$2" && cat "$2/kept"', "sh", str(image),
                              str(directory)], capture_output=True, text=True, check=True).stdout.split()
    assert "kept" in listing and "lost" not in listing
    assert listing[-1] == "kept"


def test_quorum_majority(three):
    three.run("alpha", "drbdadm", "up", three.resource)
    alone = three.run("alpha", "drbdadm", "primary", three.resource, check=False)
    assert alone.returncode == 11
    assert alone.stderr.strip() == f"{three.resource}: State change failed: (-23) No quorum"
    assert "quorum:no" in three.run("alpha", "drbdsetup", "events2", "--now", three.resource).stdout
    three.run("beta", "drbdadm", "up", three.resource)
    three.run("alpha", "drbdadm", "primary", three.resource)
    three.block("alpha", "beta")  # alpha loses its majority
    assert not three.status("alpha")["devices"][0]["quorum"]


def test_copy_on_disconnect_and_split_brain(two):
    two.up_all()
    assert os.path.realpath(two.disk("alpha")) == os.path.realpath(two.disk("beta"))  # one shared image
    two.run("alpha", "drbdadm", "disconnect", two.resource)
    assert os.path.realpath(two.disk("alpha")) != os.path.realpath(two.disk("beta"))  # each its own copy
    assert conn(two, "alpha", "beta")["connection-state"] == "StandAlone"
    assert conn(two, "beta", "alpha")["connection-state"] == "Connecting"
    for node in two.nodes:
        two.run(node, "drbdadm", "primary", two.resource)
        with mount(two, node) as path:
            write(os.path.join(path, node), node)
        two.run(node, "drbdadm", "secondary", two.resource)
    assert two.status("alpha")["connections"][0]["peer_devices"][0]["out-of-sync"] > 0
    two.run("alpha", "drbdadm", "connect", two.resource)
    for node in two.nodes:
        assert conn(two, node, {"alpha": "beta", "beta": "alpha"}[node])["connection-state"] == "StandAlone"
    kernel = two.run("alpha", "drbd-double", "dmesg", two.resource, "alpha").stdout
    assert "beta: Split-Brain detected but unresolved, dropping connection!" in kernel
    # Manual recovery, as with real DRBD: the loser reconnects discarding its data.
    two.run("beta", "drbdadm", "connect", "--discard-my-data", two.resource)
    two.run("alpha", "drbdadm", "connect", two.resource)
    assert conn(two, "beta", "alpha")["connection-state"] == "Connected"
    assert os.path.realpath(two.disk("alpha")) == os.path.realpath(two.disk("beta"))


def kernel(drbd, node):
    return drbd.run(node, "drbd-double", "dmesg", drbd.resource, node).stdout


@pytest.mark.parametrize("then", ["demoted", "fenced"])
def test_isolated_primary_without_quorum_resyncs_from_the_new_primary(three, then):
    """DRBD >= 9.0.28: a Primary that lost quorum starts no new data generation (it cannot
    write with on-no-quorum io-error), so it rejoins as the sync target of the new Primary."""
    three.up_all()
    three.run("alpha", "drbdadm", "primary", three.resource)
    with mount(three, "alpha") as path:
        write(os.path.join(path, "before"), "before the split")
        for peer in ("beta", "gamma"):
            three.block("alpha", peer)
        assert not three.status("alpha")["devices"][0]["quorum"]
        if then == "fenced":
            three.crash("alpha")  # the node dies with its mount
    if then == "demoted":
        three.run("alpha", "drbdadm", "secondary", three.resource)
    assert "quorum( yes -> no ): no new current UUID" in kernel(three, "alpha")
    three.run("beta", "drbdadm", "primary", three.resource)  # beta + gamma: quorum
    with mount(three, "beta") as path:
        with open(os.path.join(path, "before")) as handle:
            assert handle.read() == "before the split"
        write(os.path.join(path, "after"), "written by the new Primary")
    three.unblock()
    if then == "fenced":
        three.run("alpha", "drbdadm", "up", three.resource)  # rebooted
    for peer in ("beta", "gamma"):
        assert conn(three, "alpha", peer)["connection-state"] == "Connected"
    assert three.run("alpha", "drbdadm", "dstate", three.resource).stdout == "UpToDate/UpToDate/UpToDate\n"
    assert [three.status(node)["role"] for node in three.nodes] == ["Secondary", "Primary", "Secondary"]
    assert os.path.realpath(three.disk("alpha")) == os.path.realpath(three.disk("beta"))  # the new data
    log = kernel(three, "alpha")
    assert "resync from ['beta', 'gamma']: now UpToDate" in log
    assert "Split-Brain" not in log


def test_two_replicas_without_quorum_still_split_after_a_failover(two):
    """Without quorum the isolated Primary may keep writing: its data diverge at once."""
    two.up_all()
    two.run("alpha", "drbdadm", "primary", two.resource)
    two.block("alpha", "beta")
    assert two.status("alpha")["devices"][0]["quorum"]
    two.run("alpha", "drbdadm", "secondary", two.resource)
    two.run("beta", "drbdadm", "primary", two.resource)
    two.unblock()
    assert conn(two, "alpha", "beta")["connection-state"] == "StandAlone"
    assert conn(two, "beta", "alpha")["connection-state"] == "StandAlone"
    assert "beta: Split-Brain detected but unresolved, dropping connection!" in kernel(two, "alpha")


def test_new_metadata_needs_a_forced_primary_then_syncs():
    with replicas(("alpha", "beta"), quorum=False, mkfs=False) as fresh:
        for node in fresh.nodes:
            os.unlink(fresh.disk(node))
            with open(fresh.disk(node), "wb") as handle:
                handle.truncate(8 << 20)
            fresh.run(node, "drbdadm", "create-md", fresh.resource)
        fresh.up_all()
        assert fresh.run("alpha", "drbdadm", "dstate", fresh.resource).stdout == "Inconsistent/Inconsistent\n"
        refused = fresh.run("alpha", "drbdadm", "primary", fresh.resource, check=False)
        assert refused.returncode == 17
        fresh.run("alpha", "drbdadm", "primary", "--force", fresh.resource)
        fresh.run("beta", "drbdadm", "adjust", fresh.resource)
        assert fresh.run("beta", "drbdadm", "dstate", fresh.resource).stdout == "UpToDate/UpToDate\n"


def test_concurrent_commands_from_many_nodes_stay_consistent(three):
    def cycle(node):
        for _ in range(3):
            three.run(node, "drbdadm", "up", three.resource)
            three.run(node, "drbdsetup", "status", three.resource)
            three.run(node, "drbdadm", "down", three.resource)
        three.run(node, "drbdadm", "up", three.resource)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(cycle, three.nodes))
    for node in three.nodes:
        states = [c["connection-state"] for c in three.status(node)["connections"]]
        assert states == ["Connected", "Connected"]


def test_down_releases_loop_devices_and_device_nodes(two):
    two.up_all()
    two.run("alpha", "drbdadm", "primary", two.resource)
    assert loops_under(two.workdir)
    for node in two.nodes:
        two.run(node, "drbdadm", "down", two.resource)
        assert not os.path.exists(two.device(node))
    assert loops_under(two.workdir) == []
    assert volatile_disks(two.workdir) == []


def loops_under(directory):
    out = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if directory in line]


def volatile_disks(directory):
    """Live (not zombie) volatile disk processes serving a file under ``directory``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(arg.endswith(b"volatile_disk.py") for arg in argv) \
                and any(arg.decode(errors="replace").startswith(directory) for arg in argv):
            found.append(int(pid))
    return found


def test_fixture_cleans_up_even_when_the_test_fails():
    with pytest.raises(RuntimeError), replicas(("alpha", "beta"), quorum=False) as drbd:
        drbd.up_all()
        drbd.run("alpha", "drbdadm", "primary", drbd.resource)
        held = mount(drbd, "alpha")
        held.__enter__()  # left mounted on purpose: the fixture must still clean up
        workdir, device = drbd.workdir, drbd.device("alpha")
        raise RuntimeError("boom")
    assert not os.path.exists(workdir)
    assert not os.path.exists(device)
    out = subprocess.run(["losetup", "--list", "--noheadings", "-O", "BACK-FILE"], capture_output=True,
                         text=True, check=True).stdout
    assert workdir not in out
