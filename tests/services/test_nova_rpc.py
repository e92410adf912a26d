"""``nova-conductor`` and ``nova-scheduler`` (our installed agents) against real services: Debian's
nova on a RabbitMQ broker run by our ``rabbitmq`` agent and the stack's MariaDB, on loopback.

The broker has a vhost and an account of nova's own (``rabbitmqctl add_user`` reads the password
from its standard input); the services' configuration is a copy of the stack's nova.conf on that
broker. The proof that nova's RPC path crosses the bus is a server create through nova-api (the
stack's, run by our agent on the same configuration): with no compute node the scheduler finds
no host, and the server goes to ERROR with the fault "No valid host was found", which needs
nova-api → conductor → scheduler → conductor over the bus.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable

import pytest

from harness import ocfrun
from harness.nova_rpc import (
    NovaRpcResource,
    add_account,
    admin_token,
    buried_in_cell0,
    create_server,
    listed,
    make_flavor,
    make_image,
    nova_config,
    start_placement,
    without_transport_url,
)
from harness.ocfrun import TimedResult
from harness.processes import alive, eventually, processes_holding
from harness.rabbitmq import RabbitResource, stop_epmd, write_secrets
from harness.stack import HOST
from tests.services.conftest import ArgvWatcher, log_dir

BROKER_PORT = 28900  # AMQP; distribution on 28901
EPMD_PORT = 28910
SERVICES = ("nova-conductor", "nova-scheduler")
DEGRADED_WITHIN_S = 30.0  # a stopped broker closes its connections: the services see it at once
RECONNECTED_WITHIN_S = 90.0  # oslo.messaging's reconnection backoff (rabbit_interval_max 5 s here)
NO_VALID_HOST_WITHIN_S = 120.0
# Each stop after the server create (a service that hangs in its exit keeps a standby or a failover
# waiting: uWSGI's mercy for a worker is 60 s, oslo.service's graceful_shutdown_timeout too).
STOP_WITHIN_S = 20.0

pytestmark = [pytest.mark.services]

STARTS: dict[str, list[float]] = {name: [] for name in SERVICES}
MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module")
def bus(stack):
    """The broker (our agent) with nova's vhost and account; its password, and a watcher of argv."""
    assert os.access(RabbitResource.AGENT, os.X_OK), "the rabbitmq agent is not installed: run make install"
    workdir = tempfile.mkdtemp(prefix="osha-nova-bus-")
    os.chmod(workdir, 0o755)  # noqa: S103 - user rabbitmq reaches its directories below
    write_secrets(workdir)
    broker = RabbitResource(workdir, BROKER_PORT, EPMD_PORT, instance="nova-bus")
    password = "nova-" + secrets.token_hex(12)
    watcher = ArgvWatcher((password,))
    watcher.start()
    try:
        started = broker("start")
        assert started.rc == 0, started
        add_account(broker, "nova", password, "nova")
        yield broker, password, watcher
    finally:
        watcher.halt.set()
        watcher.join(5)
        broker.ensure_stopped()
        stop_epmd(EPMD_PORT)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def placement(stack):
    """The scheduler's placement service (Debian's), up for the whole module."""
    daemon = start_placement(stack)
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def config(stack, bus, placement):
    _broker, password, _watcher = bus
    return nova_config(stack, f"rabbit://nova:{password}@{HOST}:{BROKER_PORT}/nova")


@pytest.fixture
def rpc_for(workdir, config):
    """``rpc_for(name)``: our agent for one RPC service, stopped again after the test."""
    made: list[NovaRpcResource] = []

    def make(name: str, **params: str) -> NovaRpcResource:
        logs = log_dir(workdir, "nova-api")  # user nova's log directory
        resource = NovaRpcResource(name, workdir, config, os.path.join(logs, f"{name}.log"))
        resource.params.update(params)
        made.append(resource)
        return resource

    yield make
    for resource in reversed(made):
        resource.ensure_stopped()


def started(resource: NovaRpcResource) -> NovaRpcResource:
    result = resource("start")
    assert result.rc == 0, (result, log_tail(resource.params["log_file"]))
    STARTS[resource.NAME].append(result.elapsed)
    return resource


def log_tail(path: str) -> str:
    """The end of a service's log, for a failed assertion's message."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()[-3000:]
    except OSError as exc:
        return f"({path}: {exc.strerror})"


def grep_errors(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "\n".join(line for line in handle if " ERROR " in line or "Error" in line)[-4000:]
    except OSError as exc:
        return f"({path}: {exc.strerror})"


def uid_of(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


@pytest.mark.parametrize("name", SERVICES)
def test_lifecycle_and_depths(rpc_for, name):
    resource = rpc_for(name)
    assert resource.probe().rc == 7
    started(resource)
    leader = resource.leader()
    assert uid_of(leader) == pwd.getpwnam("nova").pw_uid
    with open(f"/proc/{leader}/cmdline", "rb") as handle:
        argv = handle.read().split(b"\0")
    assert b"--config-file" in argv and resource.params["config"].encode() in argv
    assert b"--log-file" in argv and resource.params["log_file"].encode() in argv
    assert os.getsid(leader) == leader  # a session of its own
    for depth in (0, 10):
        times = []
        for _round in range(5):
            result = resource("monitor", depth=depth)
            assert result.rc == 0, (depth, result)
            times.append(result.elapsed)
        MEASURED[f"{name}: monitor depth {depth}, median of 5 (the agent's whole process)"] = sorted(times)[2]
    again = resource("start")  # running already: kept
    assert again.rc == 0 and resource.leader() == leader, again
    os.remove(os.path.join(resource.state_dir, "brokers"))  # the brokers recorded at start: read anew
    again = resource("start")
    assert again.rc == 0 and resource.leader() == leader, again
    assert resource("monitor", depth=10).rc == 0
    session = resource.session()
    assert leader in session  # workers = 1: oslo.service runs the service in this one process
    assert {uid_of(pid) for pid in session} == {pwd.getpwnam("nova").pw_uid}
    assert os.stat(resource.params["log_file"]).st_uid == pwd.getpwnam("nova").pw_uid
    stop = resource("stop")
    assert stop.rc == 0, stop
    assert not [pid for pid in session if alive(pid)]
    assert resource("monitor").rc == 7
    assert resource("stop").rc == 0


@pytest.mark.parametrize("name", SERVICES)
def test_workers_hold_the_connection(rpc_for, stack, bus, name):
    """With workers (oslo.service's parent forks them), the connections are the workers': still up."""
    _broker, password, _watcher = bus
    config = nova_config(stack, f"rabbit://nova:{password}@{HOST}:{BROKER_PORT}/nova",
                         name="nova-workers.conf", workers=2)
    resource = started(rpc_for(name, config=config))
    session = eventually(lambda: len(resource.session()) >= 3 and resource.session(), timeout=30)
    assert session, resource.session()
    assert resource("monitor", depth=10).rc == 0
    assert resource("stop").rc == 0
    assert not [pid for pid in session if alive(pid)]


@pytest.mark.parametrize("name", SERVICES)
def test_kill9_is_not_running(rpc_for, name):
    resource = started(rpc_for(name))
    session = resource.session()
    os.kill(resource.leader(), signal.SIGKILL)
    result = eventually(lambda: (found := resource("monitor")).rc == 7 and found, timeout=10, every=0.2)
    assert result, resource("monitor")
    assert resource("stop").rc == 0
    assert eventually(lambda: not [pid for pid in session if alive(pid)], timeout=30)


@pytest.mark.parametrize("name", SERVICES)
def test_frozen_is_a_failure(rpc_for, name):
    resource = started(rpc_for(name))
    os.kill(resource.leader(), signal.SIGSTOP)
    try:
        result = resource("monitor")
        assert result.rc == 1 and "frozen" in result.reason, result
    finally:
        os.kill(resource.leader(), signal.SIGCONT)
    assert resource("monitor").rc == 0


def depth10_answers(resource: NovaRpcResource, code: int) -> Callable[[], TimedResult | None]:
    """A check for ``eventually``: the depth-10 monitor's result once it answers ``code``."""

    def check() -> TimedResult | None:
        result = resource("monitor", depth=10)
        return result if result.rc == code else None

    return check


def test_broker_down_degrades_then_recovers(rpc_for, bus):
    broker, _password, _watcher = bus
    resources = [started(rpc_for(name)) for name in SERVICES]
    stopped = broker("stop")
    assert stopped.rc == 0, stopped
    began = time.monotonic()
    try:
        for resource in resources:
            result = eventually(depth10_answers(resource, 190), timeout=DEGRADED_WITHIN_S, every=0.5)
            assert result, resource("monitor", depth=10)
            MEASURED[f"{resource.NAME}: degraded after the broker's stop"] = time.monotonic() - began
            assert "not connected to any broker of transport_url" in result.reason, result
            assert resource("monitor").rc == 0  # depth 0: the process is fine
    finally:
        back = broker("start")
        assert back.rc == 0, back
    began = time.monotonic()
    for resource in resources:
        assert eventually(depth10_answers(resource, 0), timeout=RECONNECTED_WITHIN_S, every=0.5), \
            resource("monitor", depth=10)
        MEASURED[f"{resource.NAME}: connected again after the broker's start"] = time.monotonic() - began


def test_start_with_the_broker_down_says_so(rpc_for, bus):
    broker, _password, _watcher = bus
    stopped = broker("stop")
    assert stopped.rc == 0, stopped
    try:
        resource = rpc_for("nova-scheduler")
        result = resource("start", timeout_s=30)
        assert result.rc == 1, result
        assert "no broker of transport_url" in result.reason, result
        assert "accepts connections" in result.reason, result
    finally:
        back = broker("start")
        assert back.rc == 0, back


@pytest.mark.parametrize("name", SERVICES)
def test_missing_transport_url_is_a_configuration_error(rpc_for, stack, config, name):
    broken = without_transport_url(stack, config)
    resource = rpc_for(name, config=broken)
    for action in ("validate-all", "start"):
        result = resource(action)
        assert result.rc == 6, (action, result)
        assert result.reason == f"transport_url is not set in [DEFAULT] of {broken}", result
    assert resource.probe().rc == 7
    assert resource("stop").rc == 0


def test_root_user_and_missing_binary_are_refused(rpc_for):
    resource = rpc_for("nova-conductor")
    result = resource("validate-all", user="root")
    assert result.rc == 6 and "root" in result.reason, result
    result = resource("validate-all", binary="/nonexistent/nova-conductor")
    assert result.rc == 5, result
    assert resource.probe(binary="/nonexistent/nova-conductor").rc == 7
    assert resource("stop", binary="/nonexistent/nova-conductor").rc == 0


@pytest.mark.parametrize("name", SERVICES)
def test_ocf_tester(workdir, config, name):
    logs = log_dir(workdir, "nova-api")
    ocfrun.assert_passes_ocf_tester(NovaRpcResource(name, workdir, config, "").AGENT, f"tester-{name}",
                                    {"config": config, "log_file": os.path.join(logs, f"tester-{name}.log")},
                                    rsctmp=workdir, timeout=400)


def test_server_create_crosses_the_bus_to_no_valid_host(stack, agent_for, rpc_for, config):
    """nova-api → conductor → scheduler → conductor: the server ends in ERROR, "No valid host"; then
    every service stops promptly."""
    apis = [agent_for(name) for name in ("keystone", "glance-api")]
    for agent in apis:
        result = agent("start")
        assert result.rc == 0, (agent.name, result)
    api = agent_for("nova-api", config=config)
    result = api("start")
    assert result.rc == 0, result
    rpcs = [started(rpc_for(name)) for name in SERVICES]
    token = admin_token(stack)
    image = make_image()
    try:
        flavor = make_flavor(token)
        server_id = create_server(token, image, flavor)
    except AssertionError as exc:
        api_log = os.path.join(os.path.dirname(config), "nova-api.log")
        raise AssertionError(f"{exc}; {grep_errors(api_log)}") from None
    assert server_id in listed(token)
    # The server's state and fault as the conductor wrote them (nova-api's server views ask neutron
    # for security groups, and no neutron runs here): read from cell0's database.
    found = eventually(lambda: buried_in_cell0(stack, server_id)[0] == "error",
                       timeout=NO_VALID_HOST_WITHIN_S, every=0.5)
    state, fault = buried_in_cell0(stack, server_id)
    assert found and "No valid host was found" in fault, (state, fault)
    for resource in (*reversed(rpcs), api, *reversed(apis)):
        name = resource.NAME if isinstance(resource, NovaRpcResource) else resource.name
        stopped = resource("stop")
        assert stopped.rc == 0 and stopped.elapsed < STOP_WITHIN_S, (name, stopped)
        MEASURED[f"{name}: stop after the server create"] = stopped.elapsed


def test_the_broker_password_is_nowhere(bus, workdir):
    """Last: in no argv (all module long), no other process's environment, no agent log or exit reason."""
    broker, password, watcher = bus
    assert watcher.scans > 10 and not watcher.hits, (watcher.scans, watcher.hits)
    assert not processes_holding(password, exclude={os.getpid()})
    with open(os.path.join(workdir, "agents.log"), "rb") as handle:
        text = handle.read()
        assert password.encode() not in text
        assert b"nova-conductor" in text  # it is the log our agents wrote
    logs = log_dir(workdir, "nova-api")
    for name in os.listdir(logs):
        with open(os.path.join(logs, name), "rb") as handle:
            assert password.encode() not in handle.read(), name
    del broker


def test_measurements_are_reported():
    """The measured start times and outage reactions (docs/nova-rpc.md): printed with -s."""
    for name, times in STARTS.items():
        if times:
            print(f"{name}: {len(times)} starts, median {sorted(times)[len(times) // 2]:.1f} s, "
                  f"max {max(times):.1f} s")
    for what, seconds in MEASURED.items():
        print(f"{what}: {seconds:.3f} s")
