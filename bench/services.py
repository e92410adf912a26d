"""OpenStack API agents: monitor cost, and start/stop overhead over the services' own times.

Uses the private control plane of the tests (``harness.stack``) and
our installed agents.  The baseline of start is the service launched by hand
with exactly the command line and environment the agent used (read back from
``/proc``), polled every 5 ms until its version document answers; the
baseline of stop is the time its processes take to exit after SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time

from agents.ocf.proc import all_stats
from bench.core import BARE_INTERPRETER, Bench, alternate, ms, ratio, time_once
from harness.logs import service_log_dir
from harness.stack import AGENT_DIR, HOST, PORTS, Stack

AGENTS = {"keystone": ("keystone", PORTS["keystone"], "/v3"), "glance-api": ("glance", PORTS["glance"], "/"),
          "nova-api": ("nova", PORTS["nova"], "/"), "neutron-server": ("neutron", PORTS["neutron"], "/"),
          "dashboard": ("horizon", 0, "/auth/login/")}  # the dashboard's port: the stack's
# What each agent's service needs prepared (harness.stack's prepare_* steps, run in this order).
STEPS = ("mysql", "rabbit", "keystone", "glance", "nova", "neutron", "dashboard")
NEEDS = {"keystone": {"mysql", "keystone"}, "glance-api": {"mysql", "glance"},
         "nova-api": {"mysql", "rabbit", "nova"}, "neutron-server": {"mysql", "rabbit", "neutron"},
         "dashboard": {"dashboard"}}
CYCLES = 3
Launch = tuple[list[str], dict[str, str], int, int, str]


def port_of(stack: Stack, name: str) -> int:
    return stack.dashboard_port if name == "dashboard" else AGENTS[name][1]


def agent_env(stack: Stack, workdir: str, name: str, depth: int = 0,
              interval_ms: int = 10000) -> dict[str, str]:
    user, _port, _path = AGENTS[name]
    params = {"config": stack.configs[name], "host": HOST, "port": str(port_of(stack, name)), "workers": "1",
              "log_file": os.path.join(service_log_dir(workdir, name, user), f"{name}.log")}
    if name == "neutron-server":
        params["plugin_config"] = stack.neutron_plugin_config
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf", "HA_RSCTMP": workdir,
           "OCF_RESOURCE_INSTANCE": f"bench-{name}", "HA_LOGFACILITY": "none",
           "HA_LOGFILE": os.path.join(workdir, "agents.log"), "OCF_CHECK_LEVEL": str(depth),
           "OCF_RESKEY_CRM_meta_interval": str(interval_ms), "OCF_RESKEY_CRM_meta_timeout": "60000"}
    env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
    return env


def agent_action(stack: Stack, workdir: str, name: str, action: str, depth: int = 0) -> float:
    return time_once([os.path.join(AGENT_DIR, name), action], agent_env(stack, workdir, name, depth),
                     expect=(0,))


def launched_as(workdir: str, name: str) -> Launch:
    """The command line, environment, user and cwd of the service the agent started."""
    state = os.path.join(workdir, f"openstack-{name}-bench-{name}", "identity")
    with open(state, encoding="utf-8") as handle:
        pid = int(handle.read().split()[0])
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        argv = [part.decode() for part in handle.read().split(b"\0") if part]
    if len(argv) == 1:  # neutron-server rewrites its title (setproctitle) into one string
        argv = argv[0].split()
    with open(f"/proc/{pid}/environ", "rb") as handle:
        env = dict(part.decode().split("=", 1) for part in handle.read().split(b"\0") if b"=" in part)
    info = os.stat(f"/proc/{pid}")
    # The agent removes its listen override at stop: the launch by hand gets its own copy.
    state_dir = os.path.dirname(state)
    for index, arg in enumerate(argv):
        if arg.startswith(state_dir + "/"):
            copy = os.path.join(workdir, "by-hand-" + os.path.basename(arg))
            shutil.copy(arg, copy)
            argv[index] = copy
    return argv, env, info.st_uid, info.st_gid, os.readlink(f"/proc/{pid}/cwd")


def answers(port: int, path: str) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as conn:
            conn.sendall(f"GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
            head = conn.recv(64)
    except OSError:
        return False
    return head[9:12] in (b"200", b"300")


def session_alive(sid: int) -> bool:
    return any(stat.alive and stat.session == sid for stat in all_stats())


def by_hand(launch: Launch, name: str, port: int, log: str) -> tuple[float, float]:
    """(seconds until the version document (the dashboard: its login page) answers, seconds until
    exit after SIGTERM)."""
    argv, env, uid, gid, cwd = launch
    path = AGENTS[name][2]
    began = time.perf_counter()
    with open(log, "ab") as out:
        child = subprocess.Popen(argv, env=env, user=uid, group=gid, extra_groups=[], cwd=cwd,
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    while not answers(port, path):
        if child.poll() is not None:
            raise RuntimeError(f"{name} exited when launched by hand")
        time.sleep(0.005)
    ready = time.perf_counter() - began
    began = time.perf_counter()
    os.killpg(child.pid, signal.SIGTERM)
    while session_alive(child.pid):
        child.poll()
        time.sleep(0.005)
    child.wait()
    return ready, time.perf_counter() - began


def start_stop(stack: Stack, workdir: str, name: str) -> dict[str, float]:
    agent_start, agent_stop, hand_start, hand_stop = [], [], [], []
    for _ in range(CYCLES):
        agent_start.append(agent_action(stack, workdir, name, "start"))
        launch = launched_as(workdir, name)
        agent_stop.append(agent_action(stack, workdir, name, "stop"))
        log = os.path.join(workdir, f"{name}-by-hand.log")
        ready, gone = by_hand(launch, name, port_of(stack, name), log)
        hand_start.append(ready)
        hand_stop.append(gone)
    median = statistics.median
    return {"agent_start": median(agent_start), "hand_start": median(hand_start),
            "agent_stop": median(agent_stop), "hand_stop": median(hand_stop)}


def run(bench: Bench, names: tuple[str, ...] = tuple(AGENTS)) -> None:
    """The table's rows for ``names`` (all the API agents unless told)."""
    if os.geteuid() != 0:
        print("services: skipped (needs root to run the services as their users)\n")
        return
    stack = Stack()
    workdir = tempfile.mkdtemp(prefix="osha-bench-")
    os.chmod(workdir, 0o755)  # noqa: S103 - like /run/resource-agents
    try:
        needed = set().union(*(NEEDS[name] for name in names))
        for step in STEPS:
            if step in needed:
                getattr(stack, f"prepare_{step}")()
        rows = [measure(bench, stack, workdir, name) for name in names]
    finally:
        for name in names:
            subprocess.run([os.path.join(AGENT_DIR, name), "stop"], env=agent_env(stack, workdir, name),
                           capture_output=True, check=False, timeout=60)
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)
    bench.table("OpenStack API agents: monitor cost (ratio to the bare interpreter) and start/stop overhead",
                ["agent", "monitor depth 0 ms", "depth 10 ms", "start s (by hand)", "start overhead s",
                 "stop s (SIGTERM by hand)", "stop overhead s"], rows)


def measure(bench: Bench, stack: Stack, workdir: str, name: str) -> list[str]:
    times = start_stop(stack, workdir, name)
    agent_action(stack, workdir, name, "start")
    monitors = alternate({
        "bare": lambda: time_once(BARE_INTERPRETER),
        "depth0": lambda: agent_action(stack, workdir, name, "monitor", 0),
        "depth10": lambda: agent_action(stack, workdir, name, "monitor", 10),
    }, bench.rounds)
    agent_action(stack, workdir, name, "stop")
    bare = monitors["bare"]
    return [name,
            f"{ms(monitors['depth0'])} ({ratio(monitors['depth0'], bare)})",
            f"{ms(monitors['depth10'])} ({ratio(monitors['depth10'], bare)})",
            f"{times['agent_start']:.2f} ({times['hand_start']:.2f})",
            f"{times['agent_start'] - times['hand_start']:+.3f}",
            f"{times['agent_stop']:.2f} ({times['hand_stop']:.2f})",
            f"{times['agent_stop'] - times['hand_stop']:+.3f}"]
