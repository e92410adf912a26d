"""resource-agents' ``ocf:heartbeat:rabbitmq-cluster`` run outside Pacemaker on a broker of its own (bench).

The reference agent hard-codes Debian's paths: the node name and ports come from
``/etc/rabbitmq/rabbitmq-env.conf``, the broker's HOME (its Erlang cookie) and data are in
``/var/lib/rabbitmq`` (``mnesia`` below it is what its start deletes), its logs and pid file in
``/var/log/rabbitmq`` and ``/var/run/rabbitmq``. A ``ReferenceSite`` gives it private ones: a
persistent mount namespace (``unshare --mount=FILE``) in which those four paths are bind mounts
of directories under ``workdir``; every call of the agent or of ``rabbitmqctl`` enters it with
``nsenter``. The machine's own ``/etc/rabbitmq`` and ``/var/lib/rabbitmq`` are never touched; a
bind mount needs its target to exist, so ``/run/rabbitmq`` is made (empty) when the machine has
none, and removed when the last site of this process is closed.

The agent runs as Pacemaker's executor runs it (root, ``OCF_RESKEY_CRM_meta_on_node`` set, no
notifications); its Pacemaker command-line tools (``cibadmin``, ``crm_attribute``, ``crm_mon``)
work on a CIB file (``CIB_file``) in which this node is online: they run for real, reading and
writing that file instead of asking a running cluster's daemons (in a cluster, ``crm_attribute
-l reboot`` goes through pacemaker-attrd).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from harness.ocfrun import TimedResult
from harness.stack import HOST
from nscluster.messaging_reference import write_fresh

AGENT = "/usr/lib/ocf/resource.d/heartbeat/rabbitmq-cluster"
CTL = "/usr/sbin/rabbitmqctl"
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the script itself: it execs the VM
USER = "rabbitmq"
PRIVATE = {"etc": "/etc/rabbitmq", "lib": "/var/lib/rabbitmq", "log": "/var/log/rabbitmq",
           "run": "/var/run/rabbitmq"}
PACEMAKER_NODE = "bench-node"
_made_run_dir: list[ReferenceSite] = []  # the open sites, while this process made /run/rabbitmq
TIMEOUT_S = 100  # the agent's advertised start timeout


_write = write_fresh  # a fresh file, never a reopened or handed-over one


def add_to_cib(path: str, node: str) -> None:
    """``node`` a member of the CIB file ``path``, online (the file is made, empty, if missing)."""
    if not os.path.exists(path):
        empty = subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(empty.stdout)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CIB_file": path}
    nodes = subprocess.run(["cibadmin", "-Q", "-o", "nodes"], env=env, capture_output=True, text=True,
                           check=True)
    number = nodes.stdout.count("<node ") + 1
    for section, xml in (("nodes", f'<node id="{number}" uname="{node}"/>'),
                         ("status", f'<node_state id="{number}" uname="{node}" in_ccm="true" crmd="online" '
                                    'join="member" expected="member"/>')):
        subprocess.run(["cibadmin", "-C", "-o", section, "-X", xml], env=env, check=True, capture_output=True)


class ReferenceSite:
    """Private ``/etc/rabbitmq``, ``/var/lib/rabbitmq``, ``/var/log/rabbitmq``, ``/var/run/rabbitmq``
    for the reference agent, for a broker named ``nodename`` listening on ``HOST:port``.

    ``cookie`` is the Erlang cookie written into the private HOME: the cookie of a broker of our
    agent lets the reference's ``rabbitmqctl`` (and monitor) talk to that broker. ``pacemaker_node``
    is the Pacemaker node it runs on; sites given the same ``cib`` file are nodes of one cluster
    (each in it online, with the resource's node attributes once its agent wrote them).
    """

    def __init__(self, workdir: str, nodename: str, port: int, epmd_port: int, cookie: str,
                 instance: str = "rabbitmq-ref", pacemaker_node: str = PACEMAKER_NODE,
                 cib: str | None = None) -> None:
        self.root = os.path.join(workdir, f"ref-{instance}-{port}")
        self.nodename, self.port, self.epmd_port, self.cookie = nodename, port, epmd_port, cookie
        self.instance, self.pacemaker_node = instance, pacemaker_node
        self.ns_file = os.path.join(self.root, "mnt-ns")
        self.cib = cib or os.path.join(self.root, "cib.xml")
        self.rsctmp = os.path.join(self.root, "rsctmp")

    def dir(self, key: str) -> str:
        """The directory under ``workdir`` that is ``PRIVATE[key]`` inside the namespace."""
        return os.path.join(self.root, key)

    @property
    def data_dir(self) -> str:
        """The reference's ``RMQ_DATA_DIR`` (``/var/lib/rabbitmq/mnesia``) as seen from outside."""
        return os.path.join(self.dir("lib"), "mnesia")

    def create(self) -> ReferenceSite:
        entry = pwd.getpwnam(USER)
        uid, gid = entry.pw_uid, entry.pw_gid
        os.makedirs(self.root, mode=0o755)
        os.makedirs(self.rsctmp, mode=0o755)
        for key in PRIVATE:
            os.mkdir(self.dir(key), 0o755)
            os.chown(self.dir(key), uid, gid)
        _write(os.path.join(self.dir("etc"), "rabbitmq-env.conf"),
               f"NODENAME={self.nodename}\nNODE_IP_ADDRESS={HOST}\nNODE_PORT={self.port}\n"
               f"DIST_PORT={self.port + 1}\nERL_EPMD_PORT={self.epmd_port}\n"
               'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n', uid, gid, 0o644)
        _write(os.path.join(self.dir("etc"), "rabbitmq.conf"),
               "log.console = false\nlog.file.level = info\n", uid, gid, 0o644)
        _write(os.path.join(self.dir("etc"), "enabled_plugins"), "[].\n", uid, gid, 0o644)
        _write(os.path.join(self.dir("lib"), ".erlang.cookie"), self.cookie, uid, gid, 0o400)
        add_to_cib(self.cib, self.pacemaker_node)
        run_dir = os.path.realpath(PRIVATE["run"])
        if _made_run_dir or not os.path.isdir(run_dir):
            if not _made_run_dir:
                os.mkdir(run_dir, 0o755)
            _made_run_dir.append(self)
        with open(self.ns_file, "w", encoding="utf-8"):
            pass
        subprocess.run(["unshare", f"--mount={self.ns_file}", "--propagation", "private", "true"], check=True,
                       capture_output=True)
        for key, target in PRIVATE.items():
            subprocess.run(self.wrap(["mount", "--bind", self.dir(key), target]), check=True,
                           capture_output=True)
        return self

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the private mount namespace."""
        return ["nsenter", f"--mount={self.ns_file}", "--", *argv]

    def env(self, timeout_s: float = TIMEOUT_S, interval_ms: int = 10000) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
                "OCF_RESOURCE_INSTANCE": self.instance, "HA_RSCTMP": self.rsctmp, "HA_LOGFACILITY": "none",
                "HA_LOGFILE": os.path.join(self.root, "agent.log"), "CIB_file": self.cib,
                "OCF_RESKEY_CRM_meta_on_node": self.pacemaker_node,
                "OCF_RESKEY_CRM_meta_interval": str(interval_ms),
                "OCF_RESKEY_CRM_meta_timeout": str(int(timeout_s * 1000))}

    def agent_argv(self, action: str) -> list[str]:
        return self.wrap([AGENT, action])

    def __call__(self, action: str, timeout_s: float = TIMEOUT_S) -> TimedResult:
        interval = 0 if action != "monitor" else 10000
        # Its start backgrounds the server with the agent's stdout and stderr still open: output goes to a
        # file, not a pipe that would be read until the broker exits.
        with tempfile.TemporaryFile() as output:
            began = time.monotonic()
            done = subprocess.run(self.agent_argv(action), env=self.env(timeout_s, interval),
                                  stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                  timeout=timeout_s + 30, check=False)
            elapsed = time.monotonic() - began
            output.seek(0)
            return TimedResult(done.returncode, output.read().decode("utf-8", "replace"), elapsed)

    def ctl_argv(self, *args: str) -> list[str]:
        """``rabbitmqctl ARGS`` as the reference agent runs it (root, through Debian's wrapper)."""
        return self.wrap([CTL, *args])

    def server_argv(self) -> list[str]:
        """The broker with no agent: Debian's server script as user rabbitmq, HOME the private one."""
        return self.wrap(["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", "--reset-env",
                          "/usr/bin/env", "LANG=C.UTF-8", "RABBITMQ_ALLOW_INPUT=true",
                          "RABBITMQ_PID_FILE=/var/run/rabbitmq/alone.pid", SERVER, "-noinput"])

    def broker_pids(self) -> list[int]:
        """Erlang VMs of user rabbitmq started inside this namespace (by the agent or by hand)."""
        mine = os.stat(self.ns_file).st_ino
        uid = pwd.getpwnam(USER).pw_uid
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid or os.stat(f"/proc/{entry}/ns/mnt").st_ino != mine:
                    continue
                with open(f"/proc/{entry}/comm", encoding="utf-8") as handle:
                    if handle.read().strip().startswith("beam"):
                        found.append(int(entry))
            except OSError:
                continue
        return found

    def close(self) -> None:
        """Kill the brokers still running in the namespace (not epmd: it is shared), unmount it, remove
        the files."""
        if os.path.exists(self.ns_file):
            for pid in self.broker_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            subprocess.run(["umount", self.ns_file], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        if self in _made_run_dir:
            _made_run_dir.remove(self)
            if not _made_run_dir:
                try:
                    os.rmdir(os.path.realpath(PRIVATE["run"]))
                except OSError:
                    pass


# The wipe, measured: ``python -m harness.rabbitmq_reference`` ----------------------------------

WIPE_PORTS = (28820, 28830)  # two nodes of one cluster; distribution on port + 1
WIPE_EPMD_PORT = 28848
QUEUE_INFO = ("list_queues", "-q", "name", "type", "leader", "members", "messages")
WIPE_TIMEOUT_S = 300  # a rejoin is a dozen rabbitmqctl calls and a boot: minutes on a loaded machine


def _connection(port: int):  # type: ignore[no-untyped-def]
    import pika

    return pika.BlockingConnection(pika.ConnectionParameters(
        host=HOST, port=port, credentials=pika.PlainCredentials("guest", "guest"), socket_timeout=10,
        stack_timeout=10, blocked_connection_timeout=10, connection_attempts=1, heartbeat=0))


def publish(port: int, queues: dict[str, str]) -> None:
    """One persistent message, confirmed, into each durable queue (name -> x-queue-type)."""
    import pika

    conn = _connection(port)
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        for name, kind in queues.items():
            channel.queue_declare(name, durable=True, arguments={"x-queue-type": kind})
            channel.basic_publish("", name, b"kept?", pika.BasicProperties(delivery_mode=2), mandatory=True)
    finally:
        conn.close()


def messages(port: int, name: str) -> str:
    """The messages got from queue ``name`` (unacknowledged: they go back at the close), "no such queue"
    when a passive declare fails, or the broker's error."""
    import pika

    try:
        conn = _connection(port)
    except (pika.exceptions.AMQPError, OSError) as exc:
        return f"no connection ({type(exc).__name__})"
    try:
        channel = conn.channel()
        channel.queue_declare(name, passive=True)
        count = 0
        while channel.basic_get(name, auto_ack=False)[0] is not None:
            count += 1
        return str(count)
    except pika.exceptions.ChannelClosedByBroker as exc:
        return "no such queue" if exc.reply_code == 404 else f"error {exc.reply_code} {exc.reply_text}"
    except pika.exceptions.ConnectionClosedByBroker as exc:
        return f"error {exc.reply_code} {exc.reply_text}"
    finally:
        if conn.is_open:
            conn.close()


def settled(port: int, name: str, timeout: float = 30) -> str:
    """``messages`` once it is no error, or its last error after ``timeout`` seconds (with the wait)."""
    began = time.monotonic()
    while True:
        found = messages(port, name)
        waited = time.monotonic() - began
        if not found.startswith(("error", "no connection")) or waited > timeout:
            return found if waited < 1 else f"{found} (after {waited:.0f} s)"
        time.sleep(1)


def files_under(path: str) -> int:
    return sum(len(files) for _root, _dirs, files in os.walk(path))


def _ctl(site: ReferenceSite, *args: str) -> str:
    done = subprocess.run(site.ctl_argv(*args), capture_output=True, text=True, timeout=120, check=False)
    return " ".join((done.stdout + done.stderr).split())[:300]


def measure_wipe() -> None:
    """rabbitmq-cluster's start on a node with data: bootstrapping alone, then rejoining a running node."""
    import secrets

    workdir = tempfile.mkdtemp(prefix="osha-rabbitmq-wipe-")
    os.chmod(workdir, 0o755)  # noqa: S103 - like /var/lib: user rabbitmq reaches its directories below
    cookie, cib = secrets.token_hex(20), os.path.join(workdir, "cib.xml")
    first, second = (ReferenceSite(workdir, f"rabbit-{port}@localhost", port, WIPE_EPMD_PORT, cookie,
                                   pacemaker_node=f"pcmk-{number}", cib=cib)
                     for number, port in enumerate(WIPE_PORTS, start=1))
    queues = {"wipe-classic": "classic", "wipe-quorum": "quorum"}

    def state(site: ReferenceSite, when: str) -> None:
        found = ", ".join(f"{name}={settled(site.port, name)}" for name in queues)
        print(f"  {when}: {files_under(site.data_dir)} files under {PRIVATE['lib']}/mnesia; "
              f"messages {found}; policies: {_ctl(site, 'list_policies', '-q') or 'none'}")

    def must(site: ReferenceSite, action: str) -> None:
        try:
            result = site(action, timeout_s=WIPE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            result = TimedResult(-1, "timed out", WIPE_TIMEOUT_S)
        print(f"  {action} of {site.pacemaker_node}: rc {result.rc} in {result.elapsed:.1f} s")
        if result.rc != 0:
            with open(os.path.join(site.root, "agent.log"), encoding="utf-8", errors="replace") as log:
                print("".join(log.readlines()[-15:]))
            raise RuntimeError(f"{action} failed: {result}")

    try:
        first.create()
        second.create()
        print("1. A node alone restarted (no other node of the resource running): it bootstraps")
        must(first, "start")
        publish(first.port, queues)
        policy = _ctl(first, "set_policy", "bench-limit", "^wipe-", '{"max-length":1000}')
        print(f"  policy set: {policy}")
        state(first, "before stop")
        must(first, "stop")
        print(f"  stopped: {files_under(first.data_dir)} files under {PRIVATE['lib']}/mnesia")
        must(first, "start")
        state(first, "after start")
        print("2. A node that ran in the cluster restarted while another node runs: it rejoins")
        must(second, "start")
        must(second, "monitor")  # Pacemaker's first monitor: it records the node's name (last known)
        publish(second.port, queues)
        print(f"  queues seen from {first.nodename}: {_ctl(first, *QUEUE_INFO)}")
        state(second, "before stop")
        must(second, "stop")
        print(f"  stopped: {files_under(second.data_dir)} files under {PRIVATE['lib']}/mnesia")
        must(second, "start")
        state(second, "after start")
        state(first, f"seen through {first.nodename}")
        print(f"  queues seen from {first.nodename}: {_ctl(first, *QUEUE_INFO)}")
        print(f"  cluster: {_ctl(first, 'cluster_status', '--formatter', 'json')}")
    finally:
        for site in (second, first):
            if os.path.exists(site.ns_file) and site.broker_pids():
                site("stop")
            site.close()
        from harness.rabbitmq import stop_epmd

        stop_epmd(WIPE_EPMD_PORT)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    measure_wipe()
