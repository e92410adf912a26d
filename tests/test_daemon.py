"""The daemon base (agents/ocf/daemon.py, agents/ocf/daemon_agent.py): logs and credentials files
root opens for a service, stop, the reason a failed start gives, the wait for a start, depth 0,
and a deadline-bounded TCP connect."""

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

from agents.http import connect
from agents.ocf.codes import OCF, OCFError
from agents.ocf.daemon import CredentialsError, Daemon, read_credentials_text
from agents.ocf.daemon_agent import TCPDaemonAgent
from agents.ocf.deadline import Deadline
from agents.ocf.environment import Environment
from agents.ocf.log import Logger
from agents.ocf.params import Param, parse
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


# What a service user runs: the system's interpreter (the checkout's virtualenv may sit in a
# directory only root can enter, as a CI clone in a 0700 temporary directory does).
SERVICE_PYTHON = "/usr/bin/python3"


def start(user, log_path):
    return spawn([SERVICE_PYTHON, "-c", "print('started')"], user=user, log_path=str(log_path), env={})


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
    daemon.spawn([SERVICE_PYTHON, "-c", DIES_LOUDLY], user=user, log_path=str(log), env={},
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
    daemon.spawn([SERVICE_PYTHON, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"],
                 user=user, log_path=str(directory / "service.log"), env={})
    assert daemon.child is not None
    daemon.child.wait(timeout=30)
    assert "was killed by SIGSEGV" in daemon.exited()


# The agent side of the daemon base (agents/ocf/daemon_agent.py), in-process -------------

class Listener(TCPDaemonAgent):
    """A TCPDaemonAgent whose answers the test scripts."""

    name = "listener"
    params = (Param("host", shortdesc="address", default="127.0.0.1"),
              Param("port", "integer", shortdesc="port", default=1))
    answers: list[str]

    def answering(self, identity: Identity) -> str:
        return self.answers.pop(0) if self.answers else "still starting"


def listener(tmp_path, port: int = 1, budget_s: float = 2.0, answers: tuple[str, ...] = ()) -> Listener:
    environ = {"HA_RSCTMP": str(tmp_path), "OCF_RESOURCE_INSTANCE": "one", "OCF_RESKEY_port": str(port)}
    config, errors = parse(Listener.params, environ)
    assert not errors
    agent = Listener(Environment("start", environ), config, Deadline(budget_s), Logger("listener", {}))
    agent.answers = list(answers)
    return agent


@pytest.fixture
def sleeper():
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    Deadline(5).wait_for(lambda: Identity.of(child.pid) is not None, "sleep to start")
    yield child
    if child.poll() is None:
        os.kill(child.pid, signal.SIGCONT)
        child.kill()
    child.wait()


def test_waiting_for_a_start_ends_when_the_service_answers(tmp_path):
    agent = listener(tmp_path, answers=("refused", "not yet", ""))
    mine = Identity.of(os.getpid())
    assert mine is not None
    agent.wait_until_answering(mine)
    assert agent.answers == []


def test_waiting_for_a_start_gives_up_in_time_with_the_last_reason(tmp_path):
    agent = listener(tmp_path, budget_s=0.3)
    mine = Identity.of(os.getpid())
    assert mine is not None
    began = time.monotonic()
    with pytest.raises(OCFError) as failed:
        agent.wait_until_answering(mine)
    assert time.monotonic() - began < 0.6
    assert failed.value.code == OCF.ERR_GENERIC
    assert failed.value.reason == "listener did not answer in time (still starting); see its logs"


def test_waiting_for_a_start_names_a_service_that_died(tmp_path, sleeper):
    identity = Identity.of(sleeper.pid)
    assert identity is not None
    sleeper.kill()
    sleeper.wait()
    with pytest.raises(OCFError) as failed:
        listener(tmp_path).wait_until_answering(identity)
    assert failed.value.reason == "listener exited during start; see its logs"


def test_start_refuses_a_port_another_process_listens_on(tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OCFError) as refused:
            listener(tmp_path, port).check_port_free()
    assert refused.value.code == OCF.ERR_GENERIC
    assert refused.value.reason.startswith(f"cannot start listener: 127.0.0.1:{port} is already in use by "
                                           f"pid {os.getpid()} (")
    listener(tmp_path, port).check_port_free()  # closed: free again


def test_depth_0_needs_our_process_alive_unfrozen_and_holding_its_socket(tmp_path, sleeper):
    import socket

    identity = Identity.of(sleeper.pid)
    mine = Identity.of(os.getpid())
    assert identity is not None and mine is not None
    with socket.create_server(("127.0.0.1", 0)) as held:
        agent = listener(tmp_path, held.getsockname()[1])
        agent.check_alive(mine)  # this process holds the socket
        with pytest.raises(OCFError) as elsewhere:
            agent.check_alive(identity)
        assert elsewhere.value.code == OCF.ERR_GENERIC
        assert elsewhere.value.reason == (f"listener (pid {sleeper.pid}) is not listening on "
                                          f"127.0.0.1:{held.getsockname()[1]}")
        os.kill(sleeper.pid, signal.SIGSTOP)
        Deadline(5).wait_for(identity.stopped, "sleep to freeze")
        with pytest.raises(OCFError) as frozen:
            agent.check_alive(identity)
        assert frozen.value.reason == f"listener (pid {sleeper.pid}) is frozen (stopped by a signal)"
        sleeper.kill()
        sleeper.wait()
        with pytest.raises(OCFError) as gone:
            agent.check_alive(identity)
        assert gone.value.code == OCF.NOT_RUNNING


def test_a_broken_configuration_still_stops_and_reports_what_we_started(tmp_path, sleeper):
    agent = listener(tmp_path)
    agent.stop = lambda: (agent.daemon.stop(agent.deadline), OCF.SUCCESS)[1]  # type: ignore[method-assign]
    assert agent.probe_unconfigured([]) == OCF.NOT_RUNNING
    identity = Identity.of(sleeper.pid)
    assert identity is not None
    agent.daemon.remember(identity)
    with pytest.raises(OCFError) as probed:
        agent.probe_unconfigured([])
    assert "is not listening on" in probed.value.reason
    assert agent.stop_unconfigured([]) == OCF.SUCCESS
    assert sleeper.wait(timeout=10) == -signal.SIGTERM
    assert agent.daemon.recorded() is None


# A TCP connection bounded by the deadline (agents/http.py connect) -------------------------------

def test_connect_is_bounded_by_the_deadline():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        conn = connect(Deadline(2), "0.0.0.0", port)  # a wildcard means loopback
        try:
            assert conn.getpeername() == ("127.0.0.1", port)
        finally:
            conn.close()
        with pytest.raises(TimeoutError):
            connect(Deadline(0), "127.0.0.1", port)
    with pytest.raises(ConnectionRefusedError):
        connect(Deadline(2), "127.0.0.1", port)


# host as a network (agents/ocf/daemon_agent.py) -------------------------------------------------

@pytest.mark.parametrize(("value", "problem"), [
    ("127.0.0.1", ""), ("::1", ""), ("0.0.0.0", ""), ("10.213.0.0/24", ""), ("2001:db8::/64", ""),
    ("127.0.0.0/8", ""), ("192.0.2.7/32", ""),
    ("10.213.0.5/24", "host bits set"), ("10.0.0.0/33", "prefix length must be 1 to 32"),
    ("10.0.0.0/0", "prefix length must be 1 to 32"), ("10.0.0.0/", "prefix length"),
    ("fe80::/64", "link-local"), ("keystone/24", "not a network in CIDR form"),
    ("10.0.0.0/24\n[x]", "prefix length"),
])
def test_host_may_be_a_network(value, problem):
    from agents.keystone import Keystone
    from agents.memcached import Memcached

    for agent in (Keystone, Memcached):
        _config, errors = parse(agent.params, {"OCF_RESKEY_host": value})
        if problem:
            assert len(errors) == 1 and problem in errors[0] and "host" in errors[0], (agent.name, errors)
        else:
            assert not errors, (agent.name, errors)


def test_a_host_name_is_an_api_host_but_not_a_memcached_one():
    from agents.keystone import Keystone
    from agents.memcached import Memcached

    assert not parse(Keystone.params, {"OCF_RESKEY_host": "controller-1.example.org"})[1]
    assert parse(Memcached.params, {"OCF_RESKEY_host": "controller-1.example.org"})[1]


def network_listener(tmp_path, host: str, action: str) -> Listener:
    environ = {"HA_RSCTMP": str(tmp_path), "OCF_RESOURCE_INSTANCE": "one", "OCF_RESKEY_host": host}
    config, errors = parse(Listener.params, environ)
    assert not errors
    return Listener(Environment(action, environ), config, Deadline(2), Logger("listener", {}))


def test_the_address_chosen_at_start_is_what_monitors_use(tmp_path):
    starting = network_listener(tmp_path, "127.0.0.0/8", "start")
    starting.record_listen_address()
    assert starting.host == "127.0.0.1" and starting.endpoint == "127.0.0.1:1"
    assert starting.state.read("listen-address") == "127.0.0.0/8 127.0.0.1\n"
    # A monitor reads the record (no netlink): an address recorded by the start stays the one checked.
    starting.state.write("listen-address", "127.0.0.0/8 127.0.0.9\n")
    assert network_listener(tmp_path, "127.0.0.0/8", "monitor").host == "127.0.0.9"
    # A record of another host parameter is not this one's: resolved anew.
    assert network_listener(tmp_path, "127.0.0.0/16", "monitor").host == "127.0.0.1"
    # A plain address is used as given, and a start with it drops the record.
    plain = network_listener(tmp_path, "127.0.0.1", "start")
    plain.record_listen_address()
    assert plain.host == "127.0.0.1" and plain.state.read("listen-address") is None


def test_no_address_of_this_node_in_the_network_is_not_installed(tmp_path):
    agent = network_listener(tmp_path, "198.18.0.0/24", "start")  # benchmarking addresses: none here
    problems = agent.host_problems()
    assert [(p.code, p.reason) for p in problems] == [
        (OCF.ERR_INSTALLED, "host 198.18.0.0/24: this node has no address in that network")]
    with pytest.raises(OCFError) as refused:
        agent.start_daemon()
    assert refused.value.code == OCF.ERR_INSTALLED
    assert network_listener(tmp_path, "127.0.0.1", "start").host_problems() == []
