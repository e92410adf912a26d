"""Client probes, run only inside one of the cluster's network namespaces.

Started by the harness as ``nsenter --net=/run/netns/<ns> /usr/bin/python3 -I -S probe.py
EXPECTED_NETNS_INODE MODE ...``; it refuses to send anything unless it really
runs in the expected namespace, so a probe aimed at a test address can never
leave the machine through the root namespace's default route.

Modes:
  ``wait-tcp HOST PORT TIMEOUT_S``: connect every 50 ms until a server accepts;
  print ``{"t": <CLOCK_MONOTONIC of the connect>, "holder": <its greeting, or "">}``.
  ``tcp HOST PORT TIMEOUT_S``: one attempt, same output, rc 1 if it failed.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

ATTEMPT_TIMEOUT_S = 0.25
RETRY_PAUSE_S = 0.05


def in_expected_namespace(expected_inode: int) -> bool:
    return os.stat("/proc/self/ns/net").st_ino == expected_inode


def attempt(host: str, port: int, timeout_s: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            answered_at = time.monotonic()
            data = greeting(connection, timeout_s)
    except OSError:
        return None
    return json.dumps({"t": answered_at, "holder": data.decode(errors="replace").strip()})


def greeting(connection: socket.socket, timeout_s: float) -> bytes:
    """What the server says first (the harness's node servers say their name); b"" if nothing."""
    connection.settimeout(timeout_s)
    try:
        return connection.recv(256)
    except TimeoutError:
        return b""


def main(argv: list[str]) -> int:
    expected_inode, mode, host, port, timeout_s = (
        int(argv[0]), argv[1], argv[2], int(argv[3]), float(argv[4]))
    if not in_expected_namespace(expected_inode):
        sys.stderr.write("probe refused: not inside the cluster's network namespace\n")
        return 3
    if mode == "tcp":
        answer = attempt(host, port, timeout_s)
        if answer is None:
            return 1
        print(answer, flush=True)
        return 0
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        answer = attempt(host, port, ATTEMPT_TIMEOUT_S)
        if answer is not None:
            print(answer, flush=True)
            return 0
        time.sleep(RETRY_PAUSE_S)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
