"""PID 1 of one cluster node: private mounts, then corosync and pacemakerd, then reaping.

Started by the harness as
``unshare --mount --uts --ipc --pid --fork --mount-proc --propagation private
/usr/bin/python3 -I -S supervisor.py NODE.json`` inside the node's network namespace.
It is self-contained (standard library only) because it runs on the system
interpreter with no project path.

The node "powers off" when this process dies: the kernel then kills every
process of the PID namespace and the mount namespace (with its tmpfs state)
disappears, which is what a crash or a fence does to a real controller.
SIGTERM asks for a clean shutdown (pacemakerd first, then corosync).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

DAEMON_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PACEMAKER_DIRS = ("cib", "pengine", "blackbox", "cores")
TMPFS_MOUNTS = (("/run", "0755"), ("/dev/shm", "1777"), ("/var/lib/pacemaker", "0755"),  # noqa: S108
                ("/var/lib/corosync", "0755"))


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} supervisor: {message}", flush=True)


def mount(argv: list[str]) -> None:
    subprocess.run(["/usr/bin/mount", *argv], check=True)


def prepare_filesystem(config: dict[str, Any]) -> None:
    for target, mode in TMPFS_MOUNTS:
        mount(["-t", "tmpfs", "-o", f"mode={mode},nosuid,nodev", "tmpfs", target])
    for source, target in config["binds"]:
        mount(["--bind", source, target])
    uid = pwd.getpwnam("hacluster").pw_uid
    gid = grp.getgrnam("haclient").gr_gid
    for name in PACEMAKER_DIRS:
        path = f"/var/lib/pacemaker/{name}"
        os.mkdir(path, 0o750)
        os.chown(path, uid, gid)
    seed = "/var/lib/pacemaker/cib/cib.xml"
    with open(config["cib_seed"], "rb") as src, open(seed, "wb") as dst:
        dst.write(src.read())
    os.chmod(seed, 0o600)
    os.chown(seed, uid, gid)
    os.mkdir("/run/resource-agents", 0o1755)
    os.chmod("/run/resource-agents", 0o1755)  # noqa: S103 (what resource-agents expect)


def daemon_env(extra: dict[str, str]) -> dict[str, str]:
    return {"PATH": DAEMON_PATH, "LANG": "C.UTF-8", "HOME": "/root", **extra}


def wait_for_corosync(deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        done = subprocess.run(["/usr/sbin/corosync-cfgtool", "-s"], capture_output=True, check=False)
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("corosync did not answer corosync-cfgtool -s")


def serve_probe_port(port: int, hostname: str) -> None:
    """Answer every connection with the node's name: the harness's probes learn who holds a VIP."""
    listener = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True,
                                    backlog=64)
    reply = (hostname + "\n").encode()
    while True:
        connection, _ = listener.accept()
        try:
            connection.sendall(reply)
        except OSError:
            pass
        finally:
            connection.close()


class Supervisor:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.corosync: subprocess.Popen[bytes] | None = None
        self.pacemakerd: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def start(self) -> None:
        socket.sethostname(self.config["name"])
        prepare_filesystem(self.config)
        self.corosync = subprocess.Popen(["/usr/sbin/corosync", "-f"], env=daemon_env({}))
        wait_for_corosync(30.0)
        log("corosync is up")
        self.pacemakerd = subprocess.Popen(
            ["/usr/sbin/pacemakerd"],
            env=daemon_env({"PCMK_logfile": "/var/log/pacemaker/pacemaker.log",
                            "PCMK_node_start_state": "default", **self.config.get("agent_env", {})}))
        log("pacemakerd started")
        if self.config.get("probe_port"):
            threading.Thread(target=serve_probe_port, args=(self.config["probe_port"],
                                                            self.config["name"]), daemon=True).start()

    def shutdown(self) -> None:
        self.stopping = True
        for daemon, grace in ((self.pacemakerd, 120.0), (self.corosync, 30.0)):
            if daemon is None or daemon.poll() is not None:
                continue
            daemon.terminate()
            try:
                daemon.wait(grace)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        log("clean shutdown complete")

    def reap_forever(self) -> int:
        """Reap every orphan of the node; end the node if its cluster stack ends."""
        daemons = {p.pid: name for p, name in ((self.corosync, "corosync"), (self.pacemakerd, "pacemakerd"))
                   if p is not None}
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                time.sleep(0.2)
                continue
            except InterruptedError:
                continue
            if self.stopping:
                continue
            if pid in daemons:
                log(f"{daemons[pid]} exited with status {status}: the node goes down")
                self.stopping = True
                self.shutdown()
                return 1


def main() -> int:
    with open(sys.argv[1]) as handle:
        config = json.load(handle)
    supervisor = Supervisor(config)

    def on_term(_signo: int, _frame: object) -> None:
        if not supervisor.stopping:
            log("SIGTERM: shutting down")
            threading.Thread(target=_shutdown_and_exit, args=(supervisor,), daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    supervisor.start()
    return supervisor.reap_forever()


def _shutdown_and_exit(supervisor: Supervisor) -> None:
    supervisor.shutdown()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
