"""keystone's token cache on two memcached instances (our agent), one of them killed or frozen.

keystone runs under our agent with ``[cache]`` on both instances (``harness.stack.KEYSTONE_CACHE``,
the settings docs/memcached.md gives operators). Each scenario restarts keystone (a fresh process
knows no dead server), warms the cache on both instances, kills (``kill -9``) or freezes
(``SIGSTOP``) one of them and at once sends 200 requests (100 token issues, each followed by the
validation of that token), one at a time, counting failed requests and the worst latency.

The last scenario is the negative control: with ``memcache_pool_flush_on_reconnect = true`` the
retry of a frozen server raises out of python-memcached into keystone (500s).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import statistics
import time

import pytest

from harness.memcached import MemcachedResource
from harness.stack import HOST, MEMCACHED_PORTS, PORTS

pytestmark = pytest.mark.services

PAIRS = 100  # token issue + validation: 200 requests
WARM_UP_PAIRS = 10
PROBE_USER = "cache-probe"
# What a request may take at worst while a server is frozen: keystone's cache regions each give the
# server up after memcache_socket_timeout (0.25 s), several of them within one request.
WORST_FROZEN_S = 3.0


class Outcome:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.latency: dict[str, list[float]] = {"issue": [], "validate": []}

    def line(self, label: str) -> str:
        parts = [f"{label}: {len(self.failures)} of {2 * PAIRS} requests failed"]
        for kind, values in self.latency.items():
            parts.append(f"{kind} median {statistics.median(values) * 1000:.0f} ms, "
                         f"worst {max(values) * 1000:.0f} ms")
        return "; ".join(parts)

    @property
    def worst(self) -> float:
        return max(max(values) for values in self.latency.values())


def call(method: str, path: str, body: object = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection(HOST, PORTS["keystone"], timeout=timeout)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def password_auth(user: str, password: str) -> dict[str, object]:
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}


def issue(user: str, password: str) -> str:
    status, headers, body = call("POST", "/v3/auth/tokens", password_auth(user, password))
    assert status == 201, (status, body[:300])
    return headers["X-Subject-Token"]


def ensure_probe_user(stack, password: str) -> None:
    """A user with a cheap password hash (keystone_cache_config sets bcrypt's 4 rounds), member of
    the admin project: 200 token issues then measure the cache, not bcrypt's 12 rounds."""
    admin = {"X-Auth-Token": issue("admin", stack.admin_password)}
    status, _headers, body = call("POST", "/v3/users", {"user": {
        "name": PROBE_USER, "password": password, "domain_id": "default"}}, admin)
    assert status in (201, 409), (status, body[:300])
    if status == 409:
        return
    user_id = json.loads(body)["user"]["id"]
    _status, _headers, body = call("GET", "/v3/projects?name=admin", headers=admin)
    project_id = json.loads(body)["projects"][0]["id"]
    _status, _headers, body = call("GET", "/v3/roles?name=admin", headers=admin)
    role_id = json.loads(body)["roles"][0]["id"]
    status, _headers, body = call("PUT", f"/v3/projects/{project_id}/users/{user_id}/roles/{role_id}",
                                  headers=admin)
    assert status == 204, (status, body[:300])


def attempt(method: str, path: str, body: object = None, headers: dict[str, str] | None = None,
            ) -> tuple[str, http.client.HTTPMessage | None]:
    """(status or the client's error, headers): a request that fails is counted, never raised."""
    try:
        status, answered, _body = call(method, path, body, headers)
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__, None
    return str(status), answered


def series(password: str, pairs: int) -> Outcome:
    """Token issue, then validation of that token, ``pairs`` times, one request at a time."""
    outcome = Outcome()
    for _ in range(pairs):
        began = time.monotonic()
        status, headers = attempt("POST", "/v3/auth/tokens", password_auth(PROBE_USER, password))
        outcome.latency["issue"].append(time.monotonic() - began)
        token = headers.get("X-Subject-Token", "") if headers is not None and status == "201" else ""
        if not token:
            outcome.failures.append(f"issue: {status}")
            continue
        began = time.monotonic()
        status, _headers = attempt("GET", "/v3/auth/tokens", headers={"X-Auth-Token": token,
                                                                     "X-Subject-Token": token})
        outcome.latency["validate"].append(time.monotonic() - began)
        if status != "200":
            outcome.failures.append(f"validate: {status}")
    return outcome


def memcached_stats(port: int) -> dict[str, int]:
    import socket

    with socket.create_connection((HOST, port), timeout=5) as conn:
        conn.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = conn.recv(65536)
            assert chunk, "memcached closed the connection"
            data += chunk
    fields = (line.split() for line in data.decode().splitlines() if line.startswith("STAT "))
    return {name: int(value) for _stat, name, value in fields if value.isdigit()}


@pytest.fixture(scope="module")
def caches(stack, workdir):
    """The two memcached instances, under our installed agent."""
    made = [MemcachedResource(workdir, port) for port in MEMCACHED_PORTS]
    yield made
    for cache in made:
        cache.ensure_stopped()


@pytest.fixture(scope="module")
def probe_password():
    return "probe-" + secrets.token_hex(12)


# (label, index of the instance hurt, signal, [cache] overrides, failures expected)
SCENARIOS = {
    "killed": (0, signal.SIGKILL, {}, False),
    "frozen": (1, signal.SIGSTOP, {}, False),
    # The frozen server is tried again every 2 s: each retry costs one more socket timeout.
    "frozen-retried": (1, signal.SIGSTOP, {"memcache_dead_retry": "2"}, False),
    # Negative control: python-memcached flushes a server it uses again inside its connect, outside
    # its own error handling; a frozen server's silence escapes into keystone as a 500.
    "frozen-retried-flush": (1, signal.SIGSTOP, {"memcache_dead_retry": "2",
                                                  "memcache_pool_flush_on_reconnect": "true"}, True),
}


@pytest.mark.parametrize("label", list(SCENARIOS))
def test_token_issue_and_validation_survive_a_memcached_fault(label, stack, caches, agent_for, probe_password,
                                                               capsys):
    hurt, signum, overrides, fails = SCENARIOS[label]
    for cache in caches:
        started = cache("start")
        assert started.rc == 0, started
    servers = [f"{HOST}:{cache.port}" for cache in caches]
    config = stack.keystone_cache_config(servers, name=f"keystone-cache-{label}.conf", **overrides)
    keystone = agent_for("keystone", config=config)
    assert keystone("start").rc == 0
    ensure_probe_user(stack, probe_password)
    before = [memcached_stats(cache.port)["cmd_get"] for cache in caches]
    warm = series(probe_password, WARM_UP_PAIRS)
    assert not warm.failures, warm.failures
    used = [memcached_stats(cache.port)["cmd_get"] - count
            for cache, count in zip(caches, before, strict=True)]
    assert all(used), f"keystone did not use both instances: gets {used}"

    victim = caches[hurt]
    os.kill(victim.leader(), signum)
    try:
        outcome = series(probe_password, PAIRS)
        monitor = victim("monitor", timeout_s=5)
    finally:
        if signum == signal.SIGSTOP:
            os.kill(victim.leader(), signal.SIGCONT)
    with capsys.disabled():
        print(f"\n{outcome.line(label)} (keystone [cache] {overrides or 'as documented'})")
    # Our agent sees what was done to the instance, in time.
    expected_rc = 7 if signum == signal.SIGKILL else 1
    assert monitor.rc == expected_rc and monitor.elapsed < 5, monitor
    if fails:
        assert outcome.failures, "the negative control failed no request: the measurement cannot see failures"
        return
    assert outcome.failures == [], outcome.line(label)
    assert outcome.worst < WORST_FROZEN_S, outcome.line(label)
