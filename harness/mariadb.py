"""Real MariaDB for tests: a loop-mounted ext4 filesystem and a private server on it.

Reusable outside pytest (the cluster harness, ``bench/mysql.py``): every
helper is a plain class with ``create()``/``cleanup()``; cleanup is safe to
call twice and after a partial ``create()``.

The server listens on a UNIX socket in its own directory and on 127.0.0.1
with a non-default port; it never touches /etc/mysql, /var/lib/mysql or
/run/mysqld.  Two accounts exist besides root (which keeps Debian's
``unix_socket`` authentication, so only the OS root reaches it):

* ``ocfmon``: the monitoring account of the ``mysql`` agent, with a random
  password kept only in a 0600 option file (``credentials``);
* ``writer``: a test account allowed to write the test database, same scheme.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
SERVICE_USER = "mysql"
TEST_DATABASE = "ocftest"
HEARTBEAT_TABLE = "ocf_monitor.heartbeat"

CONFIG_TEMPLATE = """[mysqld]
datadir = {datadir}
socket = {socket}
pid-file = {pid}
log-error = {log}
port = {port}
bind-address = 127.0.0.1
skip-name-resolve
innodb_buffer_pool_size = 32M
innodb_log_file_size = 16M
innodb_flush_log_at_trx_commit = 1
sync_binlog = 1
performance_schema = OFF
max_connections = 50

[client]
socket = {socket}
"""


def run(argv: list[str], timeout: float = 60.0, input_text: str | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          input=input_text)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[-600:]}")
    return done.stdout


SHELL_AGENT = "/usr/lib/ocf/resource.d/heartbeat/mysql"
SHELL_AGENT_PARAMS = ("binary", "config", "datadir", "socket", "pid", "log", "user", "group")


def run_detached(argv: list[str], env: dict[str, str], timeout: float = 120.0) -> tuple[int, str]:
    """Run a command whose children may outlive it holding its output: collect output in a file.

    ocf:heartbeat:mysql backgrounds the server with the agent's own stderr
    still open, so reading a pipe to EOF would wait for the server to exit.
    """
    with tempfile.TemporaryFile() as output:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                              timeout=timeout, check=False)
        output.seek(0)
        return done.returncode, output.read().decode("utf-8", "replace")


def mysql_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, entry.pw_gid


class LoopFilesystem:
    """An ext4 image on a loop device, mounted on ``mountpoint``."""

    def __init__(self, workdir: str, size_mb: int = 160, name: str = "fs") -> None:
        self.image = os.path.join(workdir, f"{name}.img")
        self.mountpoint = os.path.join(workdir, name)
        self.size_mb = size_mb
        self.device: str | None = None
        self.mounted = False

    def create(self) -> LoopFilesystem:
        os.makedirs(self.mountpoint, exist_ok=True)
        with open(self.image, "wb") as handle:
            handle.truncate(self.size_mb * 1024 * 1024)
        run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", self.image])
        self.device = run(["losetup", "-f", "--show", self.image]).strip()
        self.mount()
        return self

    def mount(self) -> None:
        assert self.device is not None
        run(["mount", "-t", "ext4", self.device, self.mountpoint])
        self.mounted = True

    def umount(self) -> None:
        if self.mounted:
            done = subprocess.run(["umount", self.mountpoint], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", self.mountpoint], capture_output=True, check=False)
            self.mounted = False

    def cleanup(self) -> None:
        self.umount()
        if self.device:
            subprocess.run(["losetup", "-d", self.device], capture_output=True, check=False)
            self.device = None
        if os.path.exists(self.image):
            os.unlink(self.image)


def write_option_file(path: str, user: str, password: str) -> None:
    """A client option file readable by root only: the one place a password lives."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"[client]\nuser = {user}\npassword = \"{password}\"\n".encode())
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


class MariaDB:
    """A private MariaDB instance whose datadir is ``<root>/data`` (``root`` may be a mountpoint).

    ``install()`` initialises the datadir and the accounts; the server is then
    stopped, ready for an agent to start it.  ``start()``/``stop()`` run it
    directly (the way the fixture itself needs it), not through an agent.
    """

    def __init__(self, root: str, rundir: str, port: int) -> None:
        self.root = root
        self.datadir = os.path.join(root, "data")
        self.rundir = rundir
        self.socket = os.path.join(rundir, "mysqld.sock")
        self.pid = os.path.join(rundir, "mysqld.pid")
        self.log = os.path.join(rundir, "error.log")
        self.config = os.path.join(rundir, "my.cnf")
        self.credentials = os.path.join(rundir, "monitor.cnf")
        self.writer_credentials = os.path.join(rundir, "writer.cnf")
        self.port = port
        self.password = "mon-" + secrets.token_hex(12)
        self.writer_password = "wr-" + secrets.token_hex(12)
        self.process: subprocess.Popen[bytes] | None = None

    # Parameters of the ``mysql`` agent for this instance (OCF_RESKEY_* without the prefix).
    def agent_params(self, device: str | None = None) -> dict[str, str]:
        params = {
            "binary": MARIADBD, "config": self.config, "datadir": self.datadir, "socket": self.socket,
            "pid": self.pid, "log": self.log, "user": SERVICE_USER, "group": SERVICE_USER,
            "credentials": self.credentials, "heartbeat_table": HEARTBEAT_TABLE,
        }
        if device:
            params["device"] = device
        return params

    def shell_agent_params(self) -> dict[str, str]:
        """The same server for ocf:heartbeat:mysql; root reaches it through unix_socket auth."""
        params = {k: v for k, v in self.agent_params().items() if k in SHELL_AGENT_PARAMS}
        params["test_user"] = "root"
        return params

    def install(self) -> MariaDB:
        uid, gid = mysql_ids()
        os.makedirs(self.rundir, exist_ok=True)
        os.chown(self.rundir, uid, gid)
        os.chmod(self.rundir, 0o755)  # noqa: S103 - the server user must reach it
        os.makedirs(self.datadir, exist_ok=True)
        os.chown(self.datadir, uid, gid)
        with open(self.config, "w", encoding="utf-8") as handle:
            handle.write(CONFIG_TEMPLATE.format(datadir=self.datadir, socket=self.socket, pid=self.pid,
                                                log=self.log, port=self.port))
        os.chmod(self.config, 0o644)
        run([INSTALL_DB, f"--defaults-file={self.config}", f"--datadir={self.datadir}",
             f"--user={SERVICE_USER}", "--skip-test-db", "--auth-root-authentication-method=socket"],
            timeout=120)
        write_option_file(self.credentials, "ocfmon", self.password)
        write_option_file(self.writer_credentials, "writer", self.writer_password)
        self.start()
        try:
            self.create_accounts()
        finally:
            self.stop()
        return self

    def create_accounts(self) -> None:
        statements = [
            f"CREATE USER 'ocfmon'@'localhost' IDENTIFIED BY '{self.password}'",
            "GRANT USAGE ON *.* TO 'ocfmon'@'localhost'",
            f"GRANT ALL ON {HEARTBEAT_TABLE.split('.', maxsplit=1)[0]}.* TO 'ocfmon'@'localhost'",
            f"CREATE DATABASE {TEST_DATABASE}",
            f"CREATE USER 'writer'@'localhost' IDENTIFIED BY '{self.writer_password}'",
            f"GRANT ALL ON {TEST_DATABASE}.* TO 'writer'@'localhost'",
        ]
        # The mariadb client reads the SQL on stdin: no password reaches a command line.
        run(["mariadb", f"--defaults-file={self.config}", "--user=root", "--batch"],
            input_text=";\n".join(statements) + ";\n")

    def start(self, timeout: float = 60.0) -> None:
        uid, gid = mysql_ids()
        self.process = subprocess.Popen(
            [MARIADBD, f"--defaults-file={self.config}"], user=uid, group=gid, extra_groups=[],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        until = time.monotonic() + timeout
        while not greets(self.socket):
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > until:
                raise RuntimeError(f"mariadbd not ready after {timeout} s: {self.log_tail()}")
            time.sleep(0.01)

    def stop(self, timeout: float = 60.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def log_tail(self, lines: int = 8) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as handle:
                return " | ".join(handle.read().splitlines()[-lines:])
        except OSError:
            return "(no error log)"

    def connect(self, credentials: str | None = None, database: str | None = TEST_DATABASE,
                timeout: float = 10.0):
        """A PyMySQL connection through the socket, reading user and password from an option file."""
        import pymysql

        option_file = credentials or self.writer_credentials
        return pymysql.connect(unix_socket=self.socket, read_default_file=option_file,
                               read_default_group="client", database=database, autocommit=True,
                               connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout)


def greets(socket_path: str, timeout: float = 1.0) -> bool:
    """True when a MySQL server sends its handshake on ``socket_path``."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
            return len(sock.recv(5)) == 5
        except OSError:
            return False


def mariadbd_pids_on(datadir: str) -> list[int]:
    """Live mariadbd processes whose working directory is ``datadir`` (the server chdirs there)."""
    found = []
    real = os.path.realpath(datadir)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", encoding="utf-8") as handle:
                comm = handle.read().strip()
            if comm in ("mariadbd", "mysqld") and os.path.realpath(f"/proc/{entry}/cwd") == real:
                found.append(int(entry))
        except OSError:
            continue
    return found


def kill_all_on(datadir: str) -> None:
    """Last-resort cleanup: KILL every server still running on ``datadir``, wait for it to go."""
    for pid in mariadbd_pids_on(datadir):
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    until = time.monotonic() + 15
    while mariadbd_pids_on(datadir) and time.monotonic() < until:
        time.sleep(0.02)


class Site:
    """Loop filesystem + MariaDB instance on it, created together, cleaned up together."""

    def __init__(self, port: int, size_mb: int = 160) -> None:
        self.workdir = tempfile.mkdtemp(prefix="ocf-mysql-")
        os.chmod(self.workdir, 0o755)  # noqa: S103 - the server user must reach it
        self.fs = LoopFilesystem(self.workdir, size_mb=size_mb)
        self.db = MariaDB(self.fs.mountpoint, os.path.join(self.workdir, "run"), port)

    def create(self) -> Site:
        try:
            self.fs.create()
            self.db.install()
        except BaseException:
            self.cleanup()
            raise
        return self

    def cleanup(self) -> None:
        self.db.stop()
        kill_all_on(self.db.datadir)
        self.fs.cleanup()
        shutil.rmtree(self.workdir, ignore_errors=True)
