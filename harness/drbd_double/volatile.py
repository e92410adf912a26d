"""Start, stop and kill a node's volatile disk (``volatile_disk.py``) from the double's commands.

Standard library only: the double's commands run with ``python3 -I -S``; the disk itself runs on
Debian's interpreter with its site packages (python3-fusepy).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import asdict, dataclass

DISK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "volatile_disk.py")
PYTHON = "/usr/bin/python3"
READY_TIMEOUT = 30.0
EXIT_TIMEOUT = 10.0


class VolatileError(Exception):
    pass


@dataclass
class Backing:
    pid: int
    start_time: str
    pid_namespace: str
    mountpoint: str

    @property
    def path(self) -> str:
        """The file the loop device is set up on (the mount exists in the disk's own namespace)."""
        return f"{_procfs()}/{self.pid}/root{self.mountpoint}/disk"

    def record(self) -> dict:
        return asdict(self)


def _procfs() -> str:
    """Where the real procfs is: ``with-proc-drbd`` replaces /proc by a tmpfs of symlinks made
    before the disk's process existed."""
    return os.path.dirname(os.path.realpath("/proc/self"))


def _start_time(pid: int) -> str:
    try:
        with open(f"{_procfs()}/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _state(pid: int) -> str:
    try:
        with open(f"{_procfs()}/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def _pid_namespace() -> str:
    return os.readlink("/proc/self/ns/pid")


def start(image: str, mountpoint: str) -> Backing:
    os.makedirs(mountpoint, exist_ok=True)
    with open(f"{mountpoint}.log", "ab") as log:
        disk = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", PYTHON, "-I", DISK, image, mountpoint],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    assert disk.stdout is not None
    ready, _, _ = select.select([disk.stdout], [], [], READY_TIMEOUT)
    line = disk.stdout.readline() if ready else b""
    disk.stdout.close()
    backing = Backing(disk.pid, _start_time(disk.pid), _pid_namespace(), mountpoint)
    if line.strip() != b"ready":
        kill(backing.record())
        raise VolatileError(f"the volatile disk over {image} did not start (see {mountpoint}.log)")
    return backing


def _ours(record: dict) -> Backing | None:
    """The disk if it runs in this PID namespace (a crashed node's died with its namespace)."""
    backing = Backing(**record)
    if (not backing.start_time or backing.pid_namespace != _pid_namespace()
            or _start_time(backing.pid) != backing.start_time):
        return None
    return backing


def _end(backing: Backing, signum: int) -> None:
    os.kill(backing.pid, signum)
    end = time.monotonic() + EXIT_TIMEOUT
    while _state(backing.pid) not in ("Z", "X", "gone") and time.monotonic() < end:
        time.sleep(0.01)


def kill(record: dict) -> None:
    """A crash: the unflushed writes die with the disk."""
    backing = _ours(record)
    if backing is not None:
        _end(backing, signal.SIGKILL)


def stop(record: dict) -> None:
    """A clean stop (the loop device is detached): flush, then end the disk."""
    backing = _ours(record)
    if backing is None:
        return
    try:
        fd = os.open(backing.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        _end(backing, signal.SIGTERM)


def mount_directory(image: str, directory: str) -> str:
    """Mount the ext4 file system in ``image`` at ``directory`` over a volatile disk started from
    this process (run it inside a node: the disk dies with the node's PID namespace, the mount with
    its mount namespace); returns the loop device, which the harness detaches after a crash."""
    backing = start(image, f"{image}.disk")
    try:
        loop = subprocess.run(["losetup", "--find", "--show", backing.path], check=True,
                              capture_output=True, text=True).stdout.strip()
    except subprocess.CalledProcessError:
        kill(backing.record())
        raise
    try:
        subprocess.run(["mount", "-t", "ext4", loop, directory], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        subprocess.run(["losetup", "--detach", loop], check=False)
        kill(backing.record())
        raise
    return loop


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["mount"] or len(sys.argv) != 4:
        sys.exit("usage: volatile.py mount IMAGE DIRECTORY")
    print(mount_directory(sys.argv[2], sys.argv[3]))
