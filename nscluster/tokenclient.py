"""A keystone client run only inside one of the cluster's network namespaces.

Started by the harness as ``nsenter --net=/run/netns/<ns> /usr/bin/python3 -I -S tokenclient.py
EXPECTED_NETNS_INODE MODE HOST PORT CREDENTIALS_FILE SECONDS [INTERVAL_S]``; like the probes, it
refuses to send anything unless it really runs in the expected namespace. The password comes from
CREDENTIALS_FILE (root-only ini, section ``[credentials]``), never from the command line.

Modes:
  ``get`` (``... get HOST PORT PATH SECONDS``): GET PATH every 50 ms until it answers 200; print it.
  ``authget`` (``... authget HOST KEYSTONE_PORT CREDENTIALS_FILE SECONDS PORT PATH``): until GET PATH
  on PORT answers 200 with a fresh token (every 50 ms), then once without a token; print
  ``{"t": <monotonic of the 200>, "with": 200, "without": <status>, "document": <JSON of the 200>}``.
  ``wait``: ask for a token every 50 ms until one is issued (or SECONDS pass, rc 1);
  print ``{"t": <CLOCK_MONOTONIC when the token arrived>}``.
  ``stream``: ask for a token every INTERVAL_S for SECONDS (or until SIGTERM), each request on its
  own connection and thread, as a user's client would: the connection may take the whole budget
  (the kernel sends a lost SYN again after 1 s, 3 s...), the answer may come up to 30 s after the
  start; one JSON line per request:
  ``{"t": <start>, "ok": bool, "status": <HTTP status or 0>, "error": "...", "s": <duration>}``
  (``ok``: a token was issued, however long it took; the caller judges ``s``).
"""

from __future__ import annotations

import configparser
import http.client
import json
import os
import sys
import time

ATTEMPT_TIMEOUT_S = 2.0
# While no node holds the VIP a connect waits for a SYN-ACK that never comes: give up soon (as the
# TCP probes do), so that the next attempt reaches the VIP's new holder at once.
CONNECT_TIMEOUT_S = 0.25
# A streamed token request gives up after this long (its duration is reported: the caller judges it).
STREAM_LIMIT_S = 30.0
WAIT_PAUSE_S = 0.05


def in_expected_namespace(expected_inode: int) -> bool:
    return os.stat("/proc/self/ns/net").st_ino == expected_inode


def auth_body(credentials_file: str) -> bytes:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(credentials_file, encoding="utf-8")
    entry = parser["credentials"]
    user = {"name": entry["username"], "password": entry["password"],
            "domain": {"name": entry.get("user_domain_name", "Default")}}
    project = {"name": entry.get("project_name", "admin"),
               "domain": {"name": entry.get("project_domain_name", "Default")}}
    return json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": user}},
                                "scope": {"project": project}}}).encode()


def request_token(host: str, port: int, body: bytes, timeout_s: float,
                  connect_timeout_s: float = CONNECT_TIMEOUT_S) -> tuple[int, str, str]:
    """One POST /v3/auth/tokens on a new connection: (status, error, token)."""
    began = time.monotonic()
    connection = http.client.HTTPConnection(host, port, timeout=min(connect_timeout_s, timeout_s))
    try:
        connection.connect()
        connection.sock.settimeout(max(0.01, timeout_s - (time.monotonic() - began)))
        connection.request("POST", "/v3/auth/tokens", body=body,
                           headers={"Content-Type": "application/json", "Connection": "close"})
        response = connection.getresponse()
        response.read()
        token = response.getheader("X-Subject-Token") or ""
        return response.status, "" if token or response.status != 201 else "no X-Subject-Token", token
    except (OSError, http.client.HTTPException) as exc:
        return 0, f"{type(exc).__name__}: {exc}", ""
    finally:
        connection.close()


def ask_token(host: str, port: int, body: bytes, timeout_s: float,
              connect_timeout_s: float = CONNECT_TIMEOUT_S) -> tuple[int, str]:
    """(status, error); status 201 without error is a token."""
    status, error, _token = request_token(host, port, body, timeout_s, connect_timeout_s)
    return status, error


def fetch(host: str, port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
    """One GET on a new connection: (status or 0, body, error)."""
    connection = http.client.HTTPConnection(host, port, timeout=ATTEMPT_TIMEOUT_S)
    try:
        connection.request("GET", path, headers={"Connection": "close", **headers})
        response = connection.getresponse()
        return response.status, response.read(), ""
    except (OSError, http.client.HTTPException) as exc:
        return 0, b"", f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()


def wait(host: str, port: int, body: bytes, seconds: float) -> int:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        budget = min(ATTEMPT_TIMEOUT_S, max(0.1, until - time.monotonic()))
        status, error = ask_token(host, port, body, budget)
        if status == 201 and not error:
            print(json.dumps({"t": time.monotonic()}), flush=True)
            return 0
        time.sleep(WAIT_PAUSE_S)
    print(f"no token from {host}:{port} within {seconds} s", file=sys.stderr)
    return 1


def stream(host: str, port: int, body: bytes, seconds: float, interval_s: float) -> int:
    """A request every ``interval_s`` whatever the previous ones do (each in its own thread, with
    its own timeout), until SECONDS pass or SIGTERM: then it waits for the requests under way."""
    import signal
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    printing = threading.Lock()

    def one() -> None:
        started = time.monotonic()
        status, error = ask_token(host, port, body, STREAM_LIMIT_S, connect_timeout_s=STREAM_LIMIT_S)
        line = json.dumps({"t": started, "ok": status == 201 and not error, "status": status, "error": error,
                           "s": round(time.monotonic() - started, 4)})
        with printing:
            print(line, flush=True)

    began = time.monotonic()
    requests: list[threading.Thread] = []
    while not stop.is_set() and time.monotonic() - began < seconds:
        request = threading.Thread(target=one)
        request.start()
        requests.append(request)
        stop.wait(began + len(requests) * interval_s - time.monotonic())
    for request in requests:
        request.join()
    return 0


def get(host: str, port: int, path: str, seconds: float) -> int:
    """GET ``path`` every 50 ms until it answers 200; print the JSON document."""
    until = time.monotonic() + seconds
    last = ""
    while time.monotonic() < until:
        status, body, error = fetch(host, port, path, {})
        if status == 200:
            print(body.decode(), flush=True)
            return 0
        last = error or f"status {status}"
        time.sleep(WAIT_PAUSE_S)
    print(f"GET {path} on {host}:{port}: no 200 within {seconds} s (last: {last})", file=sys.stderr)
    return 1


def authget(host: str, keystone_port: int, body: bytes, seconds: float, port: int, path: str) -> int:
    """A token, then ``GET path`` with it, every 50 ms until that answers 200; then without a token."""
    until = time.monotonic() + seconds
    last = ""
    while time.monotonic() < until:
        budget = min(ATTEMPT_TIMEOUT_S, max(0.1, until - time.monotonic()))
        status, error, token = request_token(host, keystone_port, body, budget)
        if token:
            status, document, error = fetch(host, port, path, {"X-Auth-Token": token})
            if status == 200:
                at = time.monotonic()
                without, _body, error = fetch(host, port, path, {})
                print(json.dumps({"t": at, "with": status, "without": without, "error": error,
                                  "document": json.loads(document)}), flush=True)
                return 0
            last = error or f"GET {path}: status {status}"
        else:
            last = error or f"token: status {status}"
        time.sleep(WAIT_PAUSE_S)
    print(f"GET {path} on {host}:{port} with a token: no 200 within {seconds} s (last: {last})",
          file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    if len(argv) < 6:
        print(__doc__, file=sys.stderr)
        return 2
    inode, mode, host, port, credentials_file, seconds = argv[:6]
    if not in_expected_namespace(int(inode)):
        print("refusing to run outside the cluster's network namespace", file=sys.stderr)
        return 3
    if mode == "get":  # the fifth argument is a path here
        return get(host, int(port), credentials_file, float(seconds))
    return with_credentials(mode, host, int(port), auth_body(credentials_file), float(seconds), argv[6:])


def with_credentials(mode: str, host: str, port: int, body: bytes, seconds: float, rest: list[str]) -> int:
    if mode == "authget" and len(rest) >= 2:
        return authget(host, port, body, seconds, int(rest[0]), rest[1])
    if mode == "stream":
        return stream(host, port, body, seconds, float(rest[0]) if rest else 0.5)
    if mode == "wait":
        return wait(host, port, body, seconds)
    print(f"unknown mode {mode}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
