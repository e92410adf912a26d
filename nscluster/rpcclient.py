"""nova's RPC path from the cluster's client namespace: oslo.messaging pings and a server create.

Started by the harness through ``Cluster.client_argv`` as ``/usr/bin/python3 -I -S rpcclient.py
NETNS_INODE MODE ...``; like the other clients it refuses to run outside the expected namespace.
The system interpreter, Debian's python3 packages (the path below), no project path.

Modes (one JSON object per line on standard output, ``t`` is ``time.monotonic()``, which the
harness shares):

* ``ping NETNS_INODE TOPICS SECONDS INTERVAL_S CALL_TIMEOUT_S``, with one JSON line on standard
  input: ``{"url": <transport_url>, "rabbit": {<[oslo_messaging_rabbit] options>}}`` (the broker
  password never on the command line). Every INTERVAL_S, for each topic of TOPICS (comma-separated:
  ``scheduler,conductor``), an RPC call of oslo.messaging's ``oslo_rpc_server_ping`` on the
  exchange ``nova`` (the services' ``[DEFAULT] rpc_ping_enabled``), each in its own thread with
  CALL_TIMEOUT_S: a round trip through the bus to one of the topic's servers and back, nothing
  else. ``{"event": "pong", "topic": ..., "t": <sent>, "done": <answered>}`` or ``{"event":
  "failed", "topic": ..., "t": ..., "done": ..., "error": <exception class>}``. Until SECONDS pass or
  SIGTERM; then it waits for the calls under way (at most CALL_TIMEOUT_S) and exits.
* ``server NETNS_INODE HOST KEYSTONE_PORT CREDENTIALS_FILE GLANCE_PORT NOVA_PORT SECONDS``: as the
  admin of CREDENTIALS_FILE (root-only ini, section ``[credentials]``), through HOST (the public
  VIP): a token, an active raw image in glance, a flavor, then ``POST /v2.1/servers`` (microversion
  2.37, ``networks: none``) and ``GET /v2.1/servers?status=ERROR`` every 0.2 s until the server is
  listed there (the short list: the detailed views ask neutron for security groups, and no neutron
  runs). ``{"event": "server", "id": ..., "posted": <t of the 202>, "error": <t listed in ERROR>}``;
  rc 1 when SECONDS pass first.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

sys.path.append("/usr/lib/python3/dist-packages")

EXCHANGE = "nova"  # nova's control_exchange
PING = "oslo_rpc_server_ping"
HTTP_TIMEOUT_S = 30.0
POLL_S = 0.2


def in_expected_namespace(expected_inode: int) -> bool:
    return os.stat("/proc/self/ns/net").st_ino == expected_inode


def emit(event: dict[str, object], lock: threading.Lock) -> None:
    with lock:
        print(json.dumps(event), flush=True)


def ping(topics: list[str], seconds: float, interval_s: float, call_timeout_s: float) -> int:
    import oslo_messaging  # type: ignore[import-untyped]
    from oslo_config import cfg  # type: ignore[import-untyped]
    from oslo_messaging._drivers import impl_rabbit  # type: ignore[import-untyped]

    setup = json.loads(sys.stdin.readline())
    conf = cfg.CONF  # the global one, as in the services: oslo.messaging registers options on it
    conf.register_opts(impl_rabbit.rabbit_opts, group="oslo_messaging_rabbit")
    types = {opt.name: opt.type for opt in impl_rabbit.rabbit_opts}
    conf([], project="nscluster-rpcclient", default_config_files=[], default_config_dirs=[])
    for name, value in setup.get("rabbit", {}).items():
        conf.set_override(name, types[name](value), group="oslo_messaging_rabbit")
    transport = oslo_messaging.get_rpc_transport(conf, url=setup["url"])
    clients = {topic: oslo_messaging.get_rpc_client(
        transport, oslo_messaging.Target(exchange=EXCHANGE, topic=topic), timeout=call_timeout_s)
        for topic in topics}
    lock = threading.Lock()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())

    def one(topic: str) -> None:
        sent = time.monotonic()
        try:
            answer = clients[topic].call({}, PING)
        except Exception as exc:  # noqa: BLE001 - reported, the stream goes on
            emit({"event": "failed", "topic": topic, "t": sent, "done": time.monotonic(),
                  "error": type(exc).__name__}, lock)
            return
        emit({"event": "pong" if answer == "pong" else "failed", "topic": topic, "t": sent,
              "done": time.monotonic(), "error": "" if answer == "pong" else "unexpected answer"}, lock)

    began = time.monotonic()
    calls: list[threading.Thread] = []
    rounds = 0
    while not stop.is_set() and time.monotonic() - began < seconds:
        for topic in topics:
            call = threading.Thread(target=one, args=(topic,), daemon=True)
            call.start()
            calls.append(call)
        rounds += 1
        stop.wait(max(0.0, began + rounds * interval_s - time.monotonic()))
    deadline = time.monotonic() + call_timeout_s + 2
    for call in calls:
        call.join(max(0.0, deadline - time.monotonic()))
    emit({"event": "done", "t": time.monotonic()}, lock)
    # A call stuck in a send to a dead broker would hold the transport's cleanup: exit at once.
    os._exit(0)


# server create ---------------------------------------------------------------

def request(host: str, port: int, method: str, path: str, body: object | None = None, *,
            headers: dict[str, str] | None = None,
            raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection: (status, headers, body)."""
    import http.client

    connection = http.client.HTTPConnection(host, port, timeout=HTTP_TIMEOUT_S)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    content = "application/octet-stream" if raw is not None else "application/json"
    try:
        connection.request(method, path, body=data, headers={"Content-Type": content, "Connection": "close",
                                                              **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def api(host: str, port: int, method: str, path: str, expected: int, body: object | None = None, *,
        headers: dict[str, str] | None = None, raw: bytes | None = None) -> Any:
    """The JSON answer of a request that must answer ``expected`` (else RuntimeError)."""
    status, _headers, answer = request(host, port, method, path, body, headers=headers, raw=raw)
    if status != expected:
        raise RuntimeError(f"{method} {path}: status {status}: {answer[:300]!r}")
    return json.loads(answer) if answer else {}


def server(host: str, keystone_port: int, credentials_file: str, glance_port: int, nova_port: int,
           seconds: float) -> int:
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read(credentials_file, encoding="utf-8")
    entry = parser["credentials"]
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": entry["username"], "password": entry["password"],
        "domain": {"name": entry.get("user_domain_name", "Default")}}}},
        "scope": {"project": {"name": entry.get("project_name", "admin"),
                              "domain": {"name": entry.get("project_domain_name", "Default")}}}}}
    until = time.monotonic() + seconds
    status, headers, _answer = request(host, keystone_port, "POST", "/v3/auth/tokens", auth)
    if status != 201:
        raise RuntimeError(f"token: status {status}")
    token = {"X-Auth-Token": headers["x-subject-token"]}
    nova = {**token, "X-OpenStack-Nova-API-Version": "2.37"}
    image = api(host, glance_port, "POST", "/v2/images", 201,
                {"name": "rpc-test", "disk_format": "raw", "container_format": "bare"}, headers=token)
    image_id = str(image["id"])
    api(host, glance_port, "PUT", f"/v2/images/{image_id}/file", 204, headers=token, raw=b"\0" * 4096)
    flavor = api(host, nova_port, "POST", "/v2.1/flavors", 200, {"flavor": {
        "name": f"rpc-test-{time.monotonic_ns()}", "ram": 64, "vcpus": 1, "disk": 1}}, headers=nova)["flavor"]
    created = api(host, nova_port, "POST", "/v2.1/servers", 202, {"server": {
        "name": "rpc-test", "imageRef": image_id, "flavorRef": str(flavor["id"]), "networks": "none"}},
        headers=nova)["server"]
    posted = time.monotonic()
    server_id = str(created["id"])
    while time.monotonic() < until:
        listed = api(host, nova_port, "GET", "/v2.1/servers?status=ERROR", 200, headers=nova)["servers"]
        if any(entry.get("id") == server_id for entry in listed):
            at = time.monotonic()
            print(json.dumps({"event": "server", "id": server_id, "posted": posted, "error": at}), flush=True)
            return 0
        time.sleep(POLL_S)
    print(f"server {server_id} not in ERROR within {seconds} s", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    inode, mode, *rest = argv
    if not in_expected_namespace(int(inode)):
        print("refusing to run outside the cluster's network namespace", file=sys.stderr)
        return 3
    if mode == "ping" and len(rest) == 4:
        return ping(rest[0].split(","), float(rest[1]), float(rest[2]), float(rest[3]))
    if mode == "server" and len(rest) == 6:
        return server(rest[0], int(rest[1]), rest[2], int(rest[3]), int(rest[4]), float(rest[5]))
    print(f"bad arguments for mode {mode}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
