"""mysql against ocf:heartbeat:mysql on the same MariaDB, alternating runs in one invocation.

The server's datadir is on a loop-mounted ext4 (``harness.mariadb.Site``).  Both
agents run ``/usr/sbin/mariadbd`` directly with the same option file, datadir,
socket and pid file; the shell agent's depth-10 check logs in as root through
``unix_socket`` authentication (no password on its command line), ours as the
monitoring account of the credentials file.

"Server alone" is mariadbd started and stopped by this process with no agent:
spawn until its first greeting on the socket (polled every millisecond), and
SIGTERM until it has exited.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

from bench.core import BARE_INTERPRETER, Bench, alternate, ms, ratio, time_once

TYPE_CHECKING = False
if TYPE_CHECKING:
    from harness.mariadb import Site

AGENT = "/usr/lib/ocf/resource.d/openstack/mysql"
SHELL_AGENT = "/usr/lib/ocf/resource.d/heartbeat/mysql"
PORT = 33076
MONITOR_TARGET = 0.5
START_STOP_OVERHEAD_TARGET_S = 0.2
MAX_START_STOP_ROUNDS = 5
# What the agent's depth-10 check cannot go below: the interpreter plus PyMySQL, imported as the agent does.
PYMYSQL_IMPORT = ["/usr/bin/python3", "-I", "-S", "-c",
                  "import sys; sys.path.append('/usr/lib/python3/dist-packages'); "
                  "sys.modules['ssl'] = sys.modules['cryptography'] = None; import pymysql"]


def environment(params: dict[str, str], rsctmp: str, **extra: str) -> dict[str, str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf", "HA_RSCTMP": rsctmp,
           "OCF_RESOURCE_INSTANCE": "bench-mysql", "OCF_RESKEY_CRM_meta_timeout": "120000",
           "OCF_RESKEY_CRM_meta_interval": "20000"}
    env.update({f"OCF_RESKEY_{key}": value for key, value in params.items()})
    env.update(extra)
    return env


def timed_detached(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of an agent action whose server child keeps the agent's stdio open."""
    from harness.mariadb import run_detached

    started = time.perf_counter()
    rc, output = run_detached(argv, env)
    elapsed = time.perf_counter() - started
    if rc != 0:
        raise RuntimeError(f"{argv} exited {rc}: {output[-400:]}")
    return elapsed


class ServerAlone:
    """mariadbd with no agent: the floor both agents are compared with."""

    def __init__(self, config: str, socket_path: str) -> None:
        self.config = config
        self.socket = socket_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        from harness.mariadb import MARIADBD, greets, mysql_ids

        uid, gid = mysql_ids()
        started = time.perf_counter()
        self.process = subprocess.Popen([MARIADBD, f"--defaults-file={self.config}"], user=uid, group=gid,
                                        extra_groups=[], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        while not greets(self.socket, timeout=5.0):
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited {self.process.returncode}")
            time.sleep(0.001)
        return time.perf_counter() - started

    def stop(self) -> float:
        if self.process is None:
            raise RuntimeError("mariadbd was not started")
        started = time.perf_counter()
        self.process.terminate()
        self.process.wait(120)
        return time.perf_counter() - started


def split_cycle(start: Callable[[], float], stop: Callable[[], float],
                starts: list[float], stops: list[float]) -> Callable[[], float]:
    def once() -> float:
        starts.append(start())
        stops.append(stop())
        return starts[-1] + stops[-1]

    return once


def median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def run(bench: Bench) -> None:
    if os.geteuid() != 0:
        print("mysql benchmark skipped: loop devices and mariadbd need root\n")
        return
    for path in (AGENT, SHELL_AGENT):
        if not os.access(path, os.X_OK):
            raise SystemExit(f"{path} is missing: run `make install` (and install resource-agents)")
    from harness.mariadb import Site

    site = Site(port=PORT).create()
    try:
        measure(bench, site)
    finally:
        site.cleanup()


def measure(bench: Bench, site: Site) -> None:
    rsctmp = os.path.join(site.workdir, "rsctmp")
    ours = environment(site.db.agent_params(device=site.fs.device), rsctmp)
    shell = environment(site.db.shell_agent_params(), rsctmp)
    rounds = bench.rounds

    def monitor(agent: str, env: dict[str, str], depth: int) -> Callable[[], float]:
        depth_env = {**env, "OCF_CHECK_LEVEL": str(depth)}
        return lambda: time_once([agent, "monitor"], depth_env, (0,))

    timed_detached([AGENT, "start"], ours)
    try:
        depth0 = alternate({"ours": monitor(AGENT, ours, 0), "shell": monitor(SHELL_AGENT, shell, 0),
                            "floor": lambda: time_once(BARE_INTERPRETER)}, rounds * 2)
        depth10 = alternate({"ours": monitor(AGENT, ours, 10), "shell": monitor(SHELL_AGENT, shell, 10),
                             "floor": lambda: time_once(PYMYSQL_IMPORT)}, rounds * 2)
        depth20 = alternate({"ours": monitor(AGENT, ours, 20)}, rounds * 2)
    finally:
        timed_detached([AGENT, "stop"], ours)
    bench.table("mysql monitor vs ocf:heartbeat:mysql (same running server, ms)",
                ["check", "openstack:mysql", "heartbeat:mysql", "ratio", "target"],
                [["depth 0 (process + socket greeting)", ms(depth0["ours"]), ms(depth0["shell"]),
                  ratio(depth0["ours"], depth0["shell"]), f"≤ {MONITOR_TARGET:.2f} ×"],
                 ["depth 10 (SELECT 1 / shell: SELECT COUNT(*) FROM mysql.user)", ms(depth10["ours"]),
                  ms(depth10["shell"]), ratio(depth10["ours"], depth10["shell"]),
                  f"≤ {MONITOR_TARGET:.2f} ×"],
                 ["depth 20 (heartbeat row write + read)", ms(depth20["ours"]), "n/a", "", ""],
                 ["floor: bare interpreter", ms(depth0["floor"]), "", ratio(depth0["floor"], depth0["shell"]),
                  "vs depth 0"],
                 ["floor: interpreter + import pymysql (no ssl/cryptography)", ms(depth10["floor"]), "",
                  ratio(depth10["floor"], depth10["shell"]), "vs depth 10"]])

    alone = ServerAlone(site.db.config, site.db.socket)
    samples: dict[str, tuple[list[float], list[float]]] = {
        name: ([], []) for name in ("alone", "ours", "shell")}
    cycles = {
        "alone": split_cycle(alone.start, alone.stop, *samples["alone"]),
        "ours": split_cycle(lambda: timed_detached([AGENT, "start"], ours),
                            lambda: timed_detached([AGENT, "stop"], ours), *samples["ours"]),
        "shell": split_cycle(lambda: timed_detached([SHELL_AGENT, "start"], shell),
                             lambda: timed_detached([SHELL_AGENT, "stop"], shell), *samples["shell"]),
    }
    alternate(cycles, min(rounds, MAX_START_STOP_ROUNDS))
    rows = []
    for index, label in ((0, "start (until the server answers)"), (1, "stop (until the server is gone)")):
        floor = median(samples["alone"][index])
        our, their = median(samples["ours"][index]), median(samples["shell"][index])
        rows.append([label, ms(floor), ms(our), f"+{ms(our - floor)}", ms(their), f"+{ms(their - floor)}",
                     f"ours ≤ +{ms(START_STOP_OVERHEAD_TARGET_S)}"])
    bench.table("mysql start/stop wall time vs the server alone (ms, medians)",
                ["action", "server alone", "openstack:mysql", "over server", "heartbeat:mysql", "over server",
                 "target"], rows)
