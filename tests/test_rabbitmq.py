"""The ``rabbitmq`` agent (installed) against Debian's real rabbitmq-server.

Every test runs the installed agent the way Pacemaker's executor does: one process per action,
parameters in ``OCF_RESKEY_*``, state under a private ``HA_RSCTMP``. Brokers listen on loopback
on ports of their own (never 5672: the machine's own broker may run there), with an epmd of
their own on EPMD_PORT, ended when the module is done.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import tempfile

import pytest

from harness.ocfrun import assert_broken_parameter, assert_passes_ocf_tester
from harness.processes import alive, eventually, processes_holding
from harness.rabbitmq import (
    AGENT,
    RabbitResource,
    amqp_answers,
    consume_all,
    publish_confirmed,
    stop_epmd,
    write_secrets,
)
from harness.stack import HOST

PORT = 28672  # AMQP; distribution on PORT + 1
TESTER_PORT = 28692
SEED_PORT, JOINER_PORT, LONER_PORT = 28702, 28712, 28722
EPMD_PORT = 28670
MESSAGES = 50

pytestmark = [pytest.mark.services,
              pytest.mark.skipif(os.geteuid() != 0, reason="the broker runs as user rabbitmq: needs root")]


@pytest.fixture(scope="module")
def workdir():
    path = tempfile.mkdtemp(prefix="osha-rabbitmq-")
    os.chmod(path, 0o755)  # noqa: S103 - like /var/lib: user rabbitmq reaches its directories below
    yield path
    stop_epmd(EPMD_PORT)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def cookie(workdir):
    _cookie_file, _credentials, value = write_secrets(workdir)
    return value


@pytest.fixture
def resource(workdir, cookie):
    assert os.access(AGENT, os.X_OK), f"{AGENT} is not installed: run `make install` first"
    made = RabbitResource(workdir, PORT, EPMD_PORT)
    yield made
    made.ensure_stopped()


# Parameters and files, no broker --------------------------------------------------------

def test_validate_all_good(resource):
    result = resource("validate-all")
    assert result.rc == 0, result


@pytest.mark.parametrize(("override", "code", "named"), [
    ({"port": "amqp"}, 6, "port"),
    ({"nodename": "rabbit@two@hosts"}, 6, "nodename"),
    ({"nodename": "rabbit;x@localhost"}, 6, "nodename"),
    ({"partition_handling": "pause_majority"}, 6, "partition_handling"),
    ({"peers": "rabbit@a rabbit"}, 6, "peers"),
    ({"host": "rabbit.example.org"}, 6, "host"),
    ({"user": "root"}, 6, "root"),
    ({"user": "no-such-user"}, 5, "no-such-user"),
    ({"nodename": "rabbit@no-such-host.invalid"}, 5, "does not resolve"),
    ({"binary": "/nonexistent/rabbitmq-server"}, 5, "/nonexistent/rabbitmq-server"),
    ({"base_dir": "/nonexistent/dir/rabbitmq"}, 5, "/nonexistent/dir/rabbitmq"),
    # The cookie file is this node's: 5 (the broker may run elsewhere), like every credentials file.
    ({"cookie_file": "/nonexistent/rabbitmq.cookie"}, 5, "/nonexistent/rabbitmq.cookie"),
])
def test_broken_parameter(resource, override, code, named):
    assert_broken_parameter(resource, override, code, named)


@pytest.mark.parametrize("how", ["world-readable", "group-readable", "symlink", "fifo", "not-root", "spaces"])
def test_cookie_file_must_be_root_only(resource, workdir, cookie, how):
    path = os.path.join(workdir, f"cookie-{how}")
    if how == "symlink":
        os.symlink(resource.params["cookie_file"], path)
    elif how == "fifo":
        os.mkfifo(path, 0o600)
    else:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("two words\n" if how == "spaces" else cookie)
        os.chmod(path, {"world-readable": 0o644, "group-readable": 0o640}.get(how, 0o600))
        if how == "not-root":
            shutil.chown(path, "rabbitmq", "rabbitmq")
    try:
        for action in ("validate-all", "start"):
            result = resource(action, cookie_file=path)
            assert result.rc == 5 and path in result.reason, (how, action, result)
            assert cookie not in result.stderr and "two" not in result.reason, result
        assert resource.probe(cookie_file=path).rc == 7
    finally:
        os.unlink(path)


@pytest.mark.parametrize(("how", "code", "named"), [
    ("config_dir-symlink", 5, "symbolic link"),
    ("config_dir-writable", 4, "writable by it alone"),
    ("base_dir-foreign", 4, "must belong to rabbitmq or root"),
])
def test_directories_root_writes_into(resource, workdir, how, code, named):
    path = os.path.join(workdir, how)
    target = os.path.join(workdir, f"{how}-target")
    param = how.split("-")[0]
    if how == "config_dir-symlink":
        os.mkdir(target, 0o755)
        os.symlink(target, path)
    else:
        os.mkdir(path, 0o777 if how == "config_dir-writable" else 0o755)
        os.chmod(path, 0o777 if how == "config_dir-writable" else 0o755)
        if how == "base_dir-foreign":
            shutil.chown(path, "nobody", "nogroup")
    try:
        start = resource("start", **{param: path})
        assert start.rc == code and named in start.reason and path in start.reason, start
        assert resource("monitor").rc == 7
        assert not os.listdir(target if how == "config_dir-symlink" else path), "nothing written there"
    finally:
        for made in (path, target):
            if os.path.islink(made):
                os.unlink(made)
            elif os.path.isdir(made):
                shutil.rmtree(made)


def test_port_taken(resource):
    with socket.create_server((HOST, PORT)):
        start = resource("start")
        assert start.rc == 1 and f"already in use by pid {os.getpid()}" in start.reason, start
        assert len(start.reasons) == 1
    with socket.create_server((HOST, PORT + 1)):
        start = resource("start")
        assert start.rc == 1 and f"distribution port {PORT + 1} is already in use by pid {os.getpid()}" \
            in start.reason, start
    assert resource("monitor").rc == 7
    assert resource("stop").rc == 0


# A real broker ------------------------------------------------------------------------------

def test_start_monitor_stop_and_data_survives_a_restart(resource, workdir, cookie):
    assert resource.probe().rc == 7
    started = resource("start")
    assert started.rc == 0, started
    leader = resource.leader()
    assert os.stat(f"/proc/{leader}").st_uid == pwd.getpwnam("rabbitmq").pw_uid
    assert os.getsid(leader) == leader, "the broker leads its own session"
    with open(f"/proc/{leader}/comm", encoding="utf-8") as handle:
        assert handle.read().strip() == "beam.smp", "the recorded process is the Erlang VM itself"
    assert amqp_answers(PORT), "start returned before AMQP answered"
    copy = os.stat(os.path.join(resource.params["base_dir"], ".erlang.cookie"))
    assert (copy.st_uid, copy.st_mode & 0o777) == (pwd.getpwnam("rabbitmq").pw_uid, 0o400)
    config = os.stat(resource.params["config_dir"])
    assert (config.st_uid, config.st_mode & 0o022) == (0, 0)
    with open(os.path.join(resource.params["config_dir"], "rabbitmq.conf"), encoding="utf-8") as handle:
        assert "cluster_partition_handling = pause_minority\n" in handle.read()

    again = resource("start")
    assert again.rc == 0 and resource.leader() == leader, again
    for depth in (0, 10, 20):
        result = resource("monitor", depth=depth)
        assert result.rc == 0, (depth, result)
    assert resource.probe().rc == 0

    # The cookie is in no command line, no environment, no log of ours.
    assert processes_holding(cookie) == []
    with open(resource.logfile, encoding="utf-8") as handle:
        assert cookie not in handle.read()

    # Depth 20 with credentials the broker rejects: degraded, never a failure of the broker.
    wrong = os.path.join(workdir, "wrong.ini")
    fd = os.open(wrong, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("[credentials]\nusername = guest\npassword = not-the-password\n")
    rejected = resource("monitor", depth=20, credentials=wrong)
    assert rejected.rc == 190 and "rejected" in rejected.reason, rejected
    assert "not-the-password" not in rejected.stderr

    # Confirmed messages survive a stop and a start: the data is never wiped.
    bodies = publish_confirmed(PORT, "test-kept", MESSAGES)
    stopped = resource("stop")
    assert stopped.rc == 0, stopped
    assert not alive(leader)
    assert not amqp_answers(PORT)
    assert resource("stop").rc == 0
    assert resource("monitor").rc == 7
    restarted = resource("start")
    assert restarted.rc == 0, restarted
    with open(resource.logfile, encoding="utf-8") as handle:
        assert "with its existing data" in handle.read()
    assert consume_all(PORT, "test-kept") == bodies
    assert resource("monitor", depth=20).rc == 0

    # kill -9: not running, and a start starts anew (keeping the data).
    leader = resource.leader()
    os.kill(leader, signal.SIGKILL)
    assert eventually(lambda: not alive(leader))
    dead = resource("monitor", depth=10)
    assert dead.rc == 7 and "not running" in dead.reason, dead
    assert resource.probe().rc == 7
    assert resource("start").rc == 0
    assert resource.leader() != leader

    # SIGSTOP: a failure found within the deadline, and stop copes with it (TERM is followed by CONT).
    leader = resource.leader()
    os.kill(leader, signal.SIGSTOP)  # the fixture's finalizer thaws it should an assertion fail
    for depth in (0, 10, 20):
        frozen = resource("monitor", depth=depth, timeout_s=5)
        assert frozen.rc == 1 and frozen.elapsed < 5, (depth, frozen)
        assert "frozen" in frozen.reason and len(frozen.reasons) == 1, frozen
    stopped = resource("stop", timeout_s=30)
    assert stopped.rc == 0 and stopped.elapsed < 30, stopped
    assert not alive(leader)


def agent_log(resource: RabbitResource) -> str:
    with open(resource.logfile, encoding="utf-8") as handle:
        return handle.read()


def test_a_new_node_joins_a_running_peer_and_a_node_with_data_is_never_reset(workdir, cookie):
    seed = RabbitResource(workdir, SEED_PORT, EPMD_PORT, instance="seed")
    joiner = RabbitResource(workdir, JOINER_PORT, EPMD_PORT, instance="joiner")
    loner = RabbitResource(workdir, LONER_PORT, EPMD_PORT, instance="loner")
    seed.params["peers"] = joiner.nodename
    joiner.params["peers"] = seed.nodename
    try:
        # No peer runs: the new node stays alone, the first node of the cluster.
        assert seed("start").rc == 0
        assert f"no peer of {seed.nodename} answers" in agent_log(seed)
        # Alone with its data and still no peer: it restarts as it is.
        assert seed("stop").rc == 0
        assert seed("start").rc == 0
        assert "the first node of the cluster, with its data" in agent_log(seed)
        # A new node joins it: a quorum queue written through one is read through the other.
        joined = joiner("start")
        assert joined.rc == 0, joined
        assert f"new node {joiner.nodename} joined the cluster of {seed.nodename}" in agent_log(joiner)
        bodies = publish_confirmed(SEED_PORT, "test-shared", 10)
        for member in (seed, joiner):
            assert member("monitor", depth=20).rc == 0
        # Restarted, the joined node keeps its data and its membership (no reset, no new join).
        assert joiner("stop").rc == 0
        assert joiner("start").rc == 0
        assert f"node {joiner.nodename} is clustered with running {seed.nodename}" in agent_log(joiner)
        assert consume_all(JOINER_PORT, "test-shared") == bodies

        # A node that ran alone has data of its own: given peers, it is never reset.
        assert loner("start").rc == 0
        kept = publish_confirmed(LONER_PORT, "test-loner", 5)
        assert loner("stop").rc == 0
        refused = loner("start", peers=seed.nodename)
        assert refused.rc == 1 and f"has data of its own and is not clustered with its running peer " \
            f"{seed.nodename}" in refused.reason, refused
        assert loner.data_dir in refused.reason and len(refused.reasons) == 1
        assert loner("monitor").rc == 7
        assert loner("start").rc == 0
        assert consume_all(LONER_PORT, "test-loner") == kept

        # With a broken configuration, a probe still sees ours and stop still stops it.
        leader = loner.leader()
        assert loner.probe(binary="/nonexistent/rabbitmq-server").rc == 0  # never "not running"
        assert loner("stop", binary="/nonexistent/rabbitmq-server", port="amqp").rc == 0
        assert not alive(leader)
    finally:
        for member in (loner, joiner, seed):  # the seed last: the joiner leaves a running cluster
            member.ensure_stopped()


def test_ocf_tester(workdir, cookie):
    tester = RabbitResource(workdir, TESTER_PORT, EPMD_PORT, instance="tester-rabbitmq")
    try:
        assert_passes_ocf_tester(AGENT, tester.instance, tester.params, rsctmp=workdir, timeout=240)
    finally:
        tester.ensure_stopped()
    assert not amqp_answers(TESTER_PORT)
