"""The daemon base (agents/ocf/daemon.py): logs and credentials files root opens for a service,
stop, and the reason a failed start gives."""

from __future__ import annotations

import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from agents.ocf.codes import OCF, OCFError
from agents.ocf.daemon import CredentialsError, Daemon, read_credentials_text
from agents.ocf.deadline import Deadline
from agents.ocf.proc import Identity, User, all_stats, spawn, stop_session
from agents.ocf.state import StateDir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (switches to a service user)")

SERVICE_USER = "nobody"


@pytest.fixture
def service_dir():
    """A log directory that belongs to the service's user, as /var/log/keystone does (in a
    directory the user can reach: pytest's own temporary directories are root's, 0700)."""
    user = User.lookup(SERVICE_USER)
    top = pathlib.Path(tempfile.mkdtemp(prefix="daemon-test-"))
    os.chmod(top, 0o755)  # noqa: S103 (the service user must reach its directory)
    directory = top / "log"
    directory.mkdir()
    os.chown(directory, user.uid, user.gid)
    yield user, directory
    shutil.rmtree(top)


def secret_file(path, text="root only\n"):
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def start(user, log_path):
    return spawn([sys.executable, "-c", "print('started')"], user=user, log_path=str(log_path), env={})


def test_a_log_linked_to_a_root_file_is_neither_written_nor_handed_over(service_dir, tmp_path):
    user, directory = service_dir
    target = secret_file(tmp_path / "shadow")
    (directory / "service.log").symlink_to(target)
    with pytest.raises(OCFError) as refused:
        start(user, directory / "service.log")
    assert refused.value.code == OCF.ERR_PERM
    assert "symbolic link" in refused.value.reason
    info = os.stat(target)
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o600)
    assert target.read_text() == "root only\n"


def test_an_existing_root_file_is_never_chowned_to_the_service(service_dir):
    user, directory = service_dir
    log = secret_file(directory / "service.log", "")  # root's, in the service's directory
    with pytest.raises(OCFError) as refused:
        start(user, log)
    assert refused.value.code == OCF.ERR_PERM
    assert os.stat(log).st_uid == 0


def test_a_new_log_belongs_to_the_service_and_gets_its_output(service_dir):
    user, directory = service_dir
    identity = start(user, directory / "service.log")
    deadline = time.monotonic() + 10
    while b"started" not in (directory / "service.log").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (directory / "service.log").read_text() == "started\n"
    assert os.stat(directory / "service.log").st_uid == user.uid
    assert identity.pid > 0


@pytest.mark.parametrize("reader", [False, True])
def test_a_fifo_log_neither_hangs_nor_passes(service_dir, reader):
    user, directory = service_dir
    fifo = directory / "service.log"
    os.mkfifo(fifo)
    os.chown(fifo, user.uid, user.gid)
    held = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK) if reader else None
    try:
        started = time.monotonic()
        with pytest.raises(OCFError) as refused:
            start(user, fifo)
        assert time.monotonic() - started < 2
        assert refused.value.code == OCF.ERR_PERM
    finally:
        if held is not None:
            os.close(held)


def test_credentials_read_from_the_open_file(tmp_path):
    good = secret_file(tmp_path / "good.conf", "[monitoring]\npassword = s3cret\n")
    assert "s3cret" in read_credentials_text(str(good))
    (tmp_path / "link.conf").symlink_to(good)
    loose = secret_file(tmp_path / "loose.conf")
    os.chmod(loose, 0o640)
    foreign = secret_file(tmp_path / "foreign.conf")
    os.chown(foreign, pwd.getpwnam(SERVICE_USER).pw_uid, 0)
    os.mkfifo(tmp_path / "fifo.conf", 0o600)
    for name, why in (("link.conf", "symbolic link"), ("loose.conf", "mode 0640"),
                      ("foreign.conf", "must be owned by uid 0"), ("fifo.conf", "not a regular file"),
                      ("missing.conf", "No such file")):
        with pytest.raises(CredentialsError) as refused:
            read_credentials_text(str(tmp_path / name))
        assert refused.value.code == OCF.ERR_INSTALLED, name  # one node's file: never cluster-wide
        assert why in refused.value.reason, (name, refused.value.reason)


def test_a_fifo_credentials_file_with_a_writer_does_not_hang(tmp_path):
    fifo = tmp_path / "fifo.conf"
    os.mkfifo(fifo, 0o600)
    held = os.open(fifo, os.O_RDWR)  # a writer that never writes: a plain read would wait forever
    try:
        started = time.monotonic()
        with pytest.raises(CredentialsError):
            read_credentials_text(str(fifo))
        assert time.monotonic() - started < 2
    finally:
        os.close(held)


def test_stop_session_never_signals_a_process_that_took_over_the_pid(tmp_path):
    """Pid reuse: the recorded pid now belongs to an unrelated session leader started later."""
    foreign = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                               start_new_session=True)
    try:
        real = Identity.of(foreign.pid)
        assert real is not None
        recorded = Identity(foreign.pid, real.start_time - 1)  # ours started just before it
        assert not recorded.alive()  # what monitor sees: not running
        stop_session(recorded, Deadline(3))
        assert foreign.poll() is None  # untouched
    finally:
        foreign.kill()
        foreign.wait()


LEADER_LEAVES_A_WORKER = """
import os, sys, time
if os.fork() == 0:
    time.sleep(600)
os.write(1, b"forked\\n")
os._exit(0)
"""


def test_stop_session_never_signals_a_session_whose_leader_is_gone(tmp_path):
    """Once the leader is gone its pid can be reused, and then a session of that id is not ours."""
    leader = subprocess.Popen([sys.executable, "-c", LEADER_LEAVES_A_WORKER], start_new_session=True,
                              stdout=subprocess.PIPE)
    identity = Identity.of(leader.pid)
    assert identity is not None
    assert leader.stdout is not None and leader.stdout.readline() == b"forked\n"
    leader.wait()  # reaped: the pid is free
    worker = [s for s in all_stats() if s.session == identity.pid and s.alive]
    assert len(worker) == 1
    try:
        started = time.monotonic()
        stop_session(identity, Deadline(3))
        assert time.monotonic() - started < 3
        assert Identity(worker[0].pid, worker[0].start_time).alive()
    finally:
        os.kill(worker[0].pid, signal.SIGKILL)


@pytest.fixture
def daemon(tmp_path):
    return Daemon(StateDir(str(tmp_path), "sample", "one"), "sample")


def test_daemon_stop_leaves_a_process_that_took_over_the_recorded_pid(daemon):
    """Recorded identity, process gone, the pid now an unrelated program's: monitor says 7 and
    stop touches nothing (the API agents' stop used to kill it)."""
    foreign = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                               start_new_session=True)
    try:
        real = Identity.of(foreign.pid)
        assert real is not None
        daemon.remember(Identity(foreign.pid, real.start_time - 1))
        recorded = daemon.recorded()
        assert recorded is not None and not recorded.alive()
        daemon.stop(Deadline(3))
        assert foreign.poll() is None
        assert daemon.recorded() is None
        # Negative control: the same stop, given the right identity, does stop it.
        daemon.remember(real)
        daemon.stop(Deadline(10))
        assert foreign.wait(timeout=10) == -signal.SIGTERM
    finally:
        if foreign.poll() is None:
            foreign.kill()
        foreign.wait()


DIES_LOUDLY = "import sys; print('postgresql://admin:s3cret@db/x failed'); sys.exit(3)"


def test_a_service_that_dies_during_start_is_named_with_its_status_and_log_not_its_output(
        daemon, service_dir):
    user, directory = service_dir
    log = directory / "service.log"
    own_log = directory / "own.log"
    own_log.write_text("from an earlier start\n")
    daemon.spawn([sys.executable, "-c", DIES_LOUDLY], user=user, log_path=str(log), env={},
                 more_logs=[str(own_log)])
    assert daemon.child is not None
    daemon.child.wait(timeout=30)
    reason = daemon.exited()
    assert "exited with status 3" in reason, reason
    assert f"{log} from byte 0" in reason and f"{own_log} from byte 22" in reason, reason
    assert "s3cret" not in reason and "postgresql" not in reason
    assert "s3cret" in log.read_text()  # logs stay in logs
    assert daemon.recorded() is None


def test_a_service_killed_during_start_is_named_with_the_signal(daemon, service_dir):
    user, directory = service_dir
    daemon.spawn([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"],
                 user=user, log_path=str(directory / "service.log"), env={})
    assert daemon.child is not None
    daemon.child.wait(timeout=30)
    assert "was killed by SIGSEGV" in daemon.exited()
