"""The API agents on a network (``host`` in CIDR form), and a stop that lets requests in flight finish.

* keystone (uWSGI) and glance-api (eventlet) started with ``host=127.0.0.0/8`` listen on this
  node's address in it, 127.0.0.1, and pass every depth there.
* Graceful stop under uWSGI: a WSGI application of the test's own that takes 2 s per request
  runs under the keystone agent's uwsgi launcher (the command line every uWSGI agent gets); a stop
  while two requests are in flight lets both finish with 200. The negative control runs the same
  application on the old command line (``--die-on-term``, through the command launcher): the same
  stop cuts both.
* The same with real keystone: token requests in a steady stream (one client per worker), stop in
  the middle; every request sent before the stop gets its token.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time

import pytest

from harness.processes import eventually
from harness.stack import HOST, PORTS

pytestmark = pytest.mark.services

PORT = PORTS["keystone"]
SLOW_S = 2.0
SLOW_APP = """\
import os
import time


def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        # The test waits for these markers: the request is in the worker's hands.
        open(os.path.join({markers!r}, str(os.getpid())), "w").close()
        time.sleep({slow})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"version"]
"""
# The agents' uWSGI command line before the graceful stop, for the negative control.
OLD_UWSGI = ("--plugins python3 --http-socket {host}:{port} --wsgi-file {app} --master --die-on-term "
             "--skip-atexit --lazy-apps --enable-threads --need-app --no-orphans --thunder-lock "
             "--processes 2 --add-header 'Connection: close'")


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().decode().split("\0")[:-1]


@pytest.mark.parametrize("name", ["keystone", "glance-api"])
def test_host_as_a_network_listens_on_the_node_address(agent_for, name):
    if name != "keystone":
        assert agent_for("keystone")("start").rc == 0  # glance's deep check asks keystone for a token
    agent = agent_for(name, host="127.0.0.0/8")
    assert agent("validate-all").rc == 0
    started = agent("start")
    assert started.rc == 0, started
    for depth in (0, 10, 20):
        result = agent("monitor", depth=depth)
        assert result.rc == 0, (depth, result)
    argv = cmdline(agent.leader())
    if name == "keystone":
        assert argv[argv.index("--http-socket") + 1] == f"{HOST}:{agent.params['port']}", argv
    else:
        listen = os.path.join(agent.rsctmp, f"openstack-{name}-{agent.instance}", "listen.conf")
        with open(listen, encoding="utf-8") as handle:
            assert f"bind_host = {HOST}\n" in handle.read()
    assert agent("stop").rc == 0
    assert agent("monitor").rc == 7


def test_host_network_without_an_address_here_is_not_installed(agent_for):
    agent = agent_for("keystone", host="198.18.0.0/24")  # benchmarking addresses: none on this machine
    for action in ("validate-all", "start"):
        refused = agent(action)
        assert refused.rc == 5, (action, refused)
        assert refused.reason == "host 198.18.0.0/24: this node has no address in that network", refused
    assert agent.probe().rc == 7
    assert agent("stop").rc == 0


@pytest.fixture
def slow_app(workdir, stack):
    """The slow WSGI application, and its marker directory (written by the keystone user)."""
    import shutil

    home = os.path.join(workdir, "slow-app")
    os.makedirs(home, exist_ok=True)
    markers = os.path.join(home, "markers")
    os.makedirs(markers, exist_ok=True)
    shutil.chown(markers, "keystone", "keystone")
    app = os.path.join(home, "slow.py")
    with open(app, "w", encoding="utf-8") as handle:
        handle.write(SLOW_APP.format(markers=markers, slow=SLOW_S))
    os.chmod(app, 0o755)  # noqa: S103 - the agent checks the WSGI file like a program
    yield app, markers
    shutil.rmtree(home, ignore_errors=True)


def get_slow(results: list[object]) -> None:
    conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
    try:
        conn.request("GET", "/slow")
        response = conn.getresponse()
        results.append((response.status, response.read()))
    except (OSError, http.client.HTTPException) as exc:
        results.append(type(exc).__name__)
    finally:
        conn.close()


def stop_with_two_in_flight(agent, markers: str) -> tuple[list[object], float]:
    """Two slow requests, both in a worker's hands, then stop: their outcomes and the stop's time."""
    for name in os.listdir(markers):
        os.unlink(os.path.join(markers, name))
    results: list[object] = []
    clients = [threading.Thread(target=get_slow, args=(results,)) for _ in range(2)]
    for client in clients:
        client.start()
    assert eventually(lambda: len(os.listdir(markers)) == 2, 20, 0.01), "both requests reached a worker"
    stopped = agent("stop", timeout_s=30)
    for client in clients:
        client.join(40)
    assert stopped.rc == 0, stopped
    assert agent("monitor").rc == 7
    return results, stopped.elapsed


def test_stop_lets_requests_in_flight_finish(agent_for, slow_app):
    app, markers = slow_app
    agent = agent_for("keystone", binary=app, workers="2")
    started = agent("start")
    assert started.rc == 0, started
    results, elapsed = stop_with_two_in_flight(agent, markers)
    assert results == [(200, b"done"), (200, b"done")], results
    # The stop waited for the requests (begun at most a second ago: on a busy machine the stop
    # action's own start-up eats into the 2 s), and not for much more.
    assert 0.5 < elapsed < SLOW_S + 5, elapsed
    print(f"graceful stop with two requests in flight: {elapsed:.2f} s")


def test_the_old_die_on_term_cut_requests_in_flight(agent_for, slow_app):
    """Negative control: the same application and stop, uWSGI as the agents ran it before."""
    app, markers = slow_app
    agent = agent_for("keystone", launcher="command", binary="/usr/bin/uwsgi",
                      extra_args=OLD_UWSGI.format(host=HOST, port=PORT, app=app))
    started = agent("start")
    assert started.rc == 0, started
    results, elapsed = stop_with_two_in_flight(agent, markers)
    assert len(results) == 2 and not [r for r in results if isinstance(r, tuple)], results
    print(f"--die-on-term stop with two requests in flight: {elapsed:.2f} s, requests: {results}")


class TokenStream:
    """One client per keystone worker issuing tokens back to back; every request's send time and
    outcome (a status, or the exception that ended it)."""

    def __init__(self, stack, clients: int) -> None:
        self.body = json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": stack.admin_password}}}}})
        self.halt = threading.Event()
        self.outcomes: list[tuple[float, object]] = []
        self.threads = [threading.Thread(target=self.run) for _ in range(clients)]

    def run(self) -> None:
        while not self.halt.is_set():
            sent = time.monotonic()
            conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
            try:
                conn.request("POST", "/v3/auth/tokens", body=self.body,
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                outcome: object = response.status
            except (OSError, http.client.HTTPException) as exc:
                outcome = type(exc).__name__
            finally:
                conn.close()
            self.outcomes.append((sent, outcome))
            if outcome != 201:
                return  # the service is going away: this client is done

    def __enter__(self) -> TokenStream:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        for thread in self.threads:
            thread.join(40)

    def issued(self) -> int:
        return sum(outcome == 201 for _sent, outcome in self.outcomes)


def stop_during_token_stream(agent, stack) -> tuple[list[object], list[object], float]:
    """Outcomes of the requests sent before the stop began, of those sent after, the stop's time."""
    with TokenStream(stack, clients=2) as stream:
        assert eventually(lambda: stream.issued() >= 6, 60, 0.05), stream.outcomes
        began = time.monotonic()
        stopped = agent("stop", timeout_s=30)
        assert stopped.rc == 0, stopped
    before = [outcome for sent, outcome in stream.outcomes if sent < began]
    after = [outcome for sent, outcome in stream.outcomes if sent >= began]
    return before, after, stopped.elapsed


def test_keystone_stop_under_token_load_answers_every_request_it_had(agent_for, stack):
    agent = agent_for("keystone", workers="2")
    assert agent("start").rc == 0
    before, after, elapsed = stop_during_token_stream(agent, stack)
    assert before and all(outcome == 201 for outcome in before), before
    # Sent while stopping: a token, or no connection at all; never a server error.
    assert all(outcome == 201 or isinstance(outcome, str) for outcome in after), after
    assert elapsed < 10, elapsed
    print(f"keystone stop under token load: {elapsed:.2f} s; {len(before)} requests before, "
          f"while stopping: {after}")


def test_keystone_die_on_term_cuts_token_requests(agent_for, stack):
    """Negative control: the old command line loses the requests in flight when stopped."""
    argv = OLD_UWSGI.format(host=HOST, port=PORT, app="/usr/bin/keystone-wsgi-public")
    agent = agent_for("keystone", launcher="command", binary="/usr/bin/uwsgi", extra_args=argv)
    assert agent("start").rc == 0
    before, _after, elapsed = stop_during_token_stream(agent, stack)
    cut = [outcome for outcome in before if outcome != 201]
    assert cut, before
    print(f"keystone --die-on-term stop under token load: {elapsed:.2f} s; cut: {cut}")


def test_dashboard_on_a_network_with_the_graceful_uwsgi(agent_for, stack, workdir):
    """The dashboard's uWSGI command line is the APIs' one: the node's address, the graceful hooks."""
    from agents.service import GRACEFUL_UWSGI
    from tests.services.test_dashboard import DashboardAgent

    if "dashboard" not in stack.configs:
        stack.prepare_dashboard()
        stack.watcher.secrets.append(stack.dashboard_secret_key.encode())
    agent = DashboardAgent(stack, workdir, host="127.0.0.0/8")
    try:
        started = agent("start")
        assert started.rc == 0, started
        for depth in (0, 10):
            result = agent("monitor", depth=depth)
            assert result.rc == 0, (depth, result)
        argv = cmdline(agent.leader())
        assert argv[argv.index("--http-socket") + 1] == f"{HOST}:{stack.dashboard_port}", argv
        assert "--die-on-term" not in argv
        for option, value in zip(GRACEFUL_UWSGI[::2], GRACEFUL_UWSGI[1::2], strict=True):
            assert argv[argv.index(option) + 1] == value, argv
    finally:
        agent.ensure_stopped()
    assert agent("monitor").rc == 7
