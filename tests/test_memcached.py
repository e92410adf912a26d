"""The ``memcached`` agent (installed) against Debian's real memcached.

Every test runs the installed agent the way Pacemaker's executor does: one process per action,
parameters in ``OCF_RESKEY_*``, state under a private ``HA_RSCTMP``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from agents.ocf.codes import OCF, OCFError
from agents.ocf.deadline import Deadline
from agents.ocf.proc import Identity
from harness.memcached import AGENT, MemcachedResource
from harness.ocfrun import assert_broken_parameter, assert_passes_ocf_tester
from harness.processes import alive, eventually
from harness.stack import HOST

PORT = 27411
OTHER_PORT = 27412
MEMCACHED = "/usr/bin/memcached"

pytestmark = [pytest.mark.services,
              pytest.mark.skipif(os.geteuid() != 0, reason="memcached runs as user memcache: needs root")]


def ask(port: int, command: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=5) as conn:
        conn.sendall(command)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="osha-memcached-")
    os.chmod(path, 0o755)  # noqa: S103 - like /run/resource-agents; user memcache reaches its log directory
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def resource(workdir):
    assert os.access(AGENT, os.X_OK), f"{AGENT} is not installed: run `make install` first"
    made = MemcachedResource(workdir, PORT)
    yield made
    made.ensure_stopped()


@pytest.fixture
def foreign_memcached():
    """A memcached started by hand on OTHER_PORT: not ours, whatever our agent is told."""
    proc = subprocess.Popen([MEMCACHED, "-U", "0", "-l", HOST, "-p", str(OTHER_PORT), "-u", "memcache"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert eventually(lambda: _answers(OTHER_PORT)), "the foreign memcached did not start"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _answers(port: int) -> bool:
    try:
        return ask(port, b"version\r\n").startswith(b"VERSION ")
    except OSError:
        return False


def test_start_monitor_at_every_depth_stop(resource, workdir):
    assert resource.probe().rc == 7
    started = resource("start")
    assert started.rc == 0, started
    leader = resource.leader()
    assert os.stat(f"/proc/{leader}").st_uid == pwd.getpwnam("memcache").pw_uid
    assert os.getsid(leader) == leader, "memcached leads its own session"
    assert _answers(PORT), "start returned before the port answered"
    # Its log directory did not exist: made for user memcache, not handed over by root afterwards.
    log_dir = os.stat(os.path.join(workdir, "memcached-logs"))
    assert (log_dir.st_uid, log_dir.st_mode & 0o777) == (pwd.getpwnam("memcache").pw_uid, 0o750)
    again = resource("start")
    assert again.rc == 0 and resource.leader() == leader, again
    for depth in (0, 10, 20):
        result = resource("monitor", depth=depth)
        assert result.rc == 0, (depth, result)
    assert b"STAT curr_items 0\r\n" in _stats(PORT), "depth 20 left its check key behind"
    assert resource.probe().rc == 0
    stopped = resource("stop")
    assert stopped.rc == 0, stopped
    assert not alive(leader)
    assert not _answers(PORT)
    assert resource("stop").rc == 0
    assert resource("monitor").rc == 7


def _stats(port: int) -> bytes:
    with socket.create_connection((HOST, port), timeout=5) as conn:
        conn.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            data += conn.recv(65536)
        return data


def test_kill9_is_not_running_and_start_starts_anew(resource):
    assert resource("start").rc == 0
    leader = resource.leader()
    os.kill(leader, signal.SIGKILL)
    assert eventually(lambda: not alive(leader))
    dead = resource("monitor", depth=10)
    assert dead.rc == 7 and "not running" in dead.reason, dead
    assert resource.probe().rc == 7
    restarted = resource("start")
    assert restarted.rc == 0, restarted
    assert resource.leader() != leader
    assert resource("monitor", depth=20).rc == 0
    assert resource("stop").rc == 0


def test_frozen_fails_within_the_deadline_and_stops(resource):
    assert resource("start").rc == 0
    leader = resource.leader()
    os.kill(leader, signal.SIGSTOP)  # the fixture's finalizer thaws it should an assertion fail
    for depth in (0, 10, 20):
        frozen = resource("monitor", depth=depth, timeout_s=3)
        assert frozen.rc == 1 and frozen.elapsed < 3, (depth, frozen)
        assert "frozen" in frozen.reason and len(frozen.reasons) == 1, frozen
    assert resource.probe().rc == 1
    # stop copes with a frozen server by itself (TERM is followed by CONT).
    stopped = resource("stop", timeout_s=10)
    assert stopped.rc == 0 and stopped.elapsed < 10, stopped
    assert not alive(leader)


def test_depth_10_gives_up_on_a_server_that_accepts_and_never_answers():
    """What depth 0 cannot see (a live process whose threads hang) is cut at the deadline."""
    from agents.memcached import Connection

    with socket.create_server((HOST, 0)) as silent:  # listens (the kernel accepts), never reads
        port = silent.getsockname()[1]
        deadline = Deadline(1.0)
        began = time.monotonic()
        with pytest.raises(OCFError) as failed, Connection(deadline, HOST, port) as conn:
            conn.ask(b"version\r\n", "version")
        assert failed.value.code == OCF.ERR_GENERIC
        assert "did not answer version within" in failed.value.reason
        assert time.monotonic() - began < 1.5


def test_port_taken_by_another_memcached(workdir, foreign_memcached):
    squatted = MemcachedResource(workdir, OTHER_PORT)
    start = squatted("start")
    assert start.rc == 1, start
    assert f"already in use by pid {foreign_memcached.pid} (memcached)" in start.reason, start
    assert len(start.reasons) == 1
    assert squatted.probe().rc == 7
    assert squatted("monitor").rc == 7
    assert squatted("stop").rc == 0
    assert alive(foreign_memcached.pid), "stop signalled a memcached that is not ours"
    assert _answers(OTHER_PORT)


def test_port_taken_by_any_listener(resource):
    with socket.create_server((HOST, PORT)):
        start = resource("start")
        assert start.rc == 1 and f"pid {os.getpid()}" in start.reason, start
    assert resource("monitor").rc == 7


def test_stop_signals_only_what_is_provably_ours(resource):
    """The recorded pid now belongs to another program (a pid reused after a crash): left alone."""
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        identity = Identity.of(bystander.pid)
        assert identity is not None
        os.makedirs(os.path.dirname(resource.state_file), exist_ok=True)
        with open(resource.state_file, "w", encoding="utf-8") as handle:
            handle.write(Identity(bystander.pid, identity.start_time - 1).dump())
        assert resource("monitor").rc == 7
        assert resource.probe().rc == 7
        assert resource("stop").rc == 0
        assert alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize(("override", "code", "named"), [
    ({"port": "eleven"}, OCF.ERR_CONFIGURED, "port"),
    ({"memory_mb": "1"}, OCF.ERR_CONFIGURED, "memory_mb"),
    ({"max_connections": "10"}, OCF.ERR_CONFIGURED, "max_connections"),
    ({"host": "memcache.example.org"}, OCF.ERR_CONFIGURED, "host"),
    ({"host": "127.0.0.1\n-d"}, OCF.ERR_CONFIGURED, "host"),
    ({"log_file": "relative.log"}, OCF.ERR_CONFIGURED, "log_file"),
    # this node's file system, not the cluster-wide configuration: 5, the resource may run elsewhere
    ({"log_file": "/nonexistent/dir/memcached.log"}, OCF.ERR_INSTALLED, "/nonexistent/dir"),
    ({"user": "root"}, OCF.ERR_CONFIGURED, "root"),
    ({"user": "no-such-user"}, OCF.ERR_INSTALLED, "no-such-user"),
    ({"binary": "/nonexistent/memcached"}, OCF.ERR_INSTALLED, "/nonexistent/memcached"),
    # A configuration error wins over a missing program.
    ({"port": "0", "binary": "/nonexistent/memcached"}, OCF.ERR_CONFIGURED, "port"),
])
def test_broken_parameter(resource, override, code, named):
    assert_broken_parameter(resource, override, code, named)


def test_stop_with_a_broken_configuration_still_stops_ours(resource):
    assert resource("start").rc == 0
    leader = resource.leader()
    assert resource.probe(binary="/nonexistent/memcached").rc == 0  # ours runs: never "not running"
    assert resource("stop", binary="/nonexistent/memcached", port="eleven").rc == 0
    assert not alive(leader)


def test_death_during_start_names_status_and_log_never_content(resource):
    start = resource("start", host="192.0.2.1")  # TEST-NET-1: not an address of this machine
    assert start.rc == 1, start
    log = resource.params["log_file"]
    assert f"memcached exited with status 71 during start; see {log} from byte 0" in start.reason, start
    assert "Cannot assign" not in start.reason  # the log says why; the exit reason says where
    with open(log, encoding="utf-8", errors="replace") as handle:
        assert "Cannot assign requested address" in handle.read()
    assert resource("monitor").rc == 7


def test_ocf_tester(workdir):
    params = {"host": HOST, "port": str(PORT), "log_file": os.path.join(workdir, "tester-logs", "tester.log")}
    try:
        assert_passes_ocf_tester(AGENT, "tester-memcached", params, workdir, timeout=120)
    finally:
        MemcachedResource(workdir, PORT, instance="tester-memcached").ensure_stopped()
    assert not _answers(PORT)
