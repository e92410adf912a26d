"""The ``haproxy`` agent (installed) against Debian's real HAProxy and real HTTP backends on loopback.

Every test runs the installed agent the way Pacemaker's executor does: one process per action,
parameters in ``OCF_RESKEY_*``, state under a private ``HA_RSCTMP``; the configuration files are
written by the test, the backends are HTTP servers of the test.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest
from lxml import etree

from agents.haproxy import (
    FALLBACK_SUFFIX,
    MasterCLI,
    describe_backends,
    fallback_of,
    first_error_line,
    master_socket,
    parse_stat,
)
from agents.ocf.codes import OCF
from agents.ocf.deadline import Deadline
from harness.haproxy import AGENT, Backend, HAProxyResource, Stream, get, write_config
from harness.ocfrun import assert_passes_ocf_tester
from harness.processes import alive, eventually
from harness.stack import HOST

FRONT = 27440
KEYSTONE_PORTS = (27441, 27442)
GLANCE_PORT = 27443
NEW_PORT = 27444

pytestmark = [pytest.mark.services,
              pytest.mark.skipif(os.geteuid() != 0, reason="the HAProxy master runs as root")]


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="osha-haproxy-")
    os.chmod(path, 0o755)  # noqa: S103 - like /run/resource-agents
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def backends():
    made = {"k1": Backend("k1", KEYSTONE_PORTS[0]).start(), "k2": Backend("k2", KEYSTONE_PORTS[1]).start(),
            "g1": Backend("g1", GLANCE_PORT).start()}
    yield made
    for backend in made.values():
        backend.stop()


def two_backends(path: str) -> None:
    write_config(path, FRONT, {"keystone": [("k1", KEYSTONE_PORTS[0]), ("k2", KEYSTONE_PORTS[1])],
                               "glance-api": [("g1", GLANCE_PORT)]})


@pytest.fixture
def resource(workdir):
    assert os.access(AGENT, os.X_OK), f"{AGENT} is not installed: run `make install` first"
    made = HAProxyResource(workdir)
    two_backends(made.params["config"])
    yield made
    made.ensure_stopped()


def workers(leader: int) -> list[int]:
    with open(f"/proc/{leader}/task/{leader}/children", encoding="ascii") as handle:
        return [int(pid) for pid in handle.read().split()]


def serves(expected: str) -> bool:
    try:
        return get(FRONT) == expected
    except OSError:
        return False


# Declarations -----------------------------------------------------------------------

def test_meta_data_advertises_reload_agent_and_the_reloadable_digest():
    env = {"OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1"}
    done = subprocess.run([AGENT, "meta-data"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    root = etree.fromstring(done.stdout.encode())
    assert root.get("name") == "haproxy"
    params = {p.get("name"): p for p in root.iterfind("parameters/parameter")}
    assert set(params) == {"config", "binary", "config_digest", "log_file"}
    assert params["config_digest"].get("reloadable") == "1"
    assert not [name for name, p in params.items() if p.get("reloadable") == "1" and name != "config_digest"]
    actions = {(a.get("name"), a.get("depth", "0")) for a in root.iterfind("actions/action")}
    wanted = {("start", "0"), ("stop", "0"), ("reload-agent", "0"), ("monitor", "0"), ("monitor", "10")}
    assert wanted <= actions
    assert not [a for a in actions if a[0] in ("promote", "demote")]


def test_show_stat_parsing_and_the_bounded_reason():
    header = "# pxname,svname,qcur,status,type,"
    rows = ["fe,FRONTEND,,OPEN,0,", "keystone,k1,0,UP,2,", "keystone,k2,0,DOWN,2,",
            "keystone,BACKEND,0,UP,1,", "glance,g1,0,DOWN 1/2,2,", "glance,g2,0,MAINT,2,",
            "nova,n1,0,no check,2,", f"glance,{fallback_of('g1')},0,no check,2,", "stats,BACKEND,0,UP,1,"]
    backends = parse_stat("\n".join([header, *rows]) + "\n")
    assert backends == {"keystone": (["k1"], ["k2"]), "glance": ([], ["g1", "g2"]), "nova": (["n1"], [])}
    assert describe_backends(backends) == ["backends without a server: glance", "servers down: keystone/k2"]
    assert describe_backends({"a": ([], ["x"]), "b": ([], ["y"])}) == [
        "no backend has a server up; backends without a server: a, b"]
    many = {f"b{i}": (["up"], ["down"]) for i in range(12)}
    assert describe_backends(many) == ["servers down: b0/down, b1/down, b2/down, b3/down, b4/down and 7 more"]
    assert describe_backends({}) == []
    assert describe_backends({"only": (["s"], [])}) == []


def test_first_error_line_only_from_the_checked_file():
    output = ["[NOTICE]   (1) : haproxy version is 2.6.12",
              "[ALERT]    (1) : config : parsing [/etc/other.cfg:3] : something",
              "[ALERT]    (1) : config : parsing [/tmp/h.cfg:19] : unknown keyword 'x'"]
    assert first_error_line(output, "/tmp/h.cfg") == 19
    assert first_error_line(output, "/tmp/none.cfg") is None


# validate-all -------------------------------------------------------------------------

def test_validate_all_accepts_a_good_configuration(resource):
    result = resource("validate-all")
    assert result.rc == 0, result


def test_syntax_error_is_err_configured_with_its_line_and_never_the_content(resource):
    config = resource.params["config"]
    with open(config, "a", encoding="utf-8") as handle:
        handle.write("    sekrit-keyword-xyzzy on\n")
    with open(config, encoding="utf-8") as handle:
        line = len(handle.read().splitlines())
    for action in ("validate-all", "start"):
        result = resource(action)
        assert result.rc == OCF.ERR_CONFIGURED, (action, result)
        assert len(result.reasons) == 1, result
        assert "check" in result.reason and f"line {line}" in result.reason, result
        assert "xyzzy" not in result.stderr, "the file's content reached the exit reason"
    with open(resource.logfile, encoding="utf-8") as handle:
        assert "xyzzy" in handle.read(), "haproxy's words belong in the agent's log"
    assert resource.probe().rc == 7
    assert resource("monitor").rc == 7
    assert resource("stop").rc == 0


@pytest.mark.parametrize(("override", "named"), [
    ({"config": "/nonexistent/haproxy.cfg"}, "/nonexistent/haproxy.cfg"),
    ({"binary": "/nonexistent/haproxy"}, "/nonexistent/haproxy"),
    ({"log_file": "/nonexistent/dir/haproxy.log"}, "/nonexistent/dir"),
])
def test_missing_file_program_or_log_directory_is_err_installed(resource, override, named):
    for action in ("validate-all", "start"):
        result = resource(action, **override)
        assert result.rc == OCF.ERR_INSTALLED and named in result.reason, (action, result)
        assert len(result.reasons) == 1, result
    assert resource.probe(**override).rc == 7
    assert resource("stop", **override).rc == 0


@pytest.mark.parametrize("override", [{"config": "relative.cfg"}, {"config_digest": "abc def"}])
def test_malformed_parameter_is_err_configured(resource, override):
    result = resource("validate-all", **override)
    assert result.rc == OCF.ERR_CONFIGURED and next(iter(override)) in result.reason, result


# start, monitor, stop -----------------------------------------------------------------

def test_start_monitor_stop(resource, backends):
    assert resource.probe().rc == 7
    started = resource("start")
    assert started.rc == 0, started
    leader = resource.leader()
    assert os.stat(f"/proc/{leader}").st_uid == 0, "the master runs as root"
    assert os.getsid(leader) == leader, "haproxy leads its own session"
    children = workers(leader)
    assert children, "start returned before a worker was up"
    assert {os.stat(f"/proc/{pid}").st_uid for pid in children} == {pwd.getpwnam("haproxy").pw_uid}
    assert get(FRONT) in ("k1", "k2"), "start returned before the front answered"
    socket_path = os.path.join(resource.state_dir, "master.sock")
    assert os.stat(socket_path).st_mode & 0o077 == 0
    again = resource("start")
    assert again.rc == 0 and resource.leader() == leader, again
    assert eventually(lambda: resource("monitor", depth=10).rc == 0, timeout=10), resource("monitor", 10)
    assert resource("monitor").rc == 0
    assert resource.probe().rc == 0
    stopped = resource("stop")
    assert stopped.rc == 0, stopped
    assert not alive(leader) and not [pid for pid in children if alive(pid)]
    assert not os.path.exists(socket_path)
    assert not serves("k1") and not serves("k2")
    assert resource("stop").rc == 0
    assert resource("monitor").rc == 7


def test_backends_and_servers_down_are_degraded(resource, backends):
    assert resource("start").rc == 0
    assert eventually(lambda: resource("monitor", depth=10).rc == 0, timeout=10)
    backends["k2"].stop()
    one = eventually(lambda: _degraded(resource), timeout=10)
    assert one and one.rc == OCF.DEGRADED and "keystone/k2" in one.reason, one
    assert "without a server" not in one.reason, one
    assert resource("monitor").rc == 0, "depth 0 does not look at the backends"
    backends["k1"].stop()
    empty = eventually(lambda: _degraded(resource, "backends without a server: keystone"), timeout=10)
    assert empty and empty.rc == OCF.DEGRADED and len(empty.reasons) == 1, empty
    assert "glance-api" not in empty.reason and "no backend" not in empty.reason, empty
    backends["g1"].stop()
    none = eventually(lambda: _degraded(resource, "no backend has a server up"), timeout=10)
    assert none and none.rc == OCF.DEGRADED, none
    assert "keystone" in none.reason and "glance-api" in none.reason, none
    assert alive(resource.leader()), "a proxy without servers keeps running (it answers 503)"
    backends["k1"].start()
    assert eventually(lambda: serves("k1"), timeout=10)
    assert resource("stop").rc == 0


def _degraded(resource: HAProxyResource, wanted: str = ""):
    result = resource("monitor", depth=10)
    return result if result.rc == OCF.DEGRADED and wanted in result.reason else None


def test_configuration_without_servers_is_healthy(resource):
    write_config(resource.params["config"], FRONT, {},
                 extra=f"listen stats\n    bind {HOST}:{NEW_PORT}\n    stats enable\n    stats uri /\n")
    assert resource("start").rc == 0
    result = resource("monitor", depth=10)
    assert result.rc == 0, result
    assert resource("stop").rc == 0


def test_kill9_is_not_running_and_start_starts_anew(resource, backends):
    assert resource("start").rc == 0
    leader = resource.leader()
    children = workers(leader)
    os.kill(leader, signal.SIGKILL)
    assert eventually(lambda: not alive(leader), timeout=10)
    dead = resource("monitor", depth=10)
    assert dead.rc == 7 and "not running" in dead.reason, dead
    assert resource.probe().rc == 7
    # The workers of a killed master notice it and exit by themselves (and free the port).
    assert eventually(lambda: not [pid for pid in children if alive(pid)], timeout=15)
    restarted = resource("start")
    assert restarted.rc == 0, restarted
    assert resource.leader() != leader
    assert eventually(lambda: resource("monitor", depth=10).rc == 0, timeout=10)
    assert resource("stop").rc == 0


def test_frozen_master_fails_within_the_deadline_and_stops(resource, backends):
    assert resource("start").rc == 0
    leader = resource.leader()
    os.kill(leader, signal.SIGSTOP)  # the fixture's finalizer thaws it should an assertion fail
    try:
        for depth in (0, 10):
            frozen = resource("monitor", depth=depth, timeout_s=3)
            assert frozen.rc == 1 and frozen.elapsed < 3, (depth, frozen)
            assert "frozen" in frozen.reason and len(frozen.reasons) == 1, frozen
        assert resource.probe().rc == 1
        start = resource("start", timeout_s=20)
        assert start.rc == 1 and "frozen" in start.reason and start.elapsed < 10, start
    finally:
        os.kill(leader, signal.SIGCONT)
    assert eventually(lambda: resource("monitor").rc == 0, timeout=10)
    stopped = resource("stop", timeout_s=10)
    assert stopped.rc == 0 and stopped.elapsed < 10, stopped
    assert not alive(leader)


def test_frozen_master_is_stopped_too(resource, backends):
    assert resource("start").rc == 0
    leader = resource.leader()
    os.kill(leader, signal.SIGSTOP)
    stopped = resource("stop", timeout_s=15)
    assert stopped.rc == 0 and stopped.elapsed < 15, stopped
    assert not alive(leader)


def test_port_taken_by_another_process(resource):
    with socket.create_server((HOST, FRONT)):
        start = resource("start")
        assert start.rc == 1, start
        assert f"{HOST}:{FRONT} is already in use by pid {os.getpid()}" in start.reason, start
        assert f"see {resource.params['log_file']} from byte" in start.reason, start
        assert len(start.reasons) == 1
    assert resource("monitor").rc == 7
    assert resource.probe().rc == 7
    assert resource("stop").rc == 0


def test_stop_and_probe_with_a_broken_configuration_still_see_ours(resource, backends):
    assert resource("start").rc == 0
    leader = resource.leader()
    assert resource.probe(binary="/nonexistent/haproxy").rc == 0  # ours runs: never "not running"
    assert resource("stop", binary="/nonexistent/haproxy", config="relative").rc == 0
    assert not alive(leader)


# reload -----------------------------------------------------------------------------------

def _new_backend_config(resource: HAProxyResource) -> None:
    write_config(resource.params["config"], FRONT, {"fresh": [("new", NEW_PORT)]})


def test_reload_keeps_the_master_serves_the_new_file_and_drops_nothing(resource, backends):
    write_config(resource.params["config"], FRONT, {"keystone": [("k1", KEYSTONE_PORTS[0])]})
    new = Backend("new", NEW_PORT).start()
    stream = Stream(FRONT)
    try:
        assert resource("start", config_digest="1111").rc == 0
        leader = resource.leader()
        old_workers = workers(leader)
        stream.start()
        assert eventually(lambda: stream.answers.get("k1", 0) >= 50, timeout=20), stream.answers
        # Three reloads, back and forth, each waited for by the agent and then seen by the stream.
        for digest, serving in (("2222", "new"), ("3333", "k1"), ("4444", "new")):
            if serving == "new":
                _new_backend_config(resource)
            else:
                write_config(resource.params["config"], FRONT, {"keystone": [("k1", KEYSTONE_PORTS[0])]})
            seen = stream.answers.get(serving, 0)
            reloaded = resource("reload-agent", config_digest=digest)
            assert reloaded.rc == 0, reloaded
            wanted = (serving, seen + 50)
            served = eventually(lambda w=wanted: stream.answers.get(w[0], 0) >= w[1], timeout=20)
            assert served, stream.answers
        stream.stop()
        assert stream.requests >= 200
        lost = stream.failures
        assert lost == [], f"{len(lost)} of {stream.requests} failed: {lost[:5]}"
        assert resource.leader() == leader, "the master keeps its pid across a reload"
        assert alive(leader)
        assert not set(workers(leader)) & set(old_workers) or eventually(
            lambda: not [pid for pid in old_workers if alive(pid)], timeout=15), "the old workers stay"
        assert eventually(lambda: resource("monitor", depth=10).rc == 0, timeout=10)
    finally:
        stream.stop()
        new.stop()


def test_negative_control_a_restart_drops_requests(resource, backends):
    """The same stream across a stop and a start does see failures: the test above can fail."""
    write_config(resource.params["config"], FRONT, {"keystone": [("k1", KEYSTONE_PORTS[0])]})
    stream = Stream(FRONT)
    try:
        assert resource("start").rc == 0
        stream.start()
        assert eventually(lambda: stream.answers.get("k1", 0) >= 50, timeout=20), stream.answers
        assert resource("stop").rc == 0
        assert resource("start").rc == 0
        requests = stream.requests
        assert eventually(lambda: stream.requests >= requests + 50, timeout=20)
        stream.stop()
        assert stream.failures, f"a restart lost no request out of {stream.requests}"
    finally:
        stream.stop()


def test_reload_with_a_broken_file_keeps_serving_the_old_one(resource, backends):
    write_config(resource.params["config"], FRONT, {"keystone": [("k1", KEYSTONE_PORTS[0])]})
    assert resource("start").rc == 0
    leader = resource.leader()
    old_workers = workers(leader)
    config = resource.params["config"]
    _new_backend_config(resource)
    with open(config, "a", encoding="utf-8") as handle:
        handle.write("    broken-keyword-plugh on\n")
    refused = resource("reload-agent", config_digest="3333")
    assert refused.rc == 0, refused  # a failed reload-agent is a failed start for Pacemaker: see the agent
    assert workers(leader) == old_workers and alive(leader)
    assert get(FRONT) == "k1", "the previous configuration keeps serving"
    degraded = resource("monitor")
    assert degraded.rc == OCF.DEGRADED and "previous configuration" in degraded.reason, degraded
    assert "line " in degraded.reason and "plugh" not in degraded.stderr, degraded
    assert resource("monitor", depth=10).rc == OCF.DEGRADED
    new = Backend("new", NEW_PORT).start()
    try:
        _new_backend_config(resource)  # fixed
        fixed = resource("reload-agent", config_digest="4444")
        assert fixed.rc == 0, fixed
        assert eventually(lambda: serves("new"), timeout=10)
        assert resource("monitor").rc == 0
        assert resource.leader() == leader
    finally:
        new.stop()


def test_reload_the_master_refuses_keeps_serving_the_old_one(resource, backends):
    """A file that passes ``haproxy -c`` but cannot be loaded (a port another process holds)."""
    write_config(resource.params["config"], FRONT, {"keystone": [("k1", KEYSTONE_PORTS[0])]})
    assert resource("start").rc == 0
    leader = resource.leader()
    old_workers = workers(leader)
    with socket.create_server((HOST, NEW_PORT)):
        write_config(resource.params["config"], FRONT, {"keystone": [("k1", KEYSTONE_PORTS[0])]},
                     extra=f"frontend more\n    bind {HOST}:{NEW_PORT}\n    default_backend keystone\n")
        refused = resource("reload-agent", config_digest="5555")
        assert refused.rc == 0, refused
        assert get(FRONT) == "k1" and workers(leader) == old_workers
        degraded = resource("monitor")
        assert degraded.rc == OCF.DEGRADED and "refused the new one at reload" in degraded.reason, degraded
    fixed = resource("reload-agent", config_digest="6666")  # the port is free now
    assert fixed.rc == 0, fixed
    assert resource("monitor").rc == 0 and resource.leader() == leader


def test_reload_when_not_running(resource):
    result = resource("reload-agent")
    assert result.rc == 7, result


# ocf-tester ---------------------------------------------------------------------------------

def test_ocf_tester(workdir, backends):
    config = os.path.join(workdir, "tester.cfg")
    two_backends(config)
    params = {"config": config, "log_file": os.path.join(workdir, "tester.log")}
    try:
        assert_passes_ocf_tester(AGENT, "tester-haproxy", params, workdir, timeout=180)
    finally:
        HAProxyResource(workdir, instance="tester-haproxy", **params).ensure_stopped()
    assert not serves("k1") and not serves("k2")


# An API's notify: the local HAProxy takes its stopping instances out and puts started ones back -----

KEYSTONE_AGENT = os.path.join(os.path.dirname(AGENT), "keystone")


def notify_keystone(resource: HAProxyResource, kind: str, operation: str, nodes: str, **params: str):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
           "OCF_RESOURCE_INSTANCE": "keystone",
           "HA_RSCTMP": resource.rsctmp, "HA_LOGFILE": resource.logfile, "HA_LOGFACILITY": "none",
           "OCF_RESKEY_CRM_meta_timeout": "30000", "OCF_RESKEY_CRM_meta_notify_type": kind,
           "OCF_RESKEY_CRM_meta_notify_operation": operation,
           f"OCF_RESKEY_CRM_meta_notify_{operation}_uname": nodes,
           **{f"OCF_RESKEY_{key}": value for key, value in params.items()}}
    done = subprocess.run([KEYSTONE_AGENT, "notify"], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    return done.returncode


def server_states(resource: HAProxyResource) -> dict[str, str]:
    """keystone's servers and their status column, as the master CLI reports them."""
    text = MasterCLI(Deadline(10), master_socket(resource.rsctmp, resource.instance)).ask("@1 show stat")
    header = text.splitlines()[0][2:].split(",")
    px, sv, status = (header.index(name) for name in ("pxname", "svname", "status"))
    rows = [line.split(",") for line in text.splitlines()[1:] if line]
    return {row[sv]: row[status] for row in rows
            if row[px] == "keystone" and row[sv] not in ("FRONTEND", "BACKEND")}


def test_pre_stop_takes_the_instances_out_post_start_puts_them_back(resource, backends):
    assert resource("start").rc == 0
    assert eventually(lambda: server_states(resource) == {"k1": "UP", "k2": "UP"})
    assert notify_keystone(resource, "pre", "stop", "k1", haproxy_resource=resource.instance) == 0
    assert server_states(resource)["k1"] == "DRAIN"
    assert {get(FRONT) for _ in range(6)} == {"k2"}  # nothing goes to the instance about to stop
    assert notify_keystone(resource, "post", "start", "k1", haproxy_resource=resource.instance) == 0
    assert eventually(lambda: server_states(resource)["k1"] == "UP")
    assert {get(FRONT) for _ in range(6)} == {"k1", "k2"}


def test_negative_control_without_haproxy_resource_the_front_is_left_alone(resource, backends):
    assert resource("start").rc == 0
    assert eventually(lambda: server_states(resource) == {"k1": "UP", "k2": "UP"})
    assert notify_keystone(resource, "pre", "stop", "k1") == 0
    assert server_states(resource)["k1"] == "UP"
    assert notify_keystone(resource, "pre", "stop", "k1", haproxy_resource="no-such-haproxy") == 0
    assert server_states(resource)["k1"] == "UP"


# The generated configuration: slowed-down servers -------------------------------------

GENERATED_NODES = {"ctl1": "127.0.0.11", "ctl2": "127.0.0.12", "ctl3": "127.0.0.13"}
GENERATED_VIP = "127.0.0.20"
GENERATED_PORTS = 27450  # the fronted APIs' ports, in crmtool's order, from here on
# Beyond the generated `timeout check 2s`: every check fails, every request is answered.
SLOW_ANSWER_S = 3.0


def generated_config() -> tuple[str, int]:
    """crmtool's configuration for a site on loopback, and keystone's port in it."""
    from crmtool import haproxy as generator
    from crmtool import load
    from tests.crmtool_cases.support import TEMPLATES

    site = ['profile = "openstack-3ctl-haproxy"']
    for name, address in GENERATED_NODES.items():
        site += [f"[nodes.{name}]", f'address = "{address}"', 'fence = { ip = "192.0.2.101" }']
    site += ["[haproxy]", 'network = "127.0.0.0/8"', "[primitive.db-vip.params]", 'ip = "127.0.0.10"',
             "[primitive.public-vip.params]", f'ip = "{GENERATED_VIP}"']
    fronted = generator.fronted(load.load_text("\n".join(site), TEMPLATES), "openstack")
    ports = {frontend.name: GENERATED_PORTS + index for index, frontend in enumerate(fronted)}
    for name, port in ports.items():
        site += [f"[primitive.{name}.params]", f'port = "{port}"']
    text = generator.generate(load.load_text("\n".join(site), TEMPLATES), "openstack")
    assert text is not None
    return text, ports["keystone"]


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o644)


def all_checked_down(resource: HAProxyResource) -> bool:
    states = server_states(resource)
    checked = [state for name, state in states.items() if name in GENERATED_NODES]
    return len(checked) == len(GENERATED_NODES) and all(state.startswith("DOWN") for state in checked)


@pytest.fixture
def slow_keystones():
    """The generated configuration and keystone's port in it, with a slow keystone on every node."""
    text, port = generated_config()
    made = [Backend(name, port, host=address, delay_s=SLOW_ANSWER_S).start()
            for name, address in GENERATED_NODES.items()]
    yield text, port
    for backend in made:
        backend.stop()


def test_generated_backends_let_requests_wait_for_servers_too_slow_for_their_checks(resource, slow_keystones):
    text, port = slow_keystones
    write_text(resource.params["config"], text)
    assert resource("start").rc == 0
    assert eventually(lambda: all_checked_down(resource), timeout=30), server_states(resource)
    degraded = resource("monitor", depth=10)
    assert degraded.rc == OCF.DEGRADED and "keystone" in degraded.reason, "the twins hid the checks' verdict"
    assert get(port, timeout=SLOW_ANSWER_S + 10, host=GENERATED_VIP) in GENERATED_NODES
    assert notify_keystone(resource, "pre", "stop", "ctl1", haproxy_resource=resource.instance) == 0
    states = server_states(resource)  # a server down stays DOWN when drained
    assert states[fallback_of("ctl1")] == "DRAIN" and states[fallback_of("ctl2")] == "no check", states
    assert notify_keystone(resource, "post", "start", "ctl1", haproxy_resource=resource.instance) == 0
    assert server_states(resource)[fallback_of("ctl1")] == "no check"


def test_negative_control_without_the_twins_slow_servers_get_503(resource, slow_keystones):
    text, port = slow_keystones
    stripped = [line for line in text.splitlines()
                if FALLBACK_SUFFIX not in line and "allbackups" not in line]
    assert len(stripped) < len(text.splitlines())
    write_text(resource.params["config"], "\n".join(stripped) + "\n")
    assert resource("start").rc == 0
    assert eventually(lambda: all_checked_down(resource), timeout=30), server_states(resource)
    with pytest.raises(OSError, match="HTTP 503"):
        get(port, timeout=SLOW_ANSWER_S + 10, host=GENERATED_VIP)
