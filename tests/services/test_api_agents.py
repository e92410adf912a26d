"""keystone, glance-api and nova-api under our installed agents, on the real Debian services."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from harness.processes import alive, eventually
from harness.stack import HOST
from tests.services.conftest import (
    AGENTS,
    PORT_OF,
    assert_passes_ocf_tester,
    assert_refuses_a_taken_port,
    log_dir,
)

pytestmark = pytest.mark.services

SERVICE_USER = {"keystone": "keystone", "glance-api": "glance", "nova-api": "nova"}
# A stop after real work (the depth-20 check's token and API call). A worker that crashes or hangs
# while exiting keeps uWSGI's master waiting for its mercy (60 s): a standby or failover waits too.
STOP_WITHIN_S = 20.0
# What a process dying badly leaves in the console log (uWSGI's crash handler, glibc, libstdc++).
CRASH_MARKS = ("Segmentation Fault", "corrupted", "terminate called")


def uid_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}").st_uid


@pytest.mark.parametrize("name", AGENTS)
def test_lifecycle_and_depths(agent_for, name):
    import pwd

    if name != "keystone":  # the deep check of glance and nova needs a token
        assert agent_for("keystone")("start").rc == 0
    agent = agent_for(name)
    assert agent.probe().rc == 7
    console = agent.params["log_file"]
    offset = os.path.getsize(console) if os.path.exists(console) else 0
    started = agent("start")
    assert started.rc == 0, started
    leader = agent.leader()
    assert uid_of(leader) == pwd.getpwnam(SERVICE_USER[name]).pw_uid
    assert os.getsid(leader) == leader, "the service leads its own session"
    for depth in (0, 10, 20):
        result = agent("monitor", depth=depth)
        assert result.rc == 0, (depth, result)
    assert agent.probe().rc == 0
    again = agent("start")
    assert again.rc == 0 and agent.leader() == leader, again
    pids = agent.session()
    stopped = agent("stop")
    assert stopped.rc == 0 and stopped.elapsed < STOP_WITHIN_S, stopped
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}") and alive(pid)]
    assert not crash_lines(console, offset), crash_lines(console, offset)
    assert agent("stop").rc == 0
    assert agent("monitor").rc == 7


def crash_lines(path: str, offset: int) -> list[str]:
    """The lines of ``path`` after ``offset`` that tell of a process dying badly."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    return [line for line in text.splitlines() if any(mark in line for mark in CRASH_MARKS)]


def test_kill9_is_not_running(agent_for):
    agent = agent_for("keystone")
    assert agent("start").rc == 0
    pids = agent.session()
    os.kill(agent.leader(), signal.SIGKILL)
    assert eventually(lambda: agent("monitor").rc == 7, 10)
    assert agent("stop").rc == 0
    assert not [pid for pid in pids if alive(pid)], "stop also ends what the dead leader left behind"
    # A start right after a crash (state of the dead process still recorded) starts anew.
    assert agent("start").rc == 0
    pids = agent.session()
    os.kill(agent.leader(), signal.SIGKILL)
    # uwsgi's workers (no-orphans) follow their master; they hold the listening socket until then.
    assert eventually(lambda: not [pid for pid in pids if alive(pid)], 20)
    restarted = agent("start")
    assert restarted.rc == 0, restarted
    assert agent("monitor", depth=10).rc == 0


def test_frozen_service_fails_within_budget(agent_for):
    agent = agent_for("keystone")
    assert agent("start").rc == 0
    leader = agent.leader()
    workers = [pid for pid in agent.session() if pid != leader]
    assert workers, "uwsgi runs a master and at least one worker"
    # Only the workers frozen: the master still listens, the HTTP check must time out in budget.
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        assert agent("monitor", depth=0).rc == 0
        frozen = agent("monitor", depth=10, timeout_s=4)
        assert frozen.rc == 1 and frozen.elapsed < 4, frozen
        assert "did not answer" in frozen.reason or "timed out" in frozen.reason, frozen
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    # The whole service frozen: depth 0 already says so, at once.
    for pid in agent.session():
        os.kill(pid, signal.SIGSTOP)
    stopped = agent("monitor", depth=20, timeout_s=4)
    assert stopped.rc == 1 and stopped.elapsed < 4 and "frozen" in stopped.reason, stopped
    # stop copes with a frozen service (TERM is followed by CONT, then KILL if needed).
    assert agent("stop", timeout_s=20).rc == 0


def test_database_down_degrades_keystone(agent_for, mysql_paused):
    agent = agent_for("keystone")
    assert agent("start").rc == 0
    assert agent("monitor", depth=20).rc == 0
    mysql_paused()
    assert agent("monitor", depth=0).rc == 0
    assert agent("monitor", depth=10).rc == 0
    degraded = agent("monitor", depth=20, timeout_s=30)
    assert degraded.rc == 190, degraded
    assert "database" in degraded.reason and "refused the connection" in degraded.reason, degraded
    agent.stack.start_mysql()
    assert eventually(lambda: agent("monitor", depth=20).rc == 0, 30)


def test_rabbitmq_down_degrades_nova(agent_for, rabbit_paused):
    keystone = agent_for("keystone")
    assert keystone("start").rc == 0
    nova = agent_for("nova-api")
    assert nova("start").rc == 0
    assert nova("monitor", depth=20).rc == 0
    rabbit_paused()
    assert nova("monitor", depth=10).rc == 0
    degraded = nova("monitor", depth=20, timeout_s=30)
    assert degraded.rc == 190 and "RabbitMQ" in degraded.reason, degraded


def test_keystone_down_degrades_glance(agent_for):
    glance = agent_for("glance-api")
    assert glance("start").rc == 0
    assert glance("monitor", depth=10).rc == 0
    degraded = glance("monitor", depth=20, timeout_s=20)
    assert degraded.rc == 190 and "keystone" in degraded.reason, degraded


def test_wrong_config_path(agent_for):
    # This node's file: 5, so Pacemaker bans this node and runs the clone's other instances (6 would
    # stop the resource on every node for one node's missing file).
    agent = agent_for("glance-api", config="/nonexistent/glance-api.conf")
    monitor = agent("monitor")
    assert monitor.rc == 5 and "/nonexistent/glance-api.conf" in monitor.reason, monitor
    assert agent.probe().rc == 7
    assert agent("start").rc == 5
    assert agent("validate-all").rc == 5
    assert agent("stop").rc == 0


def test_binary_missing(agent_for):
    agent = agent_for("nova-api", binary="/nonexistent/nova-api-wsgi")
    assert agent.probe().rc == 7
    assert agent("stop").rc == 0
    start = agent("start")
    assert start.rc == 5 and "/nonexistent/nova-api-wsgi" in start.reason, start


def test_port_taken_by_another_process(agent_for):
    assert_refuses_a_taken_port(agent_for("keystone"), HOST, PORT_OF["keystone"])


def test_death_during_start_names_status_and_log_not_log_content(agent_for):
    import re

    agent = agent_for("glance-api", extra_args="--no-such-option 'two words'")
    start = agent("start")
    assert start.rc == 1, start
    console = agent.params["log_file"]
    where = re.search(rf"exited with status (\d+) during start; see {re.escape(console)} from byte (\d+)",
                      start.reason)
    assert where is not None and where.group(1) != "0", start
    assert "no-such-option" not in start.reason, start  # logs stay in logs
    with open(console, "rb") as handle:
        handle.seek(int(where.group(2)))
        assert b"no-such-option" in handle.read()
    assert agent("monitor").rc == 7


def test_bad_credentials_file_mode(agent_for, stack):
    loose = os.path.join(stack.root, "loose-credentials.conf")
    with open(stack.credentials, encoding="utf-8") as source, open(loose, "w", encoding="utf-8") as target:
        target.write(source.read())
    os.chmod(loose, 0o644)
    agent = agent_for("keystone", credentials=loose)
    result = agent("validate-all")
    # One node's file: ERR_INSTALLED (node-local), never ERR_CONFIGURED (stops the clone everywhere).
    assert result.rc == 5 and "0600" in result.reason, result
    assert agent("start").rc == 5
    # A running service is not stopped for it: depth 0 is fine, the deep check reports degraded.
    agent.params["credentials"] = stack.credentials
    assert agent("start").rc == 0
    agent.params["credentials"] = loose
    assert agent("monitor").rc == 0
    deep = agent("monitor", depth=20)
    assert deep.rc == 190 and "0600" in deep.reason, deep


def test_retired_agent_parameters(agent_for, stack):
    """A CIB written for ocf:openstack:nova-api keeps working; the password is never logged."""
    keystone = agent_for("keystone")
    assert keystone("start").rc == 0
    nova = agent_for("nova-api", credentials="", os_username="admin", os_password=stack.admin_password,
                     os_tenant_name="admin", keystone_get_token_url=stack.auth_url,
                     pid="/run/nova/nova-api.pid")
    assert nova("start").rc == 0
    deep = nova("monitor", depth=20)
    assert deep.rc == 0, deep
    with open(nova.logfile, encoding="utf-8") as handle:
        log = handle.read()
    assert "os_password keeps a password in the CIB" in log
    assert "pid is obsolete" in log


@pytest.mark.parametrize("name", AGENTS)
def test_ocf_tester(stack, workdir, name):
    port = str(PORT_OF[name])
    params = {"config": stack.configs[name], "host": HOST, "port": port, "workers": "1",
              "log_file": os.path.join(log_dir(workdir, name), "tester.log")}
    assert_passes_ocf_tester(name, params)


def test_uwsgi_serves_keep_alive_clients(agent_for):
    """A keep-alive client (keystonemiddleware, the openstack client) on one connection, 20 requests.

    uWSGI's --http-socket closes after every answer; unless it says so, the client's next request
    goes to a closed connection.
    """
    import http.client

    agent = agent_for("keystone")
    assert agent("start").rc == 0
    connection = http.client.HTTPConnection(HOST, PORT_OF["keystone"], timeout=30)
    answered = 0
    for _ in range(20):
        try:
            connection.request("GET", "/v3")
            response = connection.getresponse()
            response.read()
            answered += response.status == 200
        except (http.client.HTTPException, OSError):
            connection.close()
    connection.close()
    assert answered == 20, f"{answered} of 20 requests answered"


class FreezableProxy:
    """A TCP relay to the database whose open connections can be frozen: they stay open and carry
    nothing more, as a pooled connection to a moved database does; new connections work."""

    def __init__(self, target: tuple[str, int]) -> None:
        import threading

        self.target = target
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.frozen: set[socket.socket] = set()
        self.open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _peer = self.listener.accept()
                server = socket.create_connection(self.target)
            except OSError:
                return
            self.open |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data or source in self.frozen:
                return  # a frozen connection swallows what it is sent and answers nothing
            try:
                sink.sendall(data)
            except OSError:
                return

    def freeze(self) -> None:
        self.frozen |= self.open

    def close(self) -> None:
        self.listener.close()
        for conn in self.open:
            conn.close()


def test_hung_api_with_healthy_dependencies_fails(agent_for, stack):
    """keystone answers its version document but hangs issuing a token (its pooled database
    connection went dead) while the database takes new connections: the API call cannot eat the
    database check's time; the verdict is a failure (Pacemaker restarts keystone), not degraded."""
    import shutil

    from harness.stack import PORTS

    proxy = FreezableProxy((HOST, PORTS["mysql"]))
    config = os.path.join(os.path.dirname(stack.configs["keystone"]), "keystone-proxied.conf")
    with open(stack.configs["keystone"], encoding="utf-8") as handle:
        text = handle.read().replace(f"{HOST}:{PORTS['mysql']}/", f"{HOST}:{proxy.port}/")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write(text)
    shutil.chown(config, "keystone", "keystone")
    agent = agent_for("keystone", config=config)
    try:
        assert agent("start").rc == 0
        assert agent("monitor", depth=20).rc == 0  # keystone's pool now holds a connection
        proxy.freeze()
        hung = agent("monitor", depth=20, timeout_s=10)
        assert hung.rc == 1 and hung.elapsed < 10, hung
        assert "did not answer" in hung.reason and "database" not in hung.reason, hung
    finally:
        proxy.close()


def test_broken_config_names_file_and_line_never_content(agent_for, stack):
    """A syntax error quotes no line (it may hold a password); ERR_INSTALLED at start (the file is
    this node's), degraded while the service runs on what it read at start."""
    import shutil

    broken = os.path.join(os.path.dirname(stack.configs["keystone"]), "keystone-broken.conf")
    shutil.copy(stack.configs["keystone"], broken)
    shutil.chown(broken, "keystone", "keystone")
    agent = agent_for("keystone", config=broken)
    assert agent("start").rc == 0
    with open(broken, encoding="utf-8") as handle:
        line = len(handle.read().splitlines()) + 1
    with open(broken, "a", encoding="utf-8") as handle:
        handle.write(f"password {stack.db_password}\n")  # no "=" nor ":": a syntax error
    for result, code in ((agent("monitor", depth=20), 190), (agent("validate-all"), 5)):
        assert result.rc == code, result
        assert f"cannot parse {broken} at line {line}" in result.reason, result
        assert stack.db_password not in result.stderr and "password" not in result.reason, result
    assert agent("monitor", depth=10).rc == 0


def test_plain_http_auth_url_off_loopback_is_refused(agent_for, stack):
    """The deep check never sends the password in clear to another host unless told to."""
    remote = os.path.join(stack.root, "remote-credentials.conf")
    with open(stack.credentials, encoding="utf-8") as source:
        text = source.read().replace(stack.auth_url, "http://192.0.2.10:5000/v3")
    fd = os.open(remote, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    keystone = agent_for("keystone")
    assert keystone("start").rc == 0
    glance = agent_for("glance-api", credentials=remote)
    assert glance("start").rc == 0
    refused = glance("monitor", depth=20, timeout_s=10)
    assert refused.rc == 190 and "in clear" in refused.reason, refused
    assert "allow_plain_http" in refused.reason, refused
    # Negative control: the same check to keystone on loopback carries on.
    glance.params["credentials"] = stack.credentials
    assert glance("monitor", depth=20).rc == 0
