"""Python API for tests: N replicas of one DRBD resource on the double, cleaned up on exit.

    from harness.drbd_double.fixture import replicas

    with replicas(["alpha", "beta", "gamma"], mkfs=True) as drbd:
        drbd.run("alpha", "drbdadm", "up", drbd.resource)   # as node alpha
        env = drbd.env("alpha")          # PATH, DRBD_DOUBLE_* for agents run as alpha
        drbd.device("alpha")             # /dev/drbdN of alpha
        drbd.up_all(); drbd.run("alpha", "drbdadm", "primary", drbd.resource)
        with mounted(drbd.device("alpha"), "/tmp/x") as path:   # private mount namespace
            open(f"{path}/file", "w").write("...")

Every node's resource is taken down, loop devices detached, device nodes and the
state directory removed when the block ends, even on failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")


def _free_minor_base(count: int) -> int:
    start = 200 + (os.getpid() % 600) * 4
    for base in range(start, start + 4000, count):
        if not any(os.path.exists(f"/dev/drbd{base + i}") for i in range(count)):
            return base
    raise RuntimeError("no free DRBD minor range")


def write_config(path: str, resource: str, nodes: Sequence[str], disks: dict[str, str], minor_base: int,
                 port_base: int, quorum: bool, extra: str = "") -> None:
    lines = [f"resource {resource} {{"]
    if quorum:
        lines.append("  options { quorum majority; on-no-quorum io-error; }")
    lines.append("  net { protocol C; after-sb-0pri disconnect; after-sb-1pri disconnect; "
                 "after-sb-2pri disconnect; }")
    if extra:
        lines.append(f"  {extra}")
    for i, node in enumerate(nodes):
        lines.append(f"  on {node} {{ node-id {i}; device /dev/drbd{minor_base + i} minor {minor_base + i}; "
                     f"disk {disks[node]}; address 127.0.0.1:{port_base + i}; meta-disk internal; }}")
    lines.append(f"  connection-mesh {{ hosts {' '.join(nodes)}; }}")
    lines.append("}")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


@dataclass
class Replicas:
    resource: str
    nodes: list[str]
    workdir: str
    conf: str
    state: str
    minor_base: int

    def env(self, node: str, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        env["DRBD_DOUBLE_STATE"] = self.state
        env["DRBD_DOUBLE_NODE"] = node
        env["DRBD_DOUBLE_CONF"] = self.conf
        return env

    def device(self, node: str) -> str:
        return f"/dev/drbd{self.minor_base + self.nodes.index(node)}"

    def disk(self, node: str) -> str:
        return os.path.join(self.workdir, f"{node}.disk")

    def run(self, node: str, *argv: str, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        tool = argv[0]
        if tool in ("drbdadm", "drbdsetup", "drbd-double"):
            argv = (os.path.join(BIN, tool), "-c", self.conf, *argv[1:]) if tool != "drbdsetup" else (
                os.path.join(BIN, tool), *argv[1:])
        return subprocess.run(list(argv), env=self.env(node), capture_output=True, text=True, check=check,
                              timeout=timeout)

    def up_all(self) -> None:
        for node in self.nodes:
            self.run(node, "drbdadm", "up", self.resource)

    def status(self, node: str) -> dict:
        import json

        out = self.run(node, "drbdsetup", "status", "--json", "--statistics", self.resource).stdout
        return json.loads(out)[0]

    def crash(self, node: str) -> None:
        self.run(node, "drbd-double", "crash", self.resource, node)

    def block(self, a: str, b: str) -> None:
        self.run(a, "drbd-double", "block", self.resource, a, b)

    def unblock(self) -> None:
        self.run(self.nodes[0], "drbd-double", "unblock", self.resource)

    def cleanup(self) -> None:
        _end_helpers([self.device(node) for node in self.nodes])
        for node in self.nodes:
            device = self.device(node)
            _unmount_everything_on(device)
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.run(node, "drbd-double", "crash", self.resource, node, check=False)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(device)
        _detach_loops_under(self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)


class MountError(Exception):
    pass


# Helpers holding a mount, by pid: the fixture ends those of its devices even if a test left one.
_HELPERS: dict[int, tuple[str, subprocess.Popen]] = {}


def _end_helpers(devices: Sequence[str]) -> None:
    for pid, (device, helper) in list(_HELPERS.items()):
        if device in devices:
            helper.kill()
            helper.wait()
            _HELPERS.pop(pid, None)


@contextlib.contextmanager
def mounted(device: str, mountpoint: str) -> Iterator[str]:
    """Mount ``device`` in a private mount namespace held by a helper process; yield a path to its files.

    A mount made in the shared root namespace gets copied into every namespace other tests create
    meanwhile (``unshare --mount``), and such a copy keeps the device busy after our ``umount``: DRBD
    (and the double) then rightly refuse to demote.  The yielded path is
    ``/proc/<helper>/root<mountpoint>``; leaving the block unmounts and ends the namespace.
    """
    os.makedirs(mountpoint, exist_ok=True)
    helper = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
         'mount "$1" "$2" || exit 1; echo mounted; read -r _; umount "$2"', "sh", device, mountpoint],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert helper.stdin is not None and helper.stdout is not None and helper.stderr is not None
    if helper.stdout.readline().strip() != "mounted":
        helper.wait(timeout=30)
        raise MountError(helper.stderr.read().strip())
    _HELPERS[helper.pid] = (device, helper)
    try:
        yield f"/proc/{helper.pid}/root{mountpoint}"
    finally:
        _HELPERS.pop(helper.pid, None)
        helper.stdin.close()
        try:
            helper.wait(timeout=60)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()


def _unmount_everything_on(device: str) -> None:
    try:
        rdev = os.stat(device).st_rdev
    except OSError:
        return
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        mounts = [line.split() for line in handle]
    for fields in reversed(mounts):
        major, minor = (int(x) for x in fields[2].split(":"))
        if os.makedev(major, minor) == rdev:
            subprocess.run(["umount", "-l", fields[4]], check=False, capture_output=True)


def _detach_loops_under(directory: str) -> None:
    out = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                         capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1].strip().startswith(directory):
            subprocess.run(["umount", "-l", parts[0]], check=False, capture_output=True)
            subprocess.run(["losetup", "--detach", parts[0]], check=False, capture_output=True)


@contextlib.contextmanager
def replicas(nodes: Sequence[str] = ("alpha", "beta", "gamma"), resource: str = "r0", size_mb: int = 64,
             mkfs: bool = True, quorum: bool | None = None, base_dir: str = "/tmp",
             extra_config: str = "") -> Iterator[Replicas]:
    """A resource replicated on ``nodes`` (all UpToDate, identical data, down)."""
    workdir = tempfile.mkdtemp(prefix="drbd-double-", dir=base_dir)
    minor_base = _free_minor_base(len(nodes))
    drbd = Replicas(resource, list(nodes), workdir, os.path.join(workdir, "drbd.conf"),
                    os.path.join(workdir, "state"), minor_base)
    try:
        disks = {node: drbd.disk(node) for node in nodes}
        write_config(drbd.conf, resource, nodes, disks, minor_base, 17700 + minor_base,
                     quorum if quorum is not None else len(nodes) >= 3, extra_config)
        image = os.path.join(workdir, "initial.img")
        with open(image, "wb") as handle:
            handle.truncate(size_mb << 20)
        if mkfs:
            subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image],
                           check=True, capture_output=True)
        drbd.run(nodes[0], "drbd-double", "init", resource, image)
        os.unlink(image)
        yield drbd
    finally:
        drbd.cleanup()
