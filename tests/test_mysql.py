"""The ``mysql`` agent against a real MariaDB whose datadir is on a loop-mounted ext4.

Every test runs the installed agent (``make install``) the way Pacemaker's
executor does: one process per action, parameters in ``OCF_RESKEY_*``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from harness.mariadb import HEARTBEAT_TABLE, SHELL_AGENT, Site, mariadbd_pids_on, run_detached
from harness.ocfrun import Result, agent_env, run_agent

AGENT = "/usr/lib/ocf/resource.d/openstack/mysql"
PORT = 33073

pytestmark = [pytest.mark.services,
              pytest.mark.skipif(os.geteuid() != 0, reason="loop devices and mariadbd need root")]


class MySQLResource:
    """One resource instance of the installed agent, with its own state and log files."""

    def __init__(self, site: Site, instance: str = "db", **params: str) -> None:
        assert os.access(AGENT, os.X_OK), f"{AGENT} is not installed: run `make install` first"
        self.site = site
        self.instance = instance
        self.rsctmp = os.path.join(site.workdir, "rsctmp")
        self.logfile = os.path.join(site.workdir, "agent.log")
        os.makedirs(self.rsctmp, exist_ok=True)
        self.params = {**site.db.agent_params(device=site.fs.device), **params}

    def env(self, timeout_ms: int | None = None, depth: int = 0, interval_ms: int = 20000,
            **overrides: str) -> dict[str, str]:
        params = {k: v for k, v in {**self.params, **overrides}.items() if v is not None}
        extra = {"HA_RSCTMP": self.rsctmp, "HA_LOGFILE": self.logfile, "HA_debug": "1",
                 "OCF_CHECK_LEVEL": str(depth), "OCF_RESKEY_CRM_meta_interval": str(interval_ms)}
        if timeout_ms is not None:
            extra["OCF_RESKEY_CRM_meta_timeout"] = str(timeout_ms)
        env = agent_env(params, **extra)
        env["OCF_RESOURCE_INSTANCE"] = self.instance
        return env

    def __call__(self, action: str, timeout_ms: int | None = None, depth: int = 0,
                 **overrides: str) -> Result:
        return run_agent([AGENT], action, self.env(timeout_ms, depth, **overrides), timeout=150)

    def recorded_pid(self) -> int:
        path = os.path.join(self.rsctmp, f"openstack-mysql-{self.instance}", "server")
        with open(path, encoding="utf-8") as handle:
            return int(handle.read().split()[0])


@pytest.fixture(scope="module")
def site():
    created = Site(port=PORT).create()
    try:
        yield created
    finally:
        created.cleanup()


@pytest.fixture
def resource(site):
    res = MySQLResource(site)
    yield res
    res("stop")
    assert mariadbd_pids_on(site.db.datadir) == [], "a server outlived the test"


def ok(result: Result) -> Result:
    assert result.rc == 0, f"rc={result.rc} {result.stderr[-800:]}"
    return result


def test_start_monitor_at_every_depth_stop(resource, site):
    ok(resource("start"))
    pid = resource.recorded_pid()
    assert mariadbd_pids_on(site.db.datadir) == [pid]
    assert _uid_of(pid) == _mysql_uid()
    ok(resource("start"))  # idempotent: the same server
    assert resource.recorded_pid() == pid
    for depth in (0, 10, 20):
        ok(resource("monitor", depth=depth))
    with site.db.connect(site.db.credentials, database=None) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {HEARTBEAT_TABLE}")  # noqa: S608
        assert cur.fetchone()[0] == 1
    ok(resource("stop"))
    assert mariadbd_pids_on(site.db.datadir) == []
    assert resource("monitor").rc == 7
    ok(resource("stop"))  # idempotent


def _uid_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}").st_uid


def _mysql_uid() -> int:
    import pwd

    return pwd.getpwnam("mysql").pw_uid


def test_probe_without_mariadb_installed_is_not_running(resource):
    result = resource("monitor", binary="/nonexistent/mariadbd", interval_ms=0)
    assert result.rc == 7, result.stderr
    assert resource("start", binary="/nonexistent/mariadbd").rc == 5


def test_ocf_tester_passes_with_datadir_on_loop_filesystem(site):
    params = site.db.agent_params(device=site.fs.device)
    argv = ["ocf-tester", "-n", "mysqltest"]
    for key, value in params.items():
        argv += ["-o", f"{key}={value}"]
    env = {"PATH": os.environ["PATH"], "HA_RSCTMP": os.path.join(site.workdir, "tester-rsctmp")}
    try:
        done = subprocess.run([*argv, AGENT], capture_output=True, text=True, timeout=240, env=env,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "passed all tests" in done.stdout
    finally:
        MySQLResource(site, instance="mysqltest").__call__("stop")
    assert mariadbd_pids_on(site.db.datadir) == []


class Writer(threading.Thread):
    """Inserts rows one transaction at a time; remembers every id the server acknowledged."""

    def __init__(self, site: Site) -> None:
        super().__init__(daemon=True)
        self.site = site
        self.acknowledged: list[int] = []
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with self.site.db.connect() as conn, conn.cursor() as cur:
                for row_id in range(1, 1_000_000):
                    cur.execute("INSERT INTO crash_rows (id, payload) VALUES (%s, %s)", (row_id, "x" * 64))
                    self.acknowledged.append(row_id)  # autocommit: the INSERT returned = committed
        except Exception as exc:  # noqa: BLE001 - the crash ends the writer, that is the point
            self.error = exc


def test_crash_mid_write_loses_no_acknowledged_row(resource, site):
    ok(resource("start"))
    with site.db.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE crash_rows (id INT PRIMARY KEY, payload VARCHAR(64)) ENGINE=InnoDB")
    writer = Writer(site)
    writer.start()
    until = time.monotonic() + 30
    while len(writer.acknowledged) < 300 and writer.is_alive() and time.monotonic() < until:
        time.sleep(0.01)
    assert len(writer.acknowledged) >= 300, writer.error
    os.kill(resource.recorded_pid(), signal.SIGKILL)
    writer.join(30)
    assert not writer.is_alive() and writer.error is not None  # the writer saw the crash
    acknowledged = set(writer.acknowledged)

    monitor = resource("monitor")
    assert monitor.rc == 7, monitor.stderr
    ok(resource("start"))  # InnoDB crash recovery happens inside this start
    ok(resource("monitor", depth=10))
    with site.db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM crash_rows")
        present = {row[0] for row in cur.fetchall()}
        cur.execute("DROP TABLE crash_rows")
    assert acknowledged <= present, f"lost {len(acknowledged - present)} acknowledged rows"
    assert len(present - acknowledged) <= 1  # at most the row in flight at the crash


def test_frozen_server_fails_monitor_within_budget(resource, site):
    ok(resource("start"))
    pid = resource.recorded_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        for depth in (0, 10):
            started = time.monotonic()
            result = resource("monitor", timeout_ms=3000, depth=depth)
            elapsed = time.monotonic() - started
            assert result.rc == 1, result.stderr
            assert elapsed < 5.0, f"depth {depth} monitor took {elapsed:.1f} s with a 3 s budget"
            assert result.exit_reasons, result.stderr
        assert "no greeting" in resource("monitor", timeout_ms=2000).exit_reasons[0]
    finally:
        os.kill(pid, signal.SIGCONT)
    ok(resource("monitor"))
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    ok(resource("stop", timeout_ms=20000))  # a frozen server is still stopped, within budget
    assert time.monotonic() - started < 20
    assert mariadbd_pids_on(site.db.datadir) == []


def test_start_refused_when_datadir_is_not_on_the_device(resource, site):
    site.fs.umount()
    try:
        os.makedirs(site.db.datadir)  # an empty directory where the filesystem should be
        before = sorted(os.listdir(site.fs.mountpoint))
        result = resource("start")
        assert result.rc == 1, result.stderr
        reason = result.exit_reasons[0]
        assert f"not on {site.fs.device}" in reason and "mounted" in reason, reason
        assert mariadbd_pids_on(site.db.datadir) == []
        assert sorted(os.listdir(site.fs.mountpoint)) == before
        assert os.listdir(site.db.datadir) == []  # no data touched, nothing initialised
    finally:
        shutil.rmtree(site.db.datadir, ignore_errors=True)
        site.fs.mount()
    ok(resource("start"))  # mounted again: the same resource starts


def test_second_server_on_the_same_datadir_is_refused(resource, site):
    site.db.start()  # a server the agent did not start
    try:
        result = resource("start")
        assert result.rc == 1, result.stderr
        assert f"another server (pid {site.db.process.pid})" in result.exit_reasons[0]
        assert mariadbd_pids_on(site.db.datadir) == [site.db.process.pid]
    finally:
        site.db.stop()


def test_lock_held_from_elsewhere_is_refused(resource, site):
    # A server in another PID namespace is invisible in /proc; InnoDB's lock is not.
    fd = os.open(os.path.join(site.db.datadir, "ibdata1"), os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = resource("start")
        assert result.rc == 1, result.stderr
        assert "ibdata1 is locked" in result.exit_reasons[0]
        assert mariadbd_pids_on(site.db.datadir) == []
    finally:
        os.close(fd)


def test_takes_over_a_server_started_by_the_shell_agent(site):
    shell_env = agent_env(site.db.shell_agent_params(), HA_RSCTMP=os.path.join(site.workdir, "rsctmp"),
                          OCF_RESKEY_CRM_meta_timeout="60000")
    rc, output = run_detached([SHELL_AGENT, "start"], shell_env, timeout=90)
    assert rc == 0, output
    try:
        pids = mariadbd_pids_on(site.db.datadir)
        ours = MySQLResource(site, instance="swapped")
        probe = ours("monitor", interval_ms=0)
        assert probe.rc == 0, probe.stderr  # the probe finds the running server and adopts it
        ok(ours("monitor", depth=10))
        assert ours.recorded_pid() in pids
        ok(ours("stop"))
        assert mariadbd_pids_on(site.db.datadir) == []
    finally:
        run_detached([SHELL_AGENT, "stop"], shell_env, timeout=90)


def test_credentials_file_must_be_root_only(resource, site):
    loose = os.path.join(site.workdir, "loose.cnf")
    shutil.copy(site.db.credentials, loose)
    os.chmod(loose, 0o644)
    result = resource("monitor", depth=10, credentials=loose)
    assert result.rc == 5, result.stderr
    assert "mode 0600" in result.exit_reasons[0]


class ArgvWatcher(threading.Thread):
    """Scans every process's command line, continuously, for a string."""

    def __init__(self, needle: str) -> None:
        super().__init__(daemon=True)
        self.needle = needle.encode()
        self.seen: list[str] = []
        self.scans = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        with open(f"/proc/{entry}/cmdline", "rb") as handle:
                            if self.needle in handle.read():
                                self.seen.append(entry)
                    except OSError:
                        continue
            self.scans += 1

    def stop(self) -> None:
        self.done.set()
        self.join(10)


def test_password_never_in_argv_nor_in_logs(resource, site):
    # The watcher itself can fail: it sees a marker placed on a command line.
    marker = "argv-marker-" + site.db.password[-6:] + "x"
    control = ArgvWatcher(marker)
    control.start()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)", marker])
    time.sleep(0.5)
    control.stop()
    sleeper.wait()
    assert control.seen, "the argv watcher cannot see command lines"

    watcher = ArgvWatcher(site.db.password)
    watcher.start()
    try:
        ok(resource("start"))
        for depth in (0, 10, 20, 10, 20):
            ok(resource("monitor", depth=depth))
        # The deprecated test_passwd path: accepted, warned about, redacted.
        ok(resource("start", credentials="", test_user="ocfmon", test_passwd=site.db.password))
        ok(resource("monitor", depth=20, credentials="", test_user="ocfmon", test_passwd=site.db.password))
        bad = resource("monitor", depth=10, credentials="", test_user="ocfmon",
                       test_passwd=site.db.password + "!")
        assert bad.rc == 1 and site.db.password not in bad.stderr
        ok(resource("stop"))
    finally:
        watcher.stop()
    assert watcher.scans > 0 and watcher.seen == []
    with open(resource.logfile, encoding="utf-8") as handle:
        agent_log = handle.read()
    assert "test_passwd is deprecated" in agent_log
    assert site.db.password not in agent_log
    with open(site.db.log, encoding="utf-8", errors="replace") as handle:
        assert site.db.password not in handle.read()
    for name in os.listdir(resource.rsctmp):
        for state_file in os.listdir(os.path.join(resource.rsctmp, name)):
            with open(os.path.join(resource.rsctmp, name, state_file), encoding="utf-8") as handle:
                assert site.db.password not in handle.read()


def test_heartbeat_rows_are_per_node(resource, site):
    ok(resource("start"))
    for node in ("node-a", "node-b", "node-a"):
        ok(resource("monitor", depth=20, CRM_meta_on_node=node))
    with site.db.connect(site.db.credentials, database=None) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT node FROM {HEARTBEAT_TABLE} ORDER BY node")  # noqa: S608
        nodes = [row[0] for row in cur.fetchall()]
    assert {"node-a", "node-b"} <= set(nodes)


def grant_monitor_select_on_test_database(site: Site) -> None:
    from harness.mariadb import TEST_DATABASE, run

    run(["mariadb", f"--defaults-file={site.db.config}", "--user=root", "--batch"],
        input_text=f"GRANT SELECT ON {TEST_DATABASE}.* TO 'ocfmon'@'localhost';\n")


def test_a_blocked_query_fails_depth_10_within_budget(resource, site):
    from harness.mariadb import TEST_DATABASE

    ok(resource("start"))
    grant_monitor_select_on_test_database(site)
    with site.db.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS locked (id INT PRIMARY KEY)")
        table = f"{TEST_DATABASE}.locked"
        ok(resource("monitor", depth=10, test_table=table))
        cur.execute("LOCK TABLES locked WRITE")  # the greeting still comes; the query blocks
        started = time.monotonic()
        result = resource("monitor", timeout_ms=3000, depth=10, test_table=table)
        elapsed = time.monotonic() - started
        cur.execute("UNLOCK TABLES")
    assert result.rc == 1, result.stderr
    assert elapsed < 5.0, f"took {elapsed:.1f} s with a 3 s budget"
    assert "timed out" in result.exit_reasons[0] or "Lost connection" in result.exit_reasons[0], result.stderr
    ok(resource("monitor", depth=10, test_table=table))


def test_a_server_dying_at_start_names_its_status_and_error_log(resource, site):
    import re

    started = time.monotonic()
    result = resource("start", additional_parameters="--innodb-buffer-pool-size=32M --no-such-option='a b'")
    assert result.rc == 1, result.stderr
    assert time.monotonic() - started < 30
    reason = result.exit_reasons[0]
    where = re.search(rf"exited with status (\d+) during start; see {re.escape(site.db.log)} from byte (\d+)",
                      reason)
    assert where is not None and where.group(1) != "0", reason
    assert "no-such-option" not in reason, reason  # logs stay in logs
    with open(site.db.log, "rb") as handle:
        handle.seek(int(where.group(2)))
        assert b"no-such-option" in handle.read()
    assert mariadbd_pids_on(site.db.datadir) == []
    ok(resource("start"))


def test_a_mysqld_safe_binary_runs_the_server_itself(resource, site):
    ok(resource("start", binary="/usr/bin/mysqld_safe"))
    pid = resource.recorded_pid()
    with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
        assert handle.read().strip() == "mariadbd"
    assert os.getsid(pid) == pid  # a session of its own, no wrapper above it
    with open(resource.logfile, encoding="utf-8") as handle:
        assert "mysqld_safe is a wrapper; running /usr/sbin/mariadbd instead" in handle.read()


def test_invalid_configuration_never_hides_a_running_server(resource, site):
    ok(resource("start"))
    broken = {"config": "/nonexistent/my.cnf"}
    probe = resource("monitor", interval_ms=0, **broken)
    assert probe.rc == 1, probe.stderr  # running but unusable: not "not running"
    assert resource("monitor", **broken).rc == 5
    ok(resource("stop", **broken))  # stop succeeds and really stops it
    assert mariadbd_pids_on(site.db.datadir) == []
    assert resource("monitor", interval_ms=0, **broken).rc == 7


def test_a_full_server_is_alive_at_depth_0(resource, site):
    import socket

    ok(resource("start"))
    held = []
    try:
        for _ in range(60):  # max_connections is 50 (+1 kept for an administrator)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(site.db.socket)
            held.append(sock)
            sock.recv(4096)  # each one holds a connection slot until it logs in or times out
        result = resource("monitor")
        assert result.rc == 0, result.stderr
        with open(resource.logfile, encoding="utf-8") as handle:
            assert "is alive but full" in handle.read()
    finally:
        for sock in held:
            sock.close()
    ok(resource("monitor"))


@pytest.mark.parametrize(("overrides", "words"), [
    ({"heartbeat_table": "ocf_monitor.beat; DROP TABLE x"}, "heartbeat_table"),
    ({"heartbeat_table": "nodatabase"}, "database.table"),
    ({"test_table": "a.b.c"}, "test_table"),
    ({"datadir": "relative/data"}, "absolute path"),
    ({"port": "70000"}, "at most 65535"),
])
def test_bad_parameters_are_configuration_errors(resource, overrides, words):
    result = resource("validate-all", **overrides)
    assert result.rc == 6, result.stderr
    assert words in result.exit_reasons[0]
    assert "Traceback" not in result.stderr


def test_additional_parameters_with_an_open_quote_is_a_configuration_error(resource, site):
    result = resource("start", additional_parameters="--general-log-file='unterminated")
    assert result.rc == 6, result.stderr
    assert "additional_parameters" in result.exit_reasons[0]
    assert mariadbd_pids_on(site.db.datadir) == []
