"""openstack-ha-backup against mariabackup alone, on one MariaDB filled to BACKUP_BENCH_MB (default 1024).

* full backup: ``openstack-ha-backup run --full`` (mariabackup, then sha256 of
  every file, fsync, rename) against ``mariabackup --backup`` into a fresh
  directory, alternating;
* differential after an UPDATE of 1 % of the rows: its size and time against the full;
* client write throughput (single-row autocommit INSERTs) during a full backup against without;
* restore of full + differential (prepare in scratch, copy-back, server stopped).

The datadir is on a loop-mounted ext4 (``harness.mariadb.Site``), the target a
directory on the root filesystem, as a local backup disk would be.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from bench.core import Bench, alternate, ratio, time_once

PORT = 33081
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALLED = "/usr/local/bin/openstack-ha-backup"
MARIABACKUP = "/usr/bin/mariabackup"
MAX_ROUNDS = 3


def sql(site, text: str, timeout: float = 3600) -> str:
    from harness.mariadb import run

    return run(["mariadb", f"--defaults-file={site.db.config}", "--user=root", "--batch",
                "--skip-column-names"], input_text=text + ";\n", timeout=timeout)


def fill(site, megabytes: int) -> int:
    """A table of ~``megabytes`` MiB by doubling: a few large statements, not a million round trips."""
    sql(site, "CREATE TABLE ocftest.bulk (id INT PRIMARY KEY AUTO_INCREMENT, pad VARCHAR(250)); "
              "CREATE TABLE ocftest.w (id INT PRIMARY KEY AUTO_INCREMENT, v INT)")
    sql(site, "INSERT INTO ocftest.bulk (pad) VALUES (REPEAT('x', 250))")
    table_file = os.path.join(site.db.datadir, "ocftest", "bulk.ibd")
    rows = 1
    while os.path.getsize(table_file) < megabytes * 1024 * 1024:
        sql(site, "INSERT INTO ocftest.bulk (pad) SELECT REPEAT(MD5(RAND()), 7) FROM ocftest.bulk")
        rows *= 2
    return rows


class Writer(threading.Thread):
    def __init__(self, site) -> None:
        super().__init__(daemon=True)
        self.site = site
        self.count = 0
        self.halt = threading.Event()

    def run(self) -> None:
        conn = self.site.db.connect()
        with conn.cursor() as cursor:
            while not self.halt.is_set():
                cursor.execute("INSERT INTO w (v) VALUES (1)")
                self.count += 1
        conn.close()


def throughput(site, seconds: float | None = None, during: list[str] | None = None) -> tuple[float, float]:
    """(rows/s, elapsed): while ``during`` runs, or for ``seconds``."""
    writer = Writer(site)
    writer.start()
    time.sleep(0.5)  # past the connection setup
    start_count, start = writer.count, time.perf_counter()
    if during:
        subprocess.run(during, check=True, capture_output=True, cwd=REPO)
    else:
        time.sleep(seconds or 5.0)
    elapsed = time.perf_counter() - start
    rows = writer.count - start_count
    writer.halt.set()
    writer.join(30)
    return rows / elapsed, elapsed


def run(bench: Bench) -> None:
    if os.geteuid() != 0:
        print("backup benchmark skipped: loop devices and mariadbd need root\n")
        return
    from harness.mariadb import Site, write_option_file

    megabytes = int(os.environ.get("BACKUP_BENCH_MB", "1024"))
    site = Site(port=PORT, size_mb=megabytes * 6 + 400)  # data, binary log, the restore and its aside
    work = tempfile.mkdtemp(prefix="bench-backup-", dir="/var/tmp")
    try:
        site.create()
        with open(site.db.config, "a", encoding="utf-8") as handle:
            # the server's own temporary directory: INSERT ... SELECT of the filling goes through it
            handle.write("\n[mysqld]\nlog-bin = mysql-bin\nserver-id = 1\ninnodb_buffer_pool_size = 256M\n"
                         f"tmpdir = {site.db.rundir}\n")
        site.db.start()
        password = "bk-" + os.urandom(8).hex()
        sql(site, f"CREATE USER 'backup'@'localhost' IDENTIFIED BY '{password}';"
                  "GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO 'backup'@'localhost';"
                  "GRANT ALL ON ocftest.* TO 'writer'@'localhost'")
        option_file = os.path.join(work, "backup.cnf")
        write_option_file(option_file, "backup", password)
        rows = fill(site, megabytes)
        measure(bench, site, work, option_file, rows)
    finally:
        site.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def measure(bench: Bench, site, work: str, option_file: str, rows: int) -> None:
    target = os.path.join(work, "target")
    os.mkdir(target, 0o700)
    config = os.path.join(work, "backup.toml")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write(f'[target]\ndirectory = "{target}"\n[retention]\nfulls = 1000\n'
                     f'[database]\noption_file = "{option_file}"\ndatadir = "{site.db.datadir}"\n'
                     f'socket = "{site.db.socket}"\n')
    command = [INSTALLED] if os.access(INSTALLED, os.X_OK) else [sys.executable, "-m", "dbbackup"]
    ours = [*command, "-c", config]
    alone_dir = os.path.join(work, "alone")
    alone = [MARIABACKUP, f"--defaults-extra-file={option_file}", "--backup", f"--target-dir={alone_dir}",
             f"--socket={site.db.socket}", f"--datadir={site.db.datadir}"]

    def ours_full() -> float:
        for name in os.listdir(target):
            shutil.rmtree(os.path.join(target, name), ignore_errors=True)
        return time_once([*ours, "run", "--full"], expect=(0,))

    def alone_full() -> float:
        shutil.rmtree(alone_dir, ignore_errors=True)
        return time_once(alone, expect=(0,))

    rounds = min(bench.rounds, MAX_ROUNDS)
    def synced_full() -> float:
        return alone_full() + time_once(["sync", "-f", alone_dir], expect=(0,))

    full = alternate({"ours": ours_full, "alone": alone_full, "synced": synced_full}, rounds)
    shutil.rmtree(alone_dir, ignore_errors=True)
    full_size = dir_size(target)
    sql(site, "UPDATE ocftest.bulk SET pad = MD5(RAND()) WHERE id % 100 = 0")
    diff_time = time_once([*ours, "run", "--differential"], expect=(0,))
    diff_id = sorted(n for n in os.listdir(target) if n.endswith("-diff"))[-1]
    diff_size = dir_size(os.path.join(target, diff_id))
    idle_rate, _ = throughput(site, seconds=max(full["ours"], 3.0))
    # as the systemd unit runs it: Nice=10, best-effort I/O class, lowest priority
    busy_rate, busy_time = throughput(site, during=["nice", "-n", "10", "ionice", "-c2", "-n7", *ours,
                                                    "run", "--full"])
    # restore the chain of the differential (its full is the first one, kept by retention)
    site.db.stop()
    restore = time_once([*ours, "restore", diff_id], expect=(0,))
    site.db.start()
    restored = int(sql(site, "SELECT COUNT(*) FROM ocftest.bulk").strip())
    if restored != rows:
        raise RuntimeError(f"restored {restored} rows of {rows}")
    title = (f"openstack-ha-backup, a {full_size / 2**20:.0f} MiB full backup ({rows} rows; seconds, "
             f"medians of {rounds})")
    bench.table(title,
                ["measure", "ours", "reference", "ratio"], [
                    ["full backup: ours vs mariabackup alone", f"{full['ours']:.2f}", f"{full['alone']:.2f}",
                     ratio(full["ours"], full["alone"])],
                    ["full backup: ours vs mariabackup then sync -f (data on disk)", f"{full['ours']:.2f}",
                     f"{full['synced']:.2f}", ratio(full["ours"], full["synced"])],
                    ["differential after 1 % of rows changed vs the full: time", f"{diff_time:.2f}",
                     f"{full['ours']:.2f}", ratio(diff_time, full["ours"])],
                    ["differential vs full: size (MiB)", f"{diff_size / 2**20:.1f}",
                     f"{full_size / 2**20:.1f}", ratio(diff_size, full_size)],
                    [f"client writes during a full backup vs without (rows/s, {busy_time:.1f} s)",
                     f"{busy_rate:.0f}", f"{idle_rate:.0f}", ratio(busy_rate, idle_rate)],
                    ["restore full + differential (prepare, copy-back)", f"{restore:.2f}", "", ""],
                ])


def dir_size(top: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _dirs, files in os.walk(top)
               for name in files)
