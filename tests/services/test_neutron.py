"""neutron-server (ML2) under our installed agent, on the real Debian service.

The service's configuration and its ML2 plugin's file (``plugin_config``) come from
``harness.stack.Stack.prepare_neutron``: its database on the stack's MariaDB, RabbitMQ for its RPC
workers, ``auth_strategy = noauth`` (keystone still issues the deep check's token).
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from harness.processes import alive, eventually
from harness.stack import HOST, PORTS
from tests.services.conftest import assert_passes_ocf_tester, assert_refuses_a_taken_port, log_dir

pytestmark = pytest.mark.services

NAME = "neutron-server"


@pytest.fixture(scope="module")
def neutron(stack):
    """The stack with neutron's database migrated (once for this module)."""
    if NAME not in stack.configs:
        stack.prepare_neutron()
    return stack


@pytest.fixture
def server(neutron, agent_for):
    """``server(**params)``: our agent for neutron-server with the stack's plugin file."""

    def make(**params: str):
        return agent_for(NAME, **{"plugin_config": neutron.neutron_plugin_config, **params})

    return make


@pytest.fixture
def keystone(agent_for):
    started = agent_for("keystone")
    assert started("start").rc == 0
    return started


def argv_of(pid: int) -> list[str]:
    """Split on spaces too: neutron-server rewrites its title into one string (setproctitle)."""
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().replace(b"\0", b" ").decode().split()


def test_lifecycle_depths_and_plugin_config(keystone, server, neutron):
    import pwd

    agent = server()
    assert agent.probe().rc == 7
    started = agent("start")
    assert started.rc == 0, started
    leader = agent.leader()
    assert os.stat(f"/proc/{leader}").st_uid == pwd.getpwnam("neutron").pw_uid
    assert os.getsid(leader) == leader, "the service leads its own session"
    argv = argv_of(leader)
    # The plugin's file is read after the configuration and before the agent's listen override.
    files = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--config-file"]
    assert files[:2] == [neutron.configs[NAME], neutron.neutron_plugin_config], argv
    assert files[2].endswith("/listen.conf"), argv
    for depth in (0, 10, 20):
        result = agent("monitor", depth=depth)
        assert result.rc == 0, (depth, result)
    again = agent("start")
    assert again.rc == 0 and agent.leader() == leader, again
    pids = agent.session()
    assert len(pids) > 1, "neutron-server runs its API and RPC workers beside the parent"
    assert agent("stop").rc == 0
    assert not [pid for pid in pids if alive(pid)]
    assert agent("stop").rc == 0
    assert agent("monitor").rc == 7


def test_keep_alive_client(server):
    """The eventlet server keeps a keep-alive connection usable: 20 requests on one connection."""
    import http.client

    agent = server()
    assert agent("start").rc == 0
    connection = http.client.HTTPConnection(HOST, PORTS["neutron"], timeout=30)
    answered = 0
    for _ in range(20):
        try:
            connection.request("GET", "/v2.0/networks", headers={"X-Auth-Token": "any"})
            response = connection.getresponse()
            response.read()
            answered += response.status == 200
        except (http.client.HTTPException, OSError):
            connection.close()
    connection.close()
    assert answered == 20, f"{answered} of 20 requests answered"


def test_frozen_then_killed(server):
    agent = server()
    assert agent("start").rc == 0
    leader = agent.leader()
    for pid in agent.session():
        os.kill(pid, signal.SIGSTOP)
    try:
        frozen = agent("monitor", depth=10, timeout_s=4)
        assert frozen.rc == 1 and frozen.elapsed < 4 and "frozen" in frozen.reason, frozen
    finally:
        for pid in agent.session():
            os.kill(pid, signal.SIGCONT)
    assert agent("monitor", depth=10).rc == 0
    pids = agent.session()
    os.kill(leader, signal.SIGKILL)
    assert eventually(lambda: agent("monitor").rc == 7), "kill -9 of the parent: not running"
    assert agent("stop").rc == 0
    assert eventually(lambda: not [pid for pid in pids if alive(pid)]), "the workers follow their parent"
    restarted = agent("start")
    assert restarted.rc == 0 and agent.leader() != leader, restarted
    assert agent("monitor", depth=10).rc == 0


def test_dependencies_down_degrade(keystone, server, neutron, mysql_paused, rabbit_paused):
    agent = server()
    assert agent("start").rc == 0
    assert agent("monitor", depth=20).rc == 0
    mysql_paused()
    assert agent("monitor", depth=10).rc == 0
    degraded = agent("monitor", depth=20, timeout_s=30)
    # keystone shares the database here: it cannot issue the token, and says so first.
    assert degraded.rc == 190 and ("database" in degraded.reason or "keystone" in degraded.reason), degraded
    neutron.start_mysql()
    assert eventually(lambda: agent("monitor", depth=20).rc == 0, 30)
    rabbit_paused()
    degraded = agent("monitor", depth=20, timeout_s=30)
    assert degraded.rc == 190 and "RabbitMQ" in degraded.reason, degraded
    neutron.start_rabbit()
    keystone("stop")
    degraded = agent("monitor", depth=20, timeout_s=20)
    assert degraded.rc == 190 and "keystone" in degraded.reason, degraded


def test_broken_plugin_config(keystone, server, neutron):
    """A syntax error in the plugin's file: 5 at start (this node's file), 190 while running; the
    file and line are named, the line never quoted. A missing plugin file: 5, probe 7, stop 0."""
    broken = os.path.join(os.path.dirname(neutron.neutron_plugin_config), "ml2-broken.ini")
    shutil.copy(neutron.neutron_plugin_config, broken)
    shutil.chown(broken, "neutron", "neutron")
    agent = server(plugin_config=broken)
    assert agent("start").rc == 0
    with open(broken, encoding="utf-8") as handle:
        line = len(handle.read().splitlines()) + 1
    with open(broken, "a", encoding="utf-8") as handle:
        handle.write(f"password {neutron.db_password}\n")  # no "=" nor ":": a syntax error
    for result, code in ((agent("monitor", depth=20), 190), (agent("validate-all"), 5)):
        assert result.rc == code, result
        assert f"cannot parse {broken} at line {line}" in result.reason, result
        assert neutron.db_password not in result.stderr and "password" not in result.reason, result
    assert agent("monitor", depth=10).rc == 0
    assert agent("stop").rc == 0
    start = agent("start")
    assert start.rc == 5 and f"cannot parse {broken} at line {line}" in start.reason, start
    assert agent("monitor").rc == 7

    missing = server(plugin_config="/nonexistent/ml2_conf.ini")
    assert missing.probe().rc == 7
    start = missing("start")
    assert start.rc == 5 and "/nonexistent/ml2_conf.ini" in start.reason, start
    assert missing("stop").rc == 0


def test_port_taken_by_another_process(server):
    assert_refuses_a_taken_port(server(), HOST, PORTS["neutron"])


def test_ocf_tester(neutron, workdir):
    params = {"config": neutron.configs[NAME], "plugin_config": neutron.neutron_plugin_config, "host": HOST,
              "port": str(PORTS["neutron"]), "workers": "1",
              "log_file": os.path.join(log_dir(workdir, NAME), "tester.log")}
    assert_passes_ocf_tester(NAME, params)
