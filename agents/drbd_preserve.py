"""Preserving a split-brain victim's data: a detached worker and the checks around it.

The copy of a whole backing device can take minutes, far more than a monitor's
budget, so ``monitor`` starts this module as a worker in its own session
(``python3 -m agents.drbd_preserve FOLDER``), records it as pid + start time and
observes it on later monitors.  The worker reads what to do from ``request.json``
in FOLDER (written by the agent), copies the device while hashing it, fsyncs the
copy, drops it from the page cache and re-reads it from disk to verify the
sha256, then writes ``SHA256SUMS`` and, last, ``manifest.json`` (fsynced, renamed
into place, folder fsynced).  ``manifest.json`` is the only proof of a finished
preservation; it names the data generation (DRBD's current UUID) it copied, and
a preservation counts only for that generation.  A failure leaves ``FAILED``
with a one-line reason and no image.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time

CHUNK = 4 << 20
PROGRESS_EVERY_S = 1.0
# Room kept free beside the copy: the file system's own needs and the manifest.
FREE_MARGIN = 64 << 20
REQUEST = "request.json"
MANIFEST = "manifest.json"
PROGRESS = "progress"
FAILED = "FAILED"
IMAGE = "data.img"
SUMS = "SHA256SUMS"


class PreserveError(Exception):
    """A preservation that cannot proceed; the message is our own text, fit for an exit reason."""


def device_size(path: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def check_free_space(directory: str, needed: int) -> None:
    vfs = os.statvfs(directory)
    free = vfs.f_bavail * vfs.f_frsize
    if free < needed + FREE_MARGIN:
        raise PreserveError(f"{directory} has {free >> 20} MiB free, "
                            f"the copy needs {(needed + FREE_MARGIN) >> 20} MiB")


def safe_directory(path: str) -> None:
    """A directory root may write into: no symbolic link, owned by root, writable by no one else."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise PreserveError(f"{path} is not a directory")
    if info.st_uid != 0 and os.geteuid() == 0:
        raise PreserveError(f"{path} is not owned by root")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PreserveError(f"{path} is writable by other users")


def make_root(path: str) -> None:
    """preserve_dir, created 0700 if missing, every existing component checked."""
    try:
        os.makedirs(path, mode=0o700)
    except FileExistsError:
        pass
    safe_directory(path)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(folder: str, name: str, text: str) -> None:
    """Write a small file durably and atomically: temporary name, fsync, rename, fsync the folder."""
    temporary = os.path.join(folder, f".{name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, os.path.join(folder, name))
    fsync_dir(folder)


def read_json(path: str) -> dict[str, object] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            doc = json.loads(handle.read(1 << 20))
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def verified(folder: str, generation: str) -> bool:
    """True when FOLDER holds a finished, verified copy of exactly this data generation."""
    manifest = read_json(os.path.join(folder, MANIFEST))
    if manifest is None or not generation or manifest.get("generation") != generation:
        return False
    files = manifest.get("files")
    if not isinstance(files, list) or len(files) != 1 or not isinstance(files[0], dict):
        return False
    try:
        info = os.lstat(os.path.join(folder, IMAGE))
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == files[0].get("bytes")


def progress(folder: str) -> tuple[int, int] | None:
    """(bytes done, bytes total) as the worker last reported them."""
    doc = read_json(os.path.join(folder, PROGRESS))
    if doc is None:
        return None
    done, total = doc.get("done"), doc.get("total")
    return (done, total) if isinstance(done, int) and isinstance(total, int) else None


def phase(folder: str) -> str:
    """copying, then verifying (the copy is re-read from disk)."""
    doc = read_json(os.path.join(folder, PROGRESS)) or {}
    return "verifying" if doc.get("phase") == "verifying" else "copying"


def failure(folder: str) -> str | None:
    try:
        with open(os.path.join(folder, FAILED), encoding="utf-8") as handle:
            return handle.readline().strip() or "the copy failed"
    except OSError:
        return None


# -- the worker ------------------------------------------------------------------------

def _copy(source: str, target: str, folder: str) -> tuple[int, str]:
    """Copy and hash, reporting progress; the copy is fsynced before this returns."""
    total = device_size(source)
    digest, done, reported = hashlib.sha256(), 0, 0.0
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        while chunk := os.read(src, CHUNK):
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view):]
            done += len(chunk)
            if time.monotonic() - reported >= PROGRESS_EVERY_S:
                write_file(folder, PROGRESS, json.dumps({"done": done, "total": total, "phase": "copying"}))
                reported = time.monotonic()
        os.fsync(dst)
        # The copy is on disk: drop it from the page cache so the check below reads the disk.
        os.posix_fadvise(dst, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(src)
        os.close(dst)
    if done != total:
        raise PreserveError(f"read {done} of {total} bytes of {source}")
    write_file(folder, PROGRESS, json.dumps({"done": done, "total": total, "phase": "verifying"}))
    return done, digest.hexdigest()


def _sha256_from_disk(path: str) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def preserve(folder: str) -> None:
    request = read_json(os.path.join(folder, REQUEST))
    if request is None:
        raise PreserveError("no request in the preservation folder")
    source = str(request["source"])
    image = os.path.join(folder, IMAGE)
    check_free_space(folder, device_size(source))
    started = time.monotonic()
    size, checksum = _copy(source, image, folder)
    if _sha256_from_disk(image) != checksum:
        raise PreserveError("the copy read back from disk does not match its source")
    write_file(folder, SUMS, f"{checksum}  {IMAGE}\n")
    manifest = {**request, "files": [{"name": IMAGE, "bytes": size, "sha256": checksum}],
                "seconds": round(time.monotonic() - started, 3)}
    write_file(folder, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    fsync_dir(os.path.dirname(folder))


def main(argv: list[str]) -> int:
    folder = argv[0]
    try:
        preserve(folder)
    except (OSError, PreserveError, KeyError) as exc:
        reason = f"{exc.strerror} ({exc.filename})" if isinstance(exc, OSError) else str(exc)
        try:
            os.unlink(os.path.join(folder, IMAGE))  # never leave a partial copy behind
        except OSError:
            pass
        write_file(folder, FAILED, reason + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
