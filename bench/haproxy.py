"""haproxy: our agent's monitor against a bare query of the master CLI and against ``haproxy -c``.

resource-agents (Debian 12) ships no ``ocf:heartbeat:haproxy``, so there is no shell agent to
compare with. The bare query is the least a monitor of a master-worker HAProxy can do in its own
process: the interpreter the agents run on, one connection to the master socket, ``show proc``,
its answer. ``haproxy -c`` is what every start and reload pays before it touches the running proxy.
Depth 0 is the bare query plus the process checks; depth 10 adds the worker's ``show stat``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from bench.core import BARE_INTERPRETER, Bench, alternate, ms, ratio, time_once
from harness.haproxy import AGENT, HAPROXY, Backend, HAProxyResource, write_config

FRONT = 27540
SERVERS = (27541, 27542)


def bare_query(socket_path: str) -> str:
    return ("import _socket\n"
            "s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)\n"
            "s.settimeout(5)\n"
            f"s.connect({socket_path!r})\n"
            "s.sendall(b'show proc\\n')\n"
            "s.shutdown(_socket.SHUT_WR)\n"
            "d = b''\n"
            "while (c := s.recv(65536)):\n"
            "    d += c\n"
            "assert b' worker ' in d\n")


def run(bench: Bench) -> None:
    if os.geteuid() != 0:
        print("haproxy: skipped (the master runs as root)\n")
        return
    workdir = tempfile.mkdtemp(prefix="osha-bench-haproxy-")
    os.chmod(workdir, 0o755)  # noqa: S103 - like /run/resource-agents
    proxy = HAProxyResource(workdir, instance="bench-haproxy")
    config = proxy.params["config"]
    write_config(config, FRONT, {"keystone": [(f"k{i}", port) for i, port in enumerate(SERVERS)]})
    servers = [Backend(f"k{i}", port).start() for i, port in enumerate(SERVERS)]
    try:
        started = proxy("start")
        if started.rc != 0:
            raise RuntimeError(f"haproxy did not start: {started}")
        socket_path = os.path.join(proxy.state_dir, "master.sock")

        def monitor(depth: int) -> float:
            return time_once([AGENT, "monitor"], proxy.env(depth), expect=(0,))

        cli = ["/usr/bin/python3", "-I", "-S", "-c", bare_query(socket_path)]
        times = alternate({
            "bare": lambda: time_once(BARE_INTERPRETER),
            "cli": lambda: time_once(cli, expect=(0,)),
            "check": lambda: time_once([HAPROXY, "-c", "-q", "-f", config], expect=(0,)),
            "depth0": lambda: monitor(0),
            "depth10": lambda: monitor(10),
        }, bench.rounds)
    finally:
        proxy.ensure_stopped()
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    labels = {"bare": "bare interpreter (`python3 -I -S -c pass`)",
              "cli": "bare master CLI query (same interpreter, `show proc`)",
              "check": "`haproxy -c -q -f` (paid by every start and reload)",
              "depth0": "openstack:haproxy depth 0 (master, CLI, worker)",
              "depth10": "openstack:haproxy depth 10 (+ `@1 show stat`, servers per backend)"}
    rows = [[label, ms(times[key]), ratio(times[key], times["cli"])] for key, label in labels.items()]
    bench.table("haproxy monitor vs a bare master CLI query (ms; resource-agents has no haproxy agent)",
                ["check", "ms", "vs bare CLI query"], rows)
