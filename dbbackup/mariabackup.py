"""Running mariabackup: credentials only through the root-only option file, failures classified."""

from __future__ import annotations

import os
import stat
import subprocess

from dbbackup.errors import CANTCREAT, CONFIG, GENERIC, UNAVAILABLE, BackupError

BINARY = "/usr/bin/mariabackup"
CHILD_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
# Phrases of mariabackup's own log, first match wins: (phrase, exit code, what the operator reads).
FAILURES = (
    ("Access denied", CONFIG, "the database refused the credentials of {option_file}"),
    ("No space left", CANTCREAT, "the target is full"),
    ("errno 28", CANTCREAT, "the target is full"),
    ("Can't connect", UNAVAILABLE, "the database does not answer on {socket}"),
    ("Read-only file system", CANTCREAT, "the target is read-only"),
)


def check_option_file(path: str) -> None:
    """The option file holds the password: a regular file of root (or us), readable by its owner only."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise BackupError(f"database.option_file: {path}: {exc.strerror}", CONFIG) from None
    if not stat.S_ISREG(info.st_mode):
        raise BackupError(f"database.option_file: {path}: not a regular file", CONFIG)
    if info.st_uid not in (0, os.geteuid()) or info.st_mode & 0o077:
        raise BackupError(f"database.option_file: {path}: must be owned by root and mode 0600", CONFIG)


class Runner:
    def __init__(self, option_file: str | None, socket: str, datadir: str) -> None:
        self.option_file = option_file
        self.socket = socket
        self.datadir = datadir

    def argv(self, *args: str) -> list[str]:
        # --defaults-extra-file must come first; no password ever reaches this list.
        head = [BINARY, f"--defaults-extra-file={self.option_file}"] if self.option_file else [BINARY]
        return [*head, *args]

    def run(self, args: list[str], log_path: str, what: str) -> None:
        try:
            with open(log_path, "ab") as log:
                done = subprocess.run(self.argv(*args), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      env=CHILD_ENV, check=False)
        except OSError as exc:
            raise BackupError(f"{what}: cannot run {BINARY}: {exc.strerror}", UNAVAILABLE) from None
        if done.returncode != 0:
            raise self.failure(log_path, what, done.returncode)

    def failure(self, log_path: str, what: str, rc: int) -> BackupError:
        try:
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()[-20000:]
        except OSError:
            text = ""
        for phrase, code, message in FAILURES:
            if phrase in text:
                return BackupError(f"{what}: " + message.format(option_file=self.option_file,
                                                                socket=self.socket), code)
        return BackupError(f"{what}: mariabackup exited {rc} (its log: {log_path})", GENERIC)

    def backup(self, target_dir: str, log_path: str, basedir: str | None = None) -> None:
        args = ["--backup", f"--target-dir={target_dir}", f"--socket={self.socket}",
                f"--datadir={self.datadir}"]
        if basedir:
            args.append(f"--incremental-basedir={basedir}")
        self.run(args, log_path, "backup")

    def prepare(self, target_dir: str, log_path: str, incremental_dir: str | None = None) -> None:
        args = ["--prepare", f"--target-dir={target_dir}"]
        if incremental_dir:
            args.append(f"--incremental-dir={incremental_dir}")
        self.run(args, log_path, "prepare")

    def copy_back(self, target_dir: str, log_path: str) -> None:
        self.run(["--copy-back", f"--target-dir={target_dir}", f"--datadir={self.datadir}"], log_path,
                 "copy-back")


def read_checkpoints(data_dir: str) -> dict[str, str]:
    """``xtrabackup_checkpoints``: backup_type, from_lsn, to_lsn, last_lsn."""
    facts: dict[str, str] = {}
    with open(os.path.join(data_dir, "xtrabackup_checkpoints"), encoding="utf-8") as handle:
        for line in handle:
            key, sep, value = line.partition("=")
            if sep:
                facts[key.strip()] = value.strip()
    return facts


def read_binlog(data_dir: str) -> dict[str, str] | None:
    """``xtrabackup_binlog_info``: file, position and GTID at the backup's consistent point."""
    try:
        with open(os.path.join(data_dir, "xtrabackup_binlog_info"), encoding="utf-8") as handle:
            fields = handle.read().split()
    except FileNotFoundError:
        return None
    if len(fields) < 2:
        return None
    return {"file": fields[0], "position": fields[1], "gtid": fields[2] if len(fields) > 2 else ""}
