"""The operations behind the subcommands: run, list/status, verify, restore.

Each returns the lines to print; errors are ``BackupError`` with their exit code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from dbbackup import cluster
from dbbackup.config import Config
from dbbackup.errors import DATAERR, GENERIC, NOINPUT, UNAVAILABLE, BackupError
from dbbackup.mariabackup import Runner, check_option_file, read_binlog, read_checkpoints
from dbbackup.store import DATA, DIFF, FULL, Backup, Target, describe_files, new_id

FULL_MODE, DIFF_MODE, AUTO_MODE = "full", "differential", "auto"
LOG_NAME = "mariabackup.log"


@dataclass
class Outcome:
    lines: list[str]
    code: int = 0


def where_active(cfg: Config) -> tuple[bool, str]:
    """(acts here?, why): the database group's node against this node's name."""
    if cfg.cluster is None:
        return True, "standalone"
    here = cfg.cluster.node or cluster.local_node()
    nodes = cluster.locate(cfg.cluster.group)
    if here in nodes:
        return True, f"{cfg.cluster.group} is active on {here}"
    where = ", ".join(nodes) if nodes else "no node"
    return False, f"not active here: {cfg.cluster.group} runs on {where}, this is {here}"


def runner(cfg: Config) -> Runner:
    return Runner(cfg.option_file, cfg.socket, cfg.datadir)


# run ----------------------------------------------------------------------------


def choose_kind(cfg: Config, mode: str, last_full: Backup | None, now: float) -> str:
    if mode == FULL_MODE:
        return FULL
    if last_full is None:
        if mode == DIFF_MODE:
            raise BackupError("no complete full backup to take a differential against: run --full", NOINPUT)
        return FULL
    if mode == AUTO_MODE and now - last_full.created > cfg.full_every_days * 86400:
        return FULL
    return DIFF


def run(cfg: Config, mode: str) -> Outcome:
    acts, why = where_active(cfg)
    if not acts:
        return Outcome([why])
    check_option_file(cfg.option_file)
    target = Target(cfg.target)
    target.lock()
    try:
        removed = target.clean_leftovers()
        lines = [f"removed leftover {name}" for name in removed]
        now = time.time()
        last_full = target.last_full()
        kind = choose_kind(cfg, mode, last_full, now)
        backup = take(cfg, target, kind, last_full if kind == DIFF else None)
        lines.append(f"{backup['id']}: {kind} backup complete, {backup['size_bytes']} bytes"
                     + (f", base {backup['base']}" if backup["base"] else ""))
        if kind == FULL:
            lines += [f"expired {old}" for old in target.expire(cfg.fulls)]
        return Outcome(lines)
    finally:
        target.unlock()


def take(cfg: Config, target: Target, kind: str, base: Backup | None) -> dict[str, Any]:
    started = time.time()
    backup_id = new_id(kind, started)
    staging = target.staging(backup_id)
    data = os.path.join(staging, DATA)
    try:
        runner(cfg).backup(data, os.path.join(staging, LOG_NAME),
                           target.path(base.id, DATA) if base else None)
        manifest = describe(backup_id, kind, base, data, started)
        target.commit(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def describe(backup_id: str, kind: str, base: Backup | None, data: str, started: float) -> dict[str, Any]:
    files = describe_files(data)
    checkpoints = read_checkpoints(data)
    return {
        "id": backup_id, "type": kind, "base": base.id if base else None, "created": started,
        "finished": time.time(), "from_lsn": int(checkpoints.get("from_lsn", "0")),
        "to_lsn": int(checkpoints.get("to_lsn", "0")), "last_lsn": int(checkpoints.get("last_lsn", "0")),
        "binlog": read_binlog(data),
        "size_bytes": sum(f["size"] for f in files.values()), "files": files,
    }


# list / status ------------------------------------------------------------------


def age_text(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"


def listing(cfg: Config) -> Outcome:
    now = time.time()
    lines = []
    for b in Target(cfg.target).backups():
        binlog = b.manifest.get("binlog") or {}
        position = f" binlog {binlog['file']}:{binlog['position']}" if binlog else ""
        lines.append(f"{b.id}  {b.kind:4}  base={b.base or '-'}  {b.size} bytes  "
                     f"lsn {b.manifest['from_lsn']}..{b.manifest['to_lsn']}{position}  "
                     f"age {age_text(now - b.created)}")
    return Outcome(lines or ["no complete backup"])


def status(cfg: Config, max_age_s: float | None) -> Outcome:
    limit = cfg.max_age_hours * 3600 if max_age_s is None else max_age_s
    backups = Target(cfg.target).backups()
    if not backups:
        return Outcome([f"no complete backup in {cfg.target}"], GENERIC)
    last = backups[-1]
    age = time.time() - last.created
    lines = [f"last good backup {last.id} ({last.kind}), age {age_text(age)} ({int(age)} s), "
             f"{len(backups)} backup(s), {sum(b.size for b in backups)} bytes"]
    if cfg.cluster is not None:
        try:
            cluster.publish_age(cfg.cluster.node or cluster.local_node(), int(age))
        except BackupError as exc:
            lines.append(f"warning: {exc.message}")
    if age > limit:
        lines.append(f"too old: more than {int(limit)} s")
        return Outcome(lines, GENERIC)
    return Outcome(lines)


# verify / restore ----------------------------------------------------------------


def checked_chain(target: Target, backup: Backup) -> list[Backup]:
    chain = target.chain(backup)
    problems = [p for b in chain for p in target.verify_checksums(b)]
    if problems:
        raise BackupError(f"{backup.id}: damaged: " + "; ".join(problems[:5]), DATAERR)
    return chain


def prepare(cfg: Config, target: Target, chain: list[Backup], scratch: str) -> str:
    """Copy the chain into ``scratch``, prepare the full, apply the differential: a restorable datadir.

    The differential is copied too: preparing with --incremental-dir consumes its .delta files.
    """
    prepared = os.path.join(scratch, "prepared")
    log = os.path.join(scratch, LOG_NAME)
    shutil.copytree(target.path(chain[0].id, DATA), prepared, symlinks=True)
    work = Runner(None, cfg.socket, cfg.datadir)
    try:
        work.prepare(prepared, log)
        for diff in chain[1:]:
            delta = os.path.join(scratch, diff.id)
            shutil.copytree(target.path(diff.id, DATA), delta, symlinks=True)
            work.prepare(prepared, log, delta)
    except BackupError as exc:
        raise BackupError(f"{chain[-1].id}: {exc.message}", DATAERR) from None
    return prepared


def scratch_dir(cfg: Config, target: Target) -> str:
    return tempfile.mkdtemp(prefix=".scratch-", dir=cfg.scratch or target.directory)


def verify(cfg: Config, backup_id: str | None) -> Outcome:
    target = Target(cfg.target)
    backups = target.backups()
    if backup_id is not None:
        heads = [target.get(backup_id)]
    else:  # every backup's files; each full's newest chain prepared
        heads = [max((b for b in backups if f.id in (b.id, b.base)), key=lambda b: b.id)
                 for f in backups if f.kind == FULL]
        damaged = [p for b in backups for p in target.verify_checksums(b)]
        if damaged:
            raise BackupError("damaged: " + "; ".join(damaged[:5]), DATAERR)
    lines = []
    for head in heads:
        chain = checked_chain(target, head)
        scratch = scratch_dir(cfg, target)
        try:
            prepare(cfg, target, chain, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        lines.append(f"{head.id}: checksums ok, chain {' + '.join(b.id for b in chain)} prepares")
    return Outcome(lines or ["no complete backup"])


def restore_plan(cfg: Config, chain: list[Backup], aside: str) -> list[str]:
    steps = [f"restore {chain[-1].id}: chain {' + '.join(b.id for b in chain)} (checksums ok)",
             f"prepare the chain in a scratch directory under {cfg.scratch or cfg.target}"]
    if cfg.cluster:
        steps.append(f"stop {cfg.cluster.resource} through Pacemaker (target-role=Stopped, crm_resource "
                     f"--wait); members of {cfg.cluster.group} before it (the filesystem) keep running")
    else:
        steps.append("the server must already be stopped (no cluster configured)")
    steps += [f"move {cfg.datadir} aside to {aside} (kept, never deleted)",
              f"mariabackup --copy-back into {cfg.datadir}, owner {cfg.owner}"]
    if cfg.cluster:
        steps.append(f"start {cfg.cluster.resource} through Pacemaker (target-role=Started, wait)")
    return [f"{n}. {s}" for n, s in enumerate(steps, 1)]


def server_answers(socket_path: str) -> bool:
    """True when a MySQL server sends its handshake on ``socket_path``."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(socket_path)
            return len(sock.recv(5)) == 5
        except OSError:
            return False


def chown_tree(top: str, owner: str) -> None:
    """Hand the files copy-back just created (as root, in a directory we made) to the server's user."""
    import pwd

    entry = pwd.getpwnam(owner)
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.lchown(top, entry.pw_uid, entry.pw_gid)


def stop_database(cfg: Config) -> None:
    if cfg.cluster is None:
        if server_answers(cfg.socket):
            raise BackupError(f"the server answers on {cfg.socket}: stop it before a restore", UNAVAILABLE)
        return
    cluster.set_target_role(cfg.cluster.resource, "Stopped")
    cluster.wait_settled()
    if cluster.locate(cfg.cluster.resource):
        raise BackupError(f"{cfg.cluster.resource} still runs after target-role=Stopped", UNAVAILABLE)


def start_database(cfg: Config) -> str:
    if cfg.cluster is None:
        return "start the server now"
    cluster.set_target_role(cfg.cluster.resource, "Started")
    cluster.wait_settled()
    nodes = cluster.locate(cfg.cluster.resource)
    if not nodes:
        raise BackupError(f"{cfg.cluster.resource} did not start again after the restore", UNAVAILABLE)
    return f"{cfg.cluster.resource} runs again on {', '.join(nodes)}"


def restore(cfg: Config, backup_id: str, dry_run: bool) -> Outcome:
    acts, why = where_active(cfg)
    if not acts:
        raise BackupError(f"restore runs where the database's filesystem is mounted: {why}", UNAVAILABLE)
    target = Target(cfg.target)
    chain = checked_chain(target, target.get(backup_id))
    aside = f"{cfg.datadir}.before-restore-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    plan = restore_plan(cfg, chain, aside)
    if dry_run:
        return Outcome([*plan, "dry run: nothing changed"])
    if not os.path.isdir(cfg.datadir):
        raise BackupError(f"database.datadir: {cfg.datadir}: not a directory (filesystem not mounted?)",
                          UNAVAILABLE)
    scratch = scratch_dir(cfg, target)
    try:
        prepared = prepare(cfg, target, chain, scratch)
        stop_database(cfg)
        os.rename(cfg.datadir, aside)
        try:
            os.mkdir(cfg.datadir, 0o750)
            runner(cfg).copy_back(prepared, os.path.join(scratch, LOG_NAME))
            chown_tree(cfg.datadir, cfg.owner)
        except (BackupError, OSError) as exc:
            message = exc.message if isinstance(exc, BackupError) else f"{cfg.datadir}: {exc.strerror}"
            raise BackupError(f"{message}; the database stays stopped, its previous datadir is in {aside}",
                              getattr(exc, "code", GENERIC)) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Outcome([*plan, f"restored {backup_id}; the previous datadir is kept in {aside}",
                    start_database(cfg)])
