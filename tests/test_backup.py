"""openstack-ha-backup against a real MariaDB (datadir on a loop-mounted ext4) and real mariabackup.

The command runs as operators run it (``python -m dbbackup``, one process per
call); Pacemaker is asked through its real tools, on a CIB file where the
database group runs on ctl1 (``CIB_file``).  The power-cut tests put the target on a volatile
directory (``harness.drbd_double.volatile``) of a node whose power is cut, then read it elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import re
import shutil
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


# Power cuts: the target on a disk that keeps only what was flushed ------------------------------

NODE_PRELUDE = """
loop=$(/usr/bin/python3 -I -S "$1" mount "$2" "$3") || exit 1
echo "loop $loop"
target=$3
shift 3
"""
IMAGE_MB = 256


class Node:
    """A machine whose backup target is a volatile directory (``harness.drbd_double.volatile``).

    The node is a PID and mount namespace running ``script`` (a shell snippet run after the mount,
    with ``$target`` the volatile directory and ``$@`` the arguments); what it prints comes back
    line by line.  Killing its PID 1 is a power cut: the namespace's processes die, the volatile
    disk with them and every write it was not asked to flush."""

    def __init__(self, image: str, directory: str, script: str, *args: str) -> None:
        from harness.drbd_double import volatile

        self.image, self.directory = image, directory
        self.loop = ""
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--mount", "--propagation", "private", "--",
             "/bin/sh", "-c", NODE_PRELUDE + script + '\nread -r _\n', "sh", volatile.__file__, image,
             directory, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
            env={"PATH": os.environ["PATH"]})
        threading.Thread(target=self.read, daemon=True).start()
        try:
            self.loop = self.expect("loop ").split()[1]
        except BaseException:
            self.close()
            raise

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = 60.0) -> str:
        """The first line starting with ``prefix``; the lines before it are dropped."""
        until = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the node did not say {prefix!r} within {timeout} s") from None
            assert line is not None, f"the node ended before saying {prefix!r}"
            if line.startswith(prefix):
                return line

    def said(self) -> list[str]:
        """What the node printed and nobody expected yet."""
        lines = []
        while (line := self.lines.get(timeout=30)) is not None:
            lines.append(line)
        return lines

    def pid1(self) -> int:
        with open(f"/proc/{self.process.pid}/task/{self.process.pid}/children", encoding="ascii") as handle:
            return int(handle.read().split()[0])

    def sees(self, *parts: str) -> str:
        """A path inside the node's volatile directory, as the node sees it."""
        return os.path.join(f"/proc/{self.pid1()}/root", self.directory.lstrip("/"), *parts)

    def cut(self) -> None:
        """The power cut: no sync, no unmount."""
        assert self.process.poll() is None, "the node is already down"
        os.kill(self.pid1(), signal.SIGKILL)
        self.process.wait(30)
        self.close()

    def close(self) -> None:
        """Down (killing its PID 1 ends every process of the node), and its loop device detached."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError, IndexError, ValueError):
                os.kill(self.pid1(), signal.SIGKILL)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.loop:
            subprocess.run(["losetup", "--detach", self.loop], capture_output=True, check=False)
            self.loop = ""


def volatile_disks_serving(image: str) -> list[int]:
    """Live volatile disk processes over ``image``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and any(a.endswith(b"volatile_disk.py") for a in argv) and image.encode() in argv:
            found.append(int(pid))
    return found


def new_image(path: str) -> str:
    with open(path, "wb") as handle:
        handle.truncate(IMAGE_MB << 20)
    run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", path])
    return path


@contextlib.contextmanager
def mounted_after_the_cut(image: str, directory: str) -> Iterator[str]:
    """The image mounted on this (surviving) machine: the journal replays, then what was durable."""
    assert volatile_disks_serving(image) == [], "the volatile disk outlived its node"
    device = run(["losetup", "--find", "--show", image]).strip()
    try:
        run(["mount", "-t", "ext4", device, directory])
        try:
            yield directory
        finally:
            run(["umount", directory])
    finally:
        subprocess.run(["losetup", "--detach", device], capture_output=True, check=False)


def volatile_target(db: Database, tmp_path) -> tuple[Command, str]:
    """A command whose target is ``tmp_path/vol`` (the volatile directory's mountpoint) and its image."""
    cmd = Command(str(tmp_path), db)
    cmd.target = str(tmp_path / "vol")
    os.makedirs(cmd.target)
    cmd.write({"target": {"directory": cmd.target},
               "database": {"option_file": db.option_file, "datadir": db.site.db.datadir,
                            "socket": db.site.db.socket}})
    return cmd, new_image(str(tmp_path / "vol.img"))


def insert_row(db: Database) -> int:
    """A committed row's id (autocommit; the server syncs its redo log at each commit)."""
    return int(db.root_sql("INSERT INTO ocftest.acked (v) VALUES ('marker'); SELECT LAST_INSERT_ID()"))


def node_output(cmd: Command) -> str:
    with open(cmd.target + ".out", encoding="utf-8") as handle:
        return handle.read()


def completed(out: str) -> str:
    """The id a run reported complete."""
    found = re.search(r"^(\S+): full backup complete", out, re.MULTILINE)
    assert found, out
    return found.group(1)


def listed_ids(cmd: Command) -> list[str]:
    """The ids ``list`` shows complete (read by the tool: a damaged manifest is not listed)."""
    out = cmd.ok("list")
    return [] if out.strip() == "no complete backup" else [line.split()[0] for line in out.splitlines()]


RUN_THEN_WAIT = """
"$@" >"$target.out" 2>&1
echo "exited $?"
echo unflushed > "$target/written-after-the-run"
echo "wrote"
"""


def test_a_backup_reported_complete_survives_a_power_cut_of_the_machine_that_wrote_it(db: Database,
                                                                                     tmp_path) -> None:
    cmd, image = volatile_target(db, tmp_path)
    before = insert_row(db)
    node = Node(image, cmd.target, RUN_THEN_WAIT, *cmd.argv("run", "--full"))
    try:
        exited = node.expect("exited ", timeout=120)
        node.expect("wrote")
        node.cut()
    finally:
        node.close()
    assert exited == "exited 0", node_output(cmd)
    backup_id = completed(node_output(cmd))
    after = insert_row(db)
    with mounted_after_the_cut(image, cmd.target):
        names = sorted(os.listdir(cmd.target))
        assert "written-after-the-run" not in names  # the cut did lose what was not flushed
        assert listed_ids(cmd) == [backup_id], names
        assert f"{backup_id}: checksums ok" in cmd.ok("verify", backup_id)
        db.site.db.stop()
        parent = os.path.dirname(db.site.db.datadir)
        kept = set(os.listdir(parent))
        try:
            cmd.ok("restore", backup_id)
        finally:
            db.site.db.start()
            for aside in set(os.listdir(parent)) - kept:  # the datadir the restore moved aside
                shutil.rmtree(os.path.join(parent, aside))
        ids = db.ids()
        assert before in ids and after not in ids


COPY_THEN_WAIT = """
cp -a "$1" "$target/.staging-$2" && mv "$target/.staging-$2" "$target/$2" \\
    && if [ "$3" = sync ]; then sync -f "$target"; fi
echo "exited $?"
"""


@pytest.mark.parametrize("flush", [pytest.param("none", id="not-flushed"),
                                   pytest.param("sync", id="control-synced-before-the-cut")])
def test_a_backup_made_complete_without_flushing_is_lost_or_broken_by_the_same_power_cut(
        db: Database, tmp_path, flush: str) -> None:
    """The negative control of the test above: the same complete-looking directory (a finished
    backup, ``cp -a`` into ``.staging-ID`` then renamed, as the tool does but without its fsyncs)
    is gone or damaged after the cut; with a ``sync`` before the cut it is intact, so the only
    difference the check sees is the flush."""
    source = Command(str(tmp_path / "source"), db)
    source.ok("run", "--full")
    (backup,) = source.listed()
    backup_id = str(backup["id"])
    cmd, image = volatile_target(db, tmp_path)
    node = Node(image, cmd.target, COPY_THEN_WAIT, os.path.join(source.target, backup_id), backup_id, flush)
    try:
        assert node.expect("exited ") == "exited 0"
        assert os.path.isfile(node.sees(backup_id, "manifest.json"))  # complete, as the node saw it
        node.cut()
    finally:
        node.close()
    with mounted_after_the_cut(image, cmd.target):
        names = sorted(os.listdir(cmd.target))
        listing = listed_ids(cmd)
        verified = cmd("verify", backup_id)
    if flush == "sync":
        assert listing == [backup_id] and verified.returncode == 0, (names, verified.stderr)
        return
    # Missing (nothing of the directory reached the disk: what a cut within ext4's 5 s commit
    # interval leaves) or, after a journal commit, present with files its manifest does not match.
    if listing:
        assert listing == [backup_id], names
        fails(verified, 65, "damaged")
    else:
        fails(verified, 66, "no complete backup")
    print(f"after the cut: {names}; listed: {listing}; verify: {verified.stderr.strip()}")


def test_a_power_cut_while_mariabackup_writes_leaves_no_complete_backup_and_the_next_run_works(
        db: Database, tmp_path) -> None:
    cmd, image = volatile_target(db, tmp_path)
    node = Node(image, cmd.target, RUN_THEN_WAIT, *cmd.argv("run", "--full"))
    try:
        until = time.monotonic() + 60
        while True:  # mariabackup has created the staging data directory and is copying into it
            staging = [n for n in os.listdir(node.sees()) if n.startswith(".staging-")]
            if staging and os.path.exists(node.sees(staging[0], "data", "ibdata1")):
                break
            assert node.process.poll() is None and time.monotonic() < until, "no backup seen under way"
            time.sleep(0.002)
        node.cut()
        assert not [line for line in node.said() if line.startswith("exited")]  # cut, not finished
    finally:
        node.close()
    with mounted_after_the_cut(image, cmd.target):
        left = sorted(n for n in os.listdir(cmd.target) if n.startswith(".staging-"))
        assert listed_ids(cmd) == []
    print(f"staging left by the cut: {left}")
    node = Node(image, cmd.target, RUN_THEN_WAIT, *cmd.argv("run", "--full"))
    try:
        assert node.expect("exited ", timeout=120) == "exited 0"
        node.cut()
    finally:
        node.close()
    out = node_output(cmd)
    assert out.count("removed leftover") == len(left)
    backup_id = completed(out)
    with mounted_after_the_cut(image, cmd.target):
        names = sorted(os.listdir(cmd.target))
        assert listed_ids(cmd) == [backup_id], names
        assert not [n for n in names if n.startswith(".staging-")]
        assert f"{backup_id}: checksums ok" in cmd.ok("verify", "--all")
