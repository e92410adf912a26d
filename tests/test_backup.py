"""openstack-ha-backup against a real MariaDB (datadir on a loop-mounted ext4) and real mariabackup.

The command runs as operators run it (``python -m dbbackup``, one process per
call); Pacemaker is asked through its real tools, on a CIB file where the
database group runs on ctl1 (``CIB_file``).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

from harness.mariadb import Site, run, write_option_file

PORT = 33079
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKUP_GRANTS = "RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR"

pytestmark = [pytest.mark.services,
              pytest.mark.skipif(os.geteuid() != 0, reason="loop devices, mount and mariadbd need root")]


class Database:
    """The server with a binary log, a backup account and a table a writer fills."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.option_file = os.path.join(site.workdir, "backup.cnf")
        self.password = ""

    def create(self) -> Database:
        with open(self.site.db.config, "a", encoding="utf-8") as handle:
            handle.write("\n[mysqld]\nlog-bin = mysql-bin\nserver-id = 1\n")
        self.site.db.start()
        self.password = password = "bk-" + os.urandom(8).hex()
        self.root_sql(f"CREATE USER 'backup'@'localhost' IDENTIFIED BY '{password}';"
                      f"GRANT {BACKUP_GRANTS} ON *.* TO 'backup'@'localhost';"
                      "CREATE TABLE ocftest.acked (id INT PRIMARY KEY AUTO_INCREMENT, v CHAR(32))")
        write_option_file(self.option_file, "backup", password)
        return self

    def root_sql(self, sql: str) -> str:
        return run(["mariadb", f"--defaults-file={self.site.db.config}", "--user=root", "--batch",
                    "--skip-column-names"], input_text=sql + ";\n")

    def ids(self) -> list[int]:
        return [int(x) for x in self.root_sql("SELECT id FROM ocftest.acked ORDER BY id").split()]


class Writer(threading.Thread):
    """Inserts rows one by one (autocommit); ``acked`` holds the ids the server acknowledged."""

    def __init__(self, db: Database) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.acked: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        conn = self.db.site.db.connect()
        with conn.cursor() as cursor:
            while not self.halt.is_set():
                cursor.execute("INSERT INTO acked (v) VALUES (%s)", (os.urandom(16).hex(),))
                self.acked.append(int(cursor.lastrowid))
        conn.close()

    def wait_rows(self, count: int, timeout: float = 60.0) -> None:
        until = time.monotonic() + timeout
        while len(self.acked) < count:
            assert time.monotonic() < until, f"writer acknowledged {len(self.acked)} rows only"
            time.sleep(0.01)

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


@pytest.fixture(scope="module")
def db() -> Iterator[Database]:
    site = Site(PORT, size_mb=200)
    try:
        site.create()
        yield Database(site).create()
    finally:
        site.cleanup()


@pytest.fixture(scope="module")
def cib() -> Iterator[str]:
    """A CIB file in which the group ``db`` (db-fs, mysql) runs on ctl1 of three nodes."""
    from lxml import etree

    with tempfile.TemporaryDirectory() as tmp:
        empty = os.path.join(tmp, "empty.xml")
        with open(empty, "w", encoding="utf-8") as handle:
            handle.write(run(["cibadmin", "--empty"]))
        tree = etree.parse(empty)
        nodes = tree.find(".//nodes")
        assert nodes is not None
        for number in (1, 2, 3):
            etree.SubElement(nodes, "node", id=str(number), uname=f"ctl{number}")
        tree.write(empty)
        run(["pcs", "-f", empty, "property", "set", "stonith-enabled=false", "no-quorum-policy=ignore"])
        for name in ("db-fs", "mysql"):
            run(["pcs", "-f", empty, "resource", "create", name, "ocf:pacemaker:Dummy", "--group", "db"])
        running = os.path.join(tmp, "running.xml")
        run(["crm_simulate", "-x", empty, "-u", "ctl1", "-u", "ctl2", "-u", "ctl3", "-S", "-O", running])
        yield running


class Command:
    """The command with one configuration file; each call is a fresh process."""

    def __init__(self, directory: str, db: Database, **tables: dict[str, object]) -> None:
        self.target = os.path.join(directory, "target")
        os.makedirs(self.target, exist_ok=True)
        self.config = os.path.join(directory, "backup.toml")
        self.env = {"PATH": os.environ["PATH"]}
        site = db.site.db
        base: dict[str, dict[str, object]] = {
            "target": {"directory": self.target},
            "database": {"option_file": db.option_file, "datadir": site.datadir, "socket": site.socket},
        }
        for table, values in tables.items():
            base.setdefault(table, {}).update(values)
        self.write(base)

    def write(self, tables: dict[str, dict[str, object]]) -> None:
        with open(self.config, "w", encoding="utf-8") as handle:
            for table, values in tables.items():
                handle.write(f"[{table}]\n")
                for key, value in values.items():
                    handle.write(f"{key} = {json.dumps(value)}\n")

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "dbbackup", "-c", self.config, *args]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, cwd=REPO, env=self.env,
                              timeout=300, check=False)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, f"{args}: {done.returncode} {done.stderr}"
        assert "Traceback" not in done.stderr
        return done.stdout

    def listed(self) -> list[dict[str, object]]:
        found = []
        for name in sorted(os.listdir(self.target)):
            if name[0].isdigit():
                with open(os.path.join(self.target, name, "manifest.json"), encoding="utf-8") as handle:
                    found.append(json.load(handle))
        return found


def fails(done: subprocess.CompletedProcess[str], code: int, phrase: str) -> None:
    assert done.returncode == code, f"{done.returncode}: {done.stdout} {done.stderr}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_full_differential_restore_brings_back_every_acknowledged_row(db: Database, tmp_path) -> None:
    cmd = Command(str(tmp_path), db)
    writer = Writer(db)
    writer.start()
    try:
        writer.wait_rows(50)
        cmd.ok("run", "--full")
        writer.wait_rows(len(writer.acked) + 100)
        before_diff = len(writer.acked)
        diff_out = cmd.ok("run", "--auto")  # a recent full exists: a differential
        after_diff = len(writer.acked)
        writer.wait_rows(after_diff + 50)
    finally:
        writer.stop()
    full, diff = cmd.listed()
    assert (full["type"], diff["type"], diff["base"]) == ("full", "diff", full["id"])
    assert "diff backup complete" in diff_out
    assert diff["from_lsn"] == full["to_lsn"] and diff["last_lsn"] > full["last_lsn"]
    assert diff["binlog"] and diff["binlog"]["file"].startswith("mysql-bin.")
    assert diff["size_bytes"] < full["size_bytes"]
    assert "checksums ok" in cmd.ok("verify", str(diff["id"]))
    for backup in (full, diff):  # the password is in the option file only, not in logs or manifests
        for name in ("mariabackup.log", "manifest.json"):
            with open(os.path.join(cmd.target, str(backup["id"]), name), encoding="utf-8") as handle:
                assert db.password not in handle.read()

    db.site.db.stop()
    datadir = db.site.db.datadir
    before = sorted(os.listdir(os.path.dirname(datadir)))
    plan = cmd.ok("restore", str(diff["id"]), "--dry-run")
    assert "dry run: nothing changed" in plan and "copy-back" in plan
    assert sorted(os.listdir(os.path.dirname(datadir))) == before
    cmd.ok("restore", str(diff["id"]))
    asides = [n for n in os.listdir(os.path.dirname(datadir)) if n.startswith("data.before-restore-")]
    assert len(asides) == 1
    db.site.db.start()
    ids = db.ids()
    # Every row acknowledged before the differential began is back, and nothing beyond its end:
    # the restored table is a gap-free prefix of what the writer was told was committed.
    assert set(writer.acked[:before_diff]) <= set(ids)
    assert ids == writer.acked[:len(ids)] and before_diff <= len(ids) <= after_diff


def test_only_the_node_running_the_group_backs_up(db: Database, cib: str, tmp_path) -> None:
    commands = []
    for node in ("ctl1", "ctl2", "ctl3"):
        cmd = Command(str(tmp_path / node), db, cluster={"group": "db", "resource": "mysql", "node": node})
        cmd.target = str(tmp_path / "shared")
        os.makedirs(cmd.target, exist_ok=True)
        cmd.write({"target": {"directory": cmd.target},
                   "database": {"option_file": db.option_file, "datadir": db.site.db.datadir,
                                "socket": db.site.db.socket},
                   "cluster": {"group": "db", "resource": "mysql", "node": node}})
        cmd.env["CIB_file"] = cib
        commands.append(cmd)
    started = [subprocess.Popen(c.argv("run"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPO, env=c.env) for c in commands]
    results = [(p.wait(300), *p.communicate()) for p in started]
    assert [rc for rc, _out, _err in results] == [0, 0, 0], results
    assert "full backup complete" in results[0][1]
    for _rc, out, _err in results[1:]:
        assert "not active here: db runs on ctl1" in out
    assert len(commands[0].listed()) == 1
    # A restore is refused where the database's filesystem is not mounted, even as a dry run.
    fails(commands[1]("restore", str(commands[0].listed()[0]["id"]), "--dry-run"), 69, "not active here")
    plan = commands[0].ok("restore", str(commands[0].listed()[0]["id"]), "--dry-run")
    assert "stop mysql through Pacemaker (target-role=Stopped" in plan


def test_a_run_cut_by_a_crash_is_never_listed_and_the_next_run_continues_the_chain(db: Database,
                                                                                  tmp_path) -> None:
    cmd = Command(str(tmp_path), db)
    cmd.ok("run", "--full")
    first = cmd.listed()[0]
    cut = subprocess.Popen(cmd.argv("run", "--full"), cwd=REPO, env=cmd.env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    until = time.monotonic() + 60
    while not any(n.startswith(".staging-") for n in os.listdir(cmd.target)):
        assert cut.poll() is None and time.monotonic() < until, "no staging directory seen"
        time.sleep(0.005)
    os.killpg(cut.pid, signal.SIGKILL)
    assert cut.wait(30) == -signal.SIGKILL
    assert [b["id"] for b in cmd.listed()] == [first["id"]]
    assert "no complete backup" not in cmd.ok("list") and cmd.ok("list").count("\n") == 1
    out = cmd.ok("run", "--differential")
    assert "removed leftover .staging-" in out
    assert cmd.listed()[-1]["base"] == first["id"]
    assert not [n for n in os.listdir(cmd.target) if n.startswith(".staging-")]


def test_retention_keeps_n_fulls_and_their_differentials(db: Database, tmp_path) -> None:
    cmd = Command(str(tmp_path), db, retention={"fulls": 1})
    cmd.ok("run", "--full")
    cmd.ok("run", "--differential")
    out = cmd.ok("run", "--full")
    assert out.count("expired ") == 2
    assert [b["type"] for b in cmd.listed()] == ["full"]


def test_a_corrupted_file_is_found_by_verify_and_refused_by_restore(db: Database, tmp_path) -> None:
    cmd = Command(str(tmp_path), db)
    cmd.ok("run", "--full")
    backup = cmd.listed()[0]
    victim = os.path.join(cmd.target, str(backup["id"]), "data", "ibdata1")
    with open(victim, "r+b") as handle:
        handle.seek(4096)
        byte = handle.read(1)
        handle.seek(4096)
        handle.write(bytes([byte[0] ^ 0xFF]))
    fails(cmd("verify", str(backup["id"])), 65, "ibdata1: checksum mismatch")
    fails(cmd("verify", "--all"), 65, "ibdata1: checksum mismatch")
    datadir_before = sorted(os.listdir(db.site.db.datadir))
    fails(cmd("restore", str(backup["id"]), "--dry-run"), 65, "damaged")
    fails(cmd("restore", str(backup["id"])), 65, "damaged")
    assert sorted(os.listdir(db.site.db.datadir)) == datadir_before


@pytest.mark.parametrize(("tables", "code", "phrase"), [
    ({"retention": {"fulls": 0}}, 78, "retention.fulls: must be greater than 0"),
    ({"retention": {"fulls": "two"}}, 78, "retention.fulls: must be a int"),
    ({"target": {"directori": "/x"}}, 78, "target.directori: unknown key"),
    ({"database": {"datadir": "relative/path"}}, 78, "database.datadir: must be an absolute path"),
])
def test_bad_configuration_is_a_clear_error_naming_the_key(db: Database, tmp_path, tables, code,
                                                           phrase) -> None:
    cmd = Command(str(tmp_path), db, **tables)
    fails(cmd("run", "--full"), code, phrase)
    assert cmd.listed() == []


def test_missing_configuration_file(db: Database, tmp_path) -> None:
    cmd = Command(str(tmp_path), db)
    os.unlink(cmd.config)
    fails(cmd("status"), 66, "no such configuration file")


def test_unreachable_target(db: Database, tmp_path) -> None:
    cmd = Command(str(tmp_path), db, target={"directory": str(tmp_path / "not-mounted")})
    fails(cmd("run", "--full"), 69, "unreachable")
    fails(cmd("status"), 69, "unreachable")


def test_full_target_disk(db: Database, tmp_path) -> None:
    cmd = Command(str(tmp_path), db)
    cmd.ok("run", "--full")
    kept = cmd.listed()
    full_fs = tmp_path / "small"
    full_fs.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(full_fs)])
    try:
        small = Command(str(tmp_path / "cfg"), db, target={"directory": str(full_fs)})
        fails(small("run", "--full"), 73, "the target is full")
        assert small.listed() == [] and os.listdir(full_fs) == [".lock"]
        assert small("status").returncode == 1
    finally:
        run(["umount", str(full_fs)])
    assert cmd.listed() == kept


def test_wrong_credentials_and_an_open_option_file(db: Database, tmp_path) -> None:
    wrong = str(tmp_path / "wrong.cnf")
    write_option_file(wrong, "backup", "not-the-password")
    cmd = Command(str(tmp_path), db, database={"option_file": wrong})
    done = cmd("run", "--full")
    fails(done, 78, "refused the credentials")
    assert "not-the-password" not in done.stderr + done.stdout
    assert cmd.listed() == [] and not [n for n in os.listdir(cmd.target) if n.startswith(".staging-")]
    os.chmod(wrong, 0o644)
    fails(cmd("run", "--full"), 78, "must be owned by root and mode 0600")


def test_a_second_run_on_the_same_target_waits_its_turn(db: Database, tmp_path) -> None:
    cmd = Command(str(tmp_path), db)
    fd = os.open(os.path.join(cmd.target, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fails(cmd("run", "--full"), 75, "another run holds the lock")
    finally:
        os.close(fd)
    assert cmd.listed() == []


def test_status_age_threshold(db: Database, tmp_path) -> None:
    cmd = Command(str(tmp_path), db)
    done = cmd("status")
    assert done.returncode == 1 and "no complete backup" in done.stdout
    cmd.ok("run")
    assert "age 0h00m" in cmd.ok("status", "--max-age", "3600")
    done = cmd("status", "--max-age", "0")
    assert done.returncode == 1 and "too old" in done.stdout


def test_usage_errors_are_64(db: Database, tmp_path) -> None:
    cmd = Command(str(tmp_path), db)
    assert cmd("run", "--full", "--differential").returncode == 64
    fails(cmd("verify"), 64, "give a backup id or --all")
    fails(cmd("restore", "20990101T000000.000Z-full", "--dry-run"), 66, "no complete backup")


def test_install_puts_the_launcher_and_systemd_units_in_place(tmp_path) -> None:
    stage = tmp_path / "stage"
    run([sys.executable, os.path.join(REPO, "tools", "install.py"), "install", "--destdir", str(stage)])
    assert os.access(stage / "usr/local/bin/openstack-ha-backup", os.X_OK)
    units = stage / "usr/local/lib/systemd/system"
    service = (units / "openstack-ha-backup.service").read_text(encoding="utf-8")
    assert "ExecStart=/usr/local/bin/openstack-ha-backup run --auto" in service
    broken = tmp_path / "openstack-ha-backup-broken.service"
    broken.write_text(service.replace("Type=oneshot", "Type=oneshoot"), encoding="utf-8")

    def complaints(*paths: str) -> list[str]:
        done = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True,
                              timeout=60, check=False)
        return [line for line in done.stderr.splitlines() if "openstack-ha-backup" in line]

    assert complaints(str(broken)), "systemd-analyze no longer reports a broken unit"  # negative control
    assert complaints(*(str(units / f"openstack-ha-backup.{kind}") for kind in ("service", "timer"))) == []
    run([sys.executable, os.path.join(REPO, "tools", "install.py"), "uninstall", "--destdir", str(stage)])
    assert not (units / "openstack-ha-backup.timer").exists()
    assert not (stage / "usr/local/bin/openstack-ha-backup").exists()
