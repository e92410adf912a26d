"""A disk with a volatile write cache: what a node loses when its power is cut.

    unshare --mount --propagation private -- python3 -I volatile_disk.py IMAGE MOUNTPOINT

(started, stopped and killed through ``volatile.py``)

serves ``MOUNTPOINT/disk``, a FUSE file the size of ``IMAGE``.  Reads see the image with this
process's unflushed writes on top; writes stay in this process's memory until an ``fsync`` of the
file (the loop device turns every block-layer flush, and every FUA write, into one) writes them to
the image.  The process lives in the node's PID namespace, so a crash of the node kills it and its
unflushed writes vanish, as a power cut empties a disk's write cache and the kernel's page cache;
the loop device over the dead file then fails every request (EIO).  A clean stop is an ``fsync``,
then SIGTERM.

The mount is made in this process's own mount namespace (``unshare`` above): other namespaces
created meanwhile get no copy of it, and the file is reached as ``/proc/<pid>/root/MOUNTPOINT/disk``.
"ready" on standard output says the file is served.

Runs on Debian's interpreter with python3-fusepy (the only module outside the standard library).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading

import fusepy  # type: ignore[import-not-found]

BLOCK = 4096
FILE = "/disk"


class VolatileDisk(fusepy.Operations):  # type: ignore[misc]
    def __init__(self, image: str) -> None:
        self.fd = os.open(image, os.O_RDWR)
        self.size = os.fstat(self.fd).st_size
        self.dirty: dict[int, bytes] = {}  # block number -> BLOCK bytes not yet flushed
        self.lock = threading.Lock()

    def init(self, path: str) -> None:
        print("ready", flush=True)
        sys.stdout.close()

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o700, "st_nlink": 2}
        if path != FILE:
            raise fusepy.FuseOSError(errno.ENOENT)
        return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": self.size}

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", FILE[1:]]

    def open(self, path: str, flags: int) -> int:
        if path != FILE:
            raise fusepy.FuseOSError(errno.ENOENT)
        return 0

    def _block(self, number: int) -> bytes:
        data = self.dirty.get(number)
        if data is None:
            data = os.pread(self.fd, BLOCK, number * BLOCK).ljust(BLOCK, b"\0")
        return data

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        size = max(0, min(size, self.size - offset))
        with self.lock:
            data = bytearray(os.pread(self.fd, size, offset).ljust(size, b"\0"))
            for number in range(offset // BLOCK, (offset + size + BLOCK - 1) // BLOCK):
                block = self.dirty.get(number)
                if block is None:
                    continue
                start = max(offset, number * BLOCK)
                end = min(offset + size, (number + 1) * BLOCK)
                data[start - offset:end - offset] = block[start - number * BLOCK:end - number * BLOCK]
        return bytes(data)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        if offset + len(data) > self.size:
            raise fusepy.FuseOSError(errno.ENOSPC)
        with self.lock:
            position = offset
            while position < offset + len(data):
                number = position // BLOCK
                start = position - number * BLOCK
                chunk = data[position - offset:position - offset + BLOCK - start]
                if start == 0 and len(chunk) == BLOCK:
                    self.dirty[number] = bytes(chunk)
                else:
                    block = bytearray(self._block(number))
                    block[start:start + len(chunk)] = chunk
                    self.dirty[number] = bytes(block)
                position += len(chunk)
        return len(data)

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self.lock:
            for number in sorted(self.dirty):
                os.pwrite(self.fd, self.dirty[number], number * BLOCK)
            self.dirty.clear()
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close(2), not a cache flush

    def release(self, path: str, fh: int) -> int:
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": BLOCK, "f_frsize": BLOCK, "f_blocks": self.size // BLOCK, "f_namemax": 255}


def main() -> None:
    image, mountpoint = sys.argv[1:3]
    fusepy.FUSE(VolatileDisk(image), mountpoint, foreground=True, nothreads=True, big_writes=True,
                max_write=131072, default_permissions=True, fsname="drbd-double-volatile")


if __name__ == "__main__":
    main()
