"""The backup target: complete backups, their manifests, the lock, crash leftovers.

A backup is written into ``.staging-<id>``, its manifest last, every file and
directory fsynced, then renamed to ``<id>``: a directory named like a backup
id with a readable manifest is complete, anything else is a leftover that the
next run removes.  Deletion goes the other way (rename to ``.deleting-<id>``
first), so a half-deleted backup is never listed either.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dbbackup.errors import CANTCREAT, DATAERR, NOINPUT, TEMPFAIL, UNAVAILABLE, BackupError

MANIFEST = "manifest.json"
DATA = "data"
LOCK = ".lock"
STAGING = ".staging-"
LEFTOVER_PREFIXES = (STAGING, ".deleting-", ".scratch-")
ID_PATTERN = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-(full|diff)$")
FULL, DIFF = "full", "diff"
CHUNK = 1 << 20


@dataclass
class Backup:
    id: str
    kind: str
    base: str | None
    created: float
    manifest: dict[str, Any] = field(repr=False)

    @property
    def size(self) -> int:
        return int(self.manifest["size_bytes"])


def new_id(kind: str, now: float | None = None) -> str:
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}.{int(now * 1000) % 1000:03d}Z-{kind}"


def fsync_path(path: str, directory: bool = False) -> None:
    fd = os.open(path, (os.O_RDONLY | os.O_DIRECTORY) if directory else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def walk_files(top: str) -> Iterator[str]:
    """Regular files under ``top`` (relative, sorted); anything else is refused."""
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            if not stat.S_ISREG(os.lstat(full).st_mode):
                raise BackupError(f"{full}: not a regular file", DATAERR)
            yield os.path.relpath(full, top)


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_facts(path: str) -> dict[str, Any]:
    """Size and sha256 of a file just written, which is also fsynced while its pages are warm."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
            size += len(chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"size": size, "sha256": digest.hexdigest()}


def describe_files(top: str) -> dict[str, dict[str, Any]]:
    """Every file's facts, hashed on all cores (hashlib and fsync release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    names = list(walk_files(top))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        facts = list(pool.map(lambda rel: file_facts(os.path.join(top, rel)), names))
    return dict(zip(names, facts, strict=True))


def sync_tree(top: str) -> None:
    for root, _dirs, files in os.walk(top, topdown=False):
        for name in files:
            fsync_path(os.path.join(root, name))
        fsync_path(root, directory=True)


def is_full_disk(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


class Target:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.lock_fd: int | None = None

    def check(self) -> None:
        """The target is a directory we can reach (an unmounted NFS path is not)."""
        try:
            info = os.stat(self.directory)
        except OSError as exc:
            raise BackupError(f"target {self.directory}: unreachable: {exc.strerror}", UNAVAILABLE) from None
        if not stat.S_ISDIR(info.st_mode):
            raise BackupError(f"target {self.directory}: not a directory", UNAVAILABLE)

    def path(self, *parts: str) -> str:
        return os.path.join(self.directory, *parts)

    # The lock ---------------------------------------------------------------
    def lock(self) -> None:
        import fcntl

        self.check()
        try:
            fd = os.open(self.path(LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise BackupError(f"target {self.directory}: cannot open the lock: {exc.strerror}",
                              CANTCREAT) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device planted in the target
            os.close(fd)
            raise BackupError(f"target {self.directory}: the lock is not a regular file", CANTCREAT)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise BackupError(f"target {self.directory}: another run holds the lock", TEMPFAIL) from None
        self.lock_fd = fd

    def unlock(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    # Listing ----------------------------------------------------------------
    def backups(self) -> list[Backup]:
        """Complete backups, oldest first."""
        self.check()
        found = []
        for name in sorted(os.listdir(self.directory)):
            if not ID_PATTERN.match(name):
                continue
            manifest = self.read_manifest(name)
            if manifest is not None:
                found.append(Backup(name, manifest["type"], manifest.get("base"), manifest["created"],
                                    manifest))
        return found

    def read_manifest(self, backup_id: str) -> dict[str, Any] | None:
        try:
            with open(self.path(backup_id, MANIFEST), encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("id") == backup_id else None

    def get(self, backup_id: str) -> Backup:
        for backup in self.backups():
            if backup.id == backup_id:
                return backup
        raise BackupError(f"no complete backup {backup_id!r} in {self.directory}", NOINPUT)

    def chain(self, backup: Backup) -> list[Backup]:
        """The backups a restore of ``backup`` needs: its full, then itself when differential."""
        if backup.kind == FULL:
            return [backup]
        base = self.get(str(backup.base))
        return [base, backup]

    def last_full(self) -> Backup | None:
        fulls = [b for b in self.backups() if b.kind == FULL]
        return fulls[-1] if fulls else None

    # Writing and removing -----------------------------------------------------
    def staging(self, backup_id: str) -> str:
        path = self.path(STAGING + backup_id)
        try:
            os.mkdir(path, 0o700)
        except OSError as exc:
            code = CANTCREAT if is_full_disk(exc) or exc.errno in (errno.EROFS, errno.EACCES) else UNAVAILABLE
            raise BackupError(f"target {self.directory}: cannot create {path}: {exc.strerror}",
                              code) from None
        return path

    def commit(self, staging: str, manifest: dict[str, Any]) -> None:
        """Manifest last, everything fsynced, then one rename makes the backup complete."""
        try:
            fd = os.open(os.path.join(staging, MANIFEST), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(manifest, handle, indent=1, sort_keys=True)
                handle.write("\n")
            sync_tree(staging)
            os.rename(staging, self.path(manifest["id"]))
            fsync_path(self.directory, directory=True)
        except OSError as exc:
            code = CANTCREAT if is_full_disk(exc) else UNAVAILABLE
            raise BackupError(f"target {self.directory}: cannot complete the backup: {exc.strerror}",
                              code) from None

    def remove(self, backup_id: str) -> None:
        doomed = self.path(".deleting-" + backup_id)
        os.rename(self.path(backup_id), doomed)
        fsync_path(self.directory, directory=True)
        shutil.rmtree(doomed)

    def leftovers(self) -> list[str]:
        return sorted(n for n in os.listdir(self.directory) if n.startswith(LEFTOVER_PREFIXES))

    def clean_leftovers(self) -> list[str]:
        """Remove what cut runs left behind; only under the lock, so no live run's staging."""
        removed = self.leftovers()
        for name in removed:
            full = self.path(name)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
        return removed

    def expire(self, keep_fulls: int) -> list[str]:
        """Keep the newest ``keep_fulls`` fulls and their differentials; remove the rest."""
        backups = self.backups()
        kept = {b.id for b in backups if b.kind == FULL}
        kept = set(sorted(kept)[-keep_fulls:])
        doomed = [b.id for b in backups if (b.id if b.kind == FULL else b.base) not in kept]
        for backup_id in doomed:
            self.remove(backup_id)
        return doomed

    # Checking -------------------------------------------------------------------
    def verify_checksums(self, backup: Backup) -> list[str]:
        """Files whose size or sha256 differ from the manifest, or that are missing or extra."""
        top = self.path(backup.id, DATA)
        expected: dict[str, dict[str, Any]] = backup.manifest["files"]
        problems = []
        try:
            present = set(walk_files(top))
        except BackupError as exc:
            return [exc.message]
        for rel in sorted(present - set(expected)):
            problems.append(f"{backup.id}/{DATA}/{rel}: not in the manifest")
        for rel, facts in sorted(expected.items()):
            full = os.path.join(top, rel)
            if rel not in present:
                problems.append(f"{backup.id}/{DATA}/{rel}: missing")
            elif os.path.getsize(full) != facts["size"] or sha256(full) != facts["sha256"]:
                problems.append(f"{backup.id}/{DATA}/{rel}: checksum mismatch")
        return problems
