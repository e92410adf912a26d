"""The dashboard (horizon under uWSGI) under our installed agent, on the real Debian package."""

from __future__ import annotations

import os
import pwd
import shutil
import signal

import pytest

from harness.logs import service_log_dir
from harness.processes import alive, eventually
from harness.stack import HOST
from tests.services.conftest import ServiceAgent, assert_passes_ocf_tester, assert_refuses_a_taken_port

pytestmark = pytest.mark.services


class DashboardAgent(ServiceAgent):
    """``ServiceAgent`` for the dashboard: its port and log directory come from the stack."""

    def __init__(self, stack, workdir: str, **params: str) -> None:
        logs = os.path.join(workdir, "dashboard-logs")
        os.makedirs(logs, exist_ok=True)
        shutil.chown(logs, "horizon", "horizon")
        self.name, self.stack, self.rsctmp = "dashboard", stack, workdir
        self.logfile = os.path.join(workdir, "agents.log")
        self.params = {"config": stack.configs["dashboard"], "host": HOST, "port": str(stack.dashboard_port),
                       "workers": "2", "log_file": os.path.join(logs, "console.log"),
                       "credentials": stack.credentials}
        self.params.update(params)
        self.instance = "test-dashboard"


@pytest.fixture(scope="module")
def prepared(stack):
    stack.prepare_dashboard()
    # The argv watcher (conftest) looks for the SECRET_KEY as well from now on.
    stack.watcher.secrets.append(stack.dashboard_secret_key.encode())
    return stack


@pytest.fixture
def dashboard(prepared, workdir):
    made: list[DashboardAgent] = []

    def make(**params: str) -> DashboardAgent:
        agent = DashboardAgent(prepared, workdir, **params)
        made.append(agent)
        return agent

    yield make
    for agent in reversed(made):
        agent.ensure_stopped()


def secrets_of(stack) -> list[bytes]:
    return [secret.encode() for secret in (stack.dashboard_secret_key, stack.admin_password)]


def test_lifecycle_and_depths(dashboard, agent_for, stack):
    assert agent_for("keystone")("start").rc == 0
    agent = dashboard()
    assert agent.probe().rc == 7
    started = agent("start")
    assert started.rc == 0, started
    leader = agent.leader()
    assert os.stat(f"/proc/{leader}").st_uid == pwd.getpwnam("horizon").pw_uid
    assert os.getsid(leader) == leader, "the service leads its own session"
    costs: dict[int, list[float]] = {0: [], 10: [], 20: []}
    for _round in range(3):  # the first page a uwsgi worker renders costs more (template loading)
        for depth in (0, 10, 20):
            result = agent("monitor", depth=depth)
            assert result.rc == 0, (depth, result)
            costs[depth].append(result.elapsed)
    print(f"dashboard start {started.elapsed:.2f} s; monitor depth 0/10/20 (first, median of 3): "
          + " / ".join(f"{costs[d][0] * 1000:.0f}, {sorted(costs[d])[1] * 1000:.0f} ms" for d in (0, 10, 20)))
    # Neither the SECRET_KEY nor the monitoring password in the service's argv or environment.
    for pid in agent.session():
        for name in ("cmdline", "environ"):
            with open(f"/proc/{pid}/{name}", "rb") as handle:
                data = handle.read()
            assert not [s for s in secrets_of(stack) if s in data], (pid, name)
    assert agent.probe().rc == 0
    again = agent("start")
    assert again.rc == 0 and agent.leader() == leader, again
    pids = agent.session()
    stopped = agent("stop")
    assert stopped.rc == 0, stopped
    assert not [pid for pid in pids if alive(pid)]
    assert agent("stop").rc == 0
    assert agent("monitor").rc == 7
    for path in (agent.logfile, agent.params["log_file"]):
        with open(path, "rb") as handle:
            data = handle.read()
        assert not [s for s in secrets_of(stack) if s in data], path


def test_page_without_login_form_fails_depth_10(dashboard):
    """A 200 without the login form is no login page; the static files are served (--static-map)."""
    agent = dashboard()
    assert agent("start").rc == 0
    agent.params["version_path"] = "/static/dashboard/img/logo.svg"
    result = agent("monitor", depth=10)
    assert result.rc == 1 and "answered 200 without a login form" in result.reason, result


def test_kill9_is_not_running(dashboard):
    agent = dashboard()
    assert agent("start").rc == 0
    pids = agent.session()
    os.kill(agent.leader(), signal.SIGKILL)
    assert eventually(lambda: agent("monitor").rc == 7, 10)
    # uwsgi's workers (no-orphans) follow their master; they hold the listening socket until then.
    assert eventually(lambda: not [pid for pid in pids if alive(pid)], 20)
    restarted = agent("start")
    assert restarted.rc == 0, restarted
    assert agent("monitor", depth=10).rc == 0


def test_frozen_dashboard_fails_within_budget(dashboard):
    agent = dashboard()
    assert agent("start").rc == 0
    assert agent("monitor", depth=10).rc == 0
    leader = agent.leader()
    workers = [pid for pid in agent.session() if pid != leader]
    assert workers
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        frozen = agent("monitor", depth=10, timeout_s=4)
        assert frozen.rc == 1 and frozen.elapsed < 4, frozen
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    for pid in agent.session():
        os.kill(pid, signal.SIGSTOP)
    stopped = agent("monitor", depth=20, timeout_s=4)
    assert stopped.rc == 1 and stopped.elapsed < 4 and "frozen" in stopped.reason, stopped
    assert agent("stop", timeout_s=20).rc == 0


def test_keystone_down_degrades_depth_20(dashboard):
    """No keystone: the login page works (10 passes), the login does not: degraded, never a failure."""
    agent = dashboard()
    assert agent("start").rc == 0
    assert agent("monitor", depth=10).rc == 0
    degraded = agent("monitor", depth=20, timeout_s=20)
    assert degraded.rc == 190, degraded
    assert "keystone" in degraded.reason, degraded


def test_broken_settings(dashboard, prepared):
    settings = prepared.configs["dashboard"]
    broken = os.path.join(os.path.dirname(settings), "local_settings_broken.py")
    with open(settings, encoding="utf-8") as handle:
        text = handle.read()
    line = len(text.splitlines()) + 1
    with open(broken, "w", encoding="utf-8") as handle:
        handle.write(text + f"SECRET = {prepared.dashboard_secret_key!r} +\n")  # a syntax error
    shutil.chown(broken, "horizon", "horizon")
    agent = dashboard(config=broken)
    for result in (agent("validate-all"), agent("start")):
        # The node's own file: ERR_INSTALLED (try another node), where and never what.
        assert result.rc == 5, result
        assert f"cannot parse {broken} at line {line}" in result.reason, result
        assert prepared.dashboard_secret_key not in result.stderr, result
    assert agent("monitor").rc == 7
    # Settings that compile but fail when horizon imports them: the start says how uwsgi ended.
    failing = os.path.join(os.path.dirname(settings), "local_settings_failing.py")
    with open(failing, "w", encoding="utf-8") as handle:
        handle.write(text.replace(os.path.join(os.path.dirname(settings), "secret_key"), "/nonexistent/key"))
    shutil.chown(failing, "horizon", "horizon")
    agent = dashboard(config=failing)
    start = agent("start", timeout_s=30)
    assert start.rc == 1 and "during start" in start.reason, start
    assert agent.params["log_file"] in start.reason, start
    assert agent("monitor").rc == 7


def test_port_taken_by_another_process(dashboard, prepared):
    assert_refuses_a_taken_port(dashboard(), HOST, prepared.dashboard_port)


def test_ocf_tester(prepared, workdir):
    logs = service_log_dir(workdir, "dashboard", "horizon")
    params = {"config": prepared.configs["dashboard"], "host": HOST, "port": str(prepared.dashboard_port),
              "workers": "1", "log_file": os.path.join(logs, "tester.log")}
    assert_passes_ocf_tester("dashboard", params)


def login_without_logout(port: int, stack) -> int:
    """The deep monitor's login, done here without its logout: the status of horizon's answer."""
    import http.client
    from urllib.parse import urlencode

    from agents.dashboard import LoginPage

    def ask(method: str, path: str, body: str = "", headers: dict[str, str] | None = None):
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers or {})
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()

    page, body = ask("GET", "/auth/login/")
    cookies = [header.split(";", 1)[0] for header in page.headers.get_all("Set-Cookie") or []]
    form = LoginPage.read(body).form
    assert page.status == 200 and form is not None
    action, fields = form
    fields.update(username="admin", password=stack.admin_password, domain="Default")
    answer, _body = ask("POST", action, urlencode(fields), {
        "Cookie": "; ".join(cookies), "Referer": f"http://{HOST}:{port}/auth/login/",
        "Content-Type": "application/x-www-form-urlencoded"})
    return answer.status


def test_deep_monitor_logs_out(dashboard, agent_for, prepared):
    """horizon's default session store is server-side (a cache): every deep monitor's login would
    leave a session there until it expires. With sessions in files (server-side, countable), N deep
    monitors leave none; the same login without the logout leaves one (the negative control)."""
    assert agent_for("keystone")("start").rc == 0
    settings = prepared.configs["dashboard"]
    home = os.path.dirname(settings)
    store = os.path.join(home, "sessions")
    os.makedirs(store, exist_ok=True)
    shutil.chown(store, "horizon", "horizon")
    os.chmod(store, 0o700)
    with open(settings, encoding="utf-8") as handle:
        text = handle.read()
    assert 'SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"' in text
    variant = os.path.join(home, "local_settings_file_sessions.py")
    with open(variant, "w", encoding="utf-8") as handle:
        handle.write(text.replace("backends.signed_cookies", "backends.file")
                     + f"SESSION_FILE_PATH = {store!r}\n")
    shutil.chown(variant, "horizon", "horizon")
    agent = dashboard(config=variant)
    assert agent("start").rc == 0
    assert agent("monitor", depth=10).rc == 0
    before = sorted(os.listdir(store))
    for _ in range(3):
        result = agent("monitor", depth=20)
        assert result.rc == 0, result
    after = sorted(os.listdir(store))
    assert login_without_logout(prepared.dashboard_port, prepared) == 302
    leftover = sorted(set(os.listdir(store)) - set(after))
    print(f"sessions in the store: {len(before)} before, {len(after)} after 3 deep monitors, "
          f"{len(after) + len(leftover)} after one login without logout")
    assert after == before, "a deep monitor left a session behind"
    assert len(leftover) == 1, leftover
