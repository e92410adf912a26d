"""memcached: our agent's monitor against a bare TCP check of the same server.

The bare check is the least a monitor can do in its own process: the interpreter the agents run
on, one connection, ``version``, its answer. Our depth 0 opens no connection (the process and
its listening socket are read from the kernel); depth 10 is that bare check plus depth 0; depth
20 adds a set, get and delete.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from bench.core import BARE_INTERPRETER, Bench, alternate, ms, ratio, time_once
from harness.memcached import AGENT, MemcachedResource

PORT = 27511
BARE_CHECK = ("import _socket\n"
              "s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
              "s.settimeout(5)\n"
              f"s.connect(('127.0.0.1', {PORT}))\n"
              "s.sendall(b'version\\r\\n')\n"
              "assert s.recv(64).startswith(b'VERSION ')\n")


def run(bench: Bench) -> None:
    if os.geteuid() != 0:
        print("memcached: skipped (needs root to run memcached as its user)\n")
        return
    workdir = tempfile.mkdtemp(prefix="osha-bench-memcached-")
    os.chmod(workdir, 0o755)  # noqa: S103 - like /run/resource-agents
    cache = MemcachedResource(workdir, PORT, instance="bench-memcached")
    try:
        started = cache("start")
        if started.rc != 0:
            raise RuntimeError(f"memcached did not start: {started}")

        def monitor(depth: int) -> float:
            return time_once([AGENT, "monitor"], cache.env(depth), expect=(0,))

        times = alternate({
            "bare": lambda: time_once(BARE_INTERPRETER),
            "tcp": lambda: time_once(["/usr/bin/python3", "-I", "-S", "-c", BARE_CHECK], expect=(0,)),
            "depth0": lambda: monitor(0),
            "depth10": lambda: monitor(10),
            "depth20": lambda: monitor(20),
        }, bench.rounds)
    finally:
        cache.ensure_stopped()
        shutil.rmtree(workdir, ignore_errors=True)
    labels = {"bare": "bare interpreter (`python3 -I -S -c pass`)",
              "tcp": "bare TCP check (same interpreter, connect + `version`)",
              "depth0": "openstack:memcached depth 0 (process + listening socket)",
              "depth10": "openstack:memcached depth 10 (+ `version`)",
              "depth20": "openstack:memcached depth 20 (+ set, get, delete)"}
    rows = [[label, ms(times[key]), ratio(times[key], times["tcp"])] for key, label in labels.items()]
    bench.table("memcached monitor vs a bare TCP check (ms)", ["check", "ms", "vs bare TCP check"], rows)
