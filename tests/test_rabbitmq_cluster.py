"""The ``rabbitmq`` agent (installed) clustering three real brokers: peers from Pacemaker, depth-20
cluster health, a wiped and a forgotten node, power loss.

Three brokers on loopback (AMQP ports 28730, 28740, 28750, distribution on the next port, an epmd
of their own on EPMD_PORT) stand for the clone on the Pacemaker nodes ``rmqa``, ``rmqb`` and
``rmqc``: each resource is run with ``CRM_meta_on_node`` set to its node and the crm_node stub of
``harness.rabbitmq`` answering ``crm_node -l`` from a membership file the tests write. No ``peers``
parameter: the agent derives them from that membership through ``nodename=rabbit-%h@localhost``.
The tests share one cluster and run in order; the quorum queue ``test-kept`` carries confirmed
messages through all of them.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import statistics
import tempfile
import threading
import time

import pytest

from harness.processes import alive, eventually
from harness.rabbitmq import (
    AGENT,
    RabbitResource,
    connection,
    publish_confirmed,
    stop_epmd,
    write_membership,
    write_secrets,
)

EPMD_PORT = 28799
NODES = {"rmqa": 28730, "rmqb": 28740, "rmqc": 28750}
TEMPLATE = "rabbit-%h@localhost"
QUEUE = "test-kept"
LED_BY_RMQC = "led-by-rmqc"
MESSAGES = 40
FIRST_START_S = 120
# A depth-20 check while Pacemaker shows a peer lost answers without touching a broker (the agent's
# start and one crm_node call); a round trip through a frozen peer's link would take the check's cap.
LOST_PEER_DEEP_CHECK_S = 5.0
START_S = 90  # a start's timeout (OCF_RESKEY_CRM_meta_timeout): the boot's wait for peers fits in it

pytestmark = [pytest.mark.services,
              pytest.mark.skipif(os.geteuid() != 0, reason="the broker runs as user rabbitmq: needs root")]


class Cluster:
    def __init__(self, workdir: str) -> None:
        self.membership = os.path.join(workdir, "crm_node-members")
        self.nodes = {name: RabbitResource(workdir, port, EPMD_PORT, instance=name, pacemaker_node=name,
                                           crm_nodes=self.membership, nodename=TEMPLATE)
                      for name, port in NODES.items()}
        self.bodies: list[bytes] = []

    def __getitem__(self, name: str) -> RabbitResource:
        return self.nodes[name]

    def pacemaker(self, **online: bool) -> None:
        """Pacemaker's membership as crm_node would print it: every node online unless named False."""
        write_membership(self.membership, {name: online.get(name, True) for name in self.nodes})

    def start_together(self, names: list[str], timeout_s: float = START_S) -> dict[str, object]:
        results: dict[str, object] = {}

        def start(name: str) -> None:
            results[name] = self.nodes[name]("start", timeout_s=timeout_s)

        threads = [threading.Thread(target=start, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    def kill_all(self) -> None:
        leaders = [node.leader() for node in self.nodes.values()]
        for pid in leaders:
            os.kill(pid, signal.SIGKILL)
        assert eventually(lambda: not any(alive(pid) for pid in leaders))
        # A killed VM's leader is a zombie before its other threads are gone and its sockets closed.
        ports = {port + offset for port in NODES.values() for offset in (0, 1)}
        assert eventually(lambda: not listening(ports), timeout=60)

    def running(self, name: str = "rmqa") -> set[str]:
        done = self.nodes[name].ctl("cluster_status", "--formatter", "json")
        return set(json.loads(done.stdout)["running_nodes"]) if done.returncode == 0 else set()

    def linked(self, name: str) -> set[str]:
        """The Erlang nodes broker ``name`` has a distribution link to (``nodes()``: its own view,
        asked of no other node, so it answers while a peer is frozen)."""
        done = self.nodes[name].ctl("eval", "nodes().")
        assert done.returncode == 0, done.stderr
        return set(re.findall(r"'?([\w.-]+@[\w.-]+)'?", done.stdout))

    def leader(self, queue: str, name: str = "rmqa") -> str:
        """The leader of quorum queue ``queue`` as broker ``name`` knows it ("" when unknown)."""
        done = self.nodes[name].ctl("list_queues", "name", "leader", "--formatter", "json")
        rows = json.loads(done.stdout) if done.returncode == 0 else []
        return next((str(row.get("leader") or "") for row in rows if row["name"] == queue), "")

    def queue(self, name: str = "rmqa") -> dict[str, object]:
        """``test-kept``'s members and ready messages as seen through node ``name``."""
        done = self.nodes[name].ctl("list_queues", "name", "members", "messages", "--formatter", "json")
        if done.returncode != 0:
            return {}
        for row in json.loads(done.stdout):
            if row["name"] == QUEUE:
                return row
        return {}

    def all_nodenames(self) -> set[str]:
        return {node.nodename for node in self.nodes.values()}

    def assert_messages_kept(self) -> None:
        """Every confirmed message is in ``test-kept``, which has a replica on every node; published anew."""
        expected = len(self.bodies)
        ready = eventually(lambda: int(self.queue().get("messages") or 0) >= expected, timeout=60)
        assert ready, self.queue()
        # Right after a restart the queue may still be electing its leader: a get can time out, and the
        # message it asked for comes back later (delivered at least once): drain until it stays empty.
        got: list[bytes] = []

        def drained() -> bool:
            more = consume_acked(NODES["rmqa"], QUEUE)
            got.extend(more or [])
            return more is not None and self.queue().get("messages") == 0

        assert eventually(drained, timeout=90, every=1), self.queue()
        lost = set(self.bodies) - set(got)
        assert not lost, f"{len(lost)} of {expected} confirmed messages lost"
        if len(got) > expected:
            print(f"\n{len(got) - expected} message(s) delivered more than once (at least once), none lost")
        self.bodies = publish_confirmed(NODES["rmqb"], QUEUE, MESSAGES)


def listening(ports: set[int]) -> set[int]:
    """Those of ``ports`` a TCP socket listens on."""
    import psutil

    return {conn.laddr.port for conn in psutil.net_connections(kind="tcp")
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in ports}


def consume_acked(port: int, queue: str) -> list[bytes] | None:
    """Every message of ``queue``, acknowledged only once all were read (none lost on a failure);
    None when the broker could not hand them over."""
    import pika.exceptions

    got: list[bytes] = []
    try:
        conn = connection(port)
    except pika.exceptions.AMQPError:
        return None
    try:
        channel = conn.channel()
        tags = []
        while True:
            method, _props, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            got.append(body)
            tags.append(method.delivery_tag)
        for tag in tags:
            channel.basic_ack(tag)
    except pika.exceptions.AMQPError:
        return None
    finally:
        if conn.is_open:  # unacknowledged messages go back to the queue
            try:
                conn.close()
            except pika.exceptions.AMQPError:
                pass
    return got


def broker_vms(nodename: str) -> list[int]:
    """Erlang VMs running the broker node ``nodename``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"beam.smp") and f"RABBITMQ_NODENAME={nodename}".encode() in environ:
            found.append(int(entry))
    return found


def agent_log(resource: RabbitResource) -> str:
    """What the agent logged for this resource (the resources share one log file)."""
    tag = f"rabbitmq({resource.instance})["
    with open(resource.logfile, encoding="utf-8") as handle:
        return "".join(line for line in handle if line.startswith(tag))


def log_since(resource: RabbitResource, offset: int) -> str:
    return agent_log(resource)[offset:]


@pytest.fixture(scope="module")
def cluster():
    assert os.access(AGENT, os.X_OK), f"{AGENT} is not installed: run `make install` first"
    workdir = tempfile.mkdtemp(prefix="osha-rabbitmq-cluster-")
    os.chmod(workdir, 0o755)  # noqa: S103 - like /var/lib: user rabbitmq reaches its directories below
    write_secrets(workdir)
    made = Cluster(workdir)
    made.pacemaker()
    try:
        yield made
    finally:
        for node in made.nodes.values():
            try:
                node.ensure_stopped()
            except RuntimeError:
                pass
        stop_epmd(EPMD_PORT)
        shutil.rmtree(workdir, ignore_errors=True)


def test_new_nodes_started_together_form_one_cluster_with_peers_from_pacemaker(cluster):
    began = time.monotonic()
    # The first by name bootstraps, the others join it one by one (the agent's advertised timeout).
    results = cluster.start_together(list(NODES), timeout_s=FIRST_START_S)
    assert all(result.rc == 0 for result in results.values()), results
    log = agent_log(cluster["rmqa"])
    assert "no peer of rabbit-rmqa@localhost answers (rabbit-rmqb@localhost, rabbit-rmqc@localhost)" in log
    for name in ("rmqb", "rmqc"):
        assert f"new node {cluster[name].nodename} joined the cluster of rabbit-rmqa@localhost" in \
            agent_log(cluster[name])
    assert cluster.running() == cluster.all_nodenames()
    cluster.bodies = publish_confirmed(NODES["rmqa"], QUEUE, MESSAGES)
    assert set(cluster.queue()["members"]) == cluster.all_nodenames()
    print(f"\nthree brokers started and clustered in {time.monotonic() - began:.1f} s")


def test_depth_20_healthy(cluster):
    for name in NODES:
        took = []
        for _ in range(5 if name == "rmqa" else 1):
            result = cluster[name]("monitor", depth=20, timeout_s=30)
            assert result.rc == 0, (name, result)
            took.append(result.elapsed)
        print(f"\ndepth-20 monitor of {name}, healthy: {', '.join(f'{t:.2f}' for t in took)} s "
              f"(median {statistics.median(took):.2f} s)")
    tens = [cluster["rmqa"]("monitor", depth=10).elapsed for _ in range(5)]
    print(f"depth-10 monitor of rmqa for comparison: median {statistics.median(tens):.2f} s")


def test_depth_20_memory_alarm(cluster):
    assert cluster["rmqb"].ctl("set_vm_memory_high_watermark", "0.0000001").returncode == 0
    try:
        alarmed = cluster["rmqa"]("monitor", depth=20, timeout_s=30)
        print(f"\ndepth-20 monitor with a memory alarm on rmqb: {alarmed.elapsed:.2f} s, {alarmed.reason}")
        assert alarmed.rc == 190 and "memory alarm on rabbit-rmqb@localhost" in alarmed.reason, alarmed
        assert len(alarmed.reasons) == 1
    finally:
        assert cluster["rmqb"].ctl("set_vm_memory_high_watermark", "0.4").returncode == 0
    assert eventually(lambda: cluster["rmqa"]("monitor", depth=20, timeout_s=30).rc == 0, timeout=60)


def test_depth_20_quorum_critical(cluster):
    assert cluster["rmqc"]("stop").rc == 0
    critical = cluster["rmqa"]("monitor", depth=20, timeout_s=30)
    print(f"\ndepth-20 monitor with rmqc stopped: {critical.elapsed:.2f} s, {critical.reason}")
    assert critical.rc == 190 and "quorum-critical" in critical.reason and QUEUE in critical.reason, critical
    assert cluster["rmqa"]("monitor", depth=10).rc == 0  # the broker itself is fine


def test_a_wiped_node_rejoins_and_gets_its_replicas_back(cluster):
    node = cluster["rmqc"]  # stopped by the previous test
    assert os.path.isdir(node.data_dir)
    shutil.rmtree(node.data_dir)
    offset = len(agent_log(node))
    started = node("start", timeout_s=START_S)
    assert started.rc == 0, started
    log = log_since(node, offset)
    assert f"still lists node {node.nodename}, whose data is gone" in log
    assert "quorum queue replicas grown back on it: " in log and QUEUE in log
    assert cluster.running() == cluster.all_nodenames()
    assert eventually(lambda: set(cluster.queue().get("members", [])) == cluster.all_nodenames())
    cluster.assert_messages_kept()
    assert cluster["rmqa"]("monitor", depth=20, timeout_s=30).rc == 0


def test_a_forgotten_node_rejoins_with_its_data_moved_aside(cluster):
    node = cluster["rmqc"]
    assert node("stop").rc == 0
    forgot = cluster["rmqa"].ctl("forget_cluster_node", node.nodename)
    assert forgot.returncode == 0, forgot.stderr
    assert eventually(lambda: node.nodename not in cluster.queue().get("members", [node.nodename]))
    offset = len(agent_log(node))
    started = node("start", timeout_s=START_S)
    assert started.rc == 0, started
    log = log_since(node, offset)
    assert f"NODE {node.nodename} WAS FORGOTTEN BY ITS CLUSTER" in log
    aside = glob.glob(f"{node.data_dir}.forgotten-*")
    assert len(aside) == 1 and os.path.isfile(os.path.join(aside[0], "cluster_nodes.config")), aside
    assert "quorum queue replicas grown back on it: " in log
    assert cluster.running() == cluster.all_nodenames()
    assert eventually(lambda: set(cluster.queue().get("members", [])) == cluster.all_nodenames())
    cluster.assert_messages_kept()


def test_post_stop_notification_drops_the_link_to_a_fenced_peer_at_once(cluster):
    """A broker whose node went dark (frozen here: its link stays open and silent, as after a crash)
    is seen down by its peers only after net_ticktime (60 s here): until then the quorum queues it
    led have no leader. Once Pacemaker shows its node lost (fenced), the post-stop notification has
    each surviving broker drop the link at once; while Pacemaker still shows the node a member, it
    leaves the link alone (the negative control: the same notification, no drop)."""
    victim = cluster["rmqc"]
    publish_confirmed(NODES["rmqc"], LED_BY_RMQC, 1)  # declared there: its leader is there
    assert cluster.leader(LED_BY_RMQC) == victim.nodename
    frozen = victim.leader()
    post_stop = {"CRM_meta_notify_type": "post", "CRM_meta_notify_operation": "stop",
                 "CRM_meta_notify_stop_uname": "rmqc"}
    os.kill(frozen, signal.SIGSTOP)
    try:
        assert cluster["rmqa"]("notify", **post_stop).rc == 0  # type: ignore[arg-type]
        assert victim.nodename in cluster.linked("rmqa")
        cluster.pacemaker(rmqc=False)
        deep = cluster["rmqa"]("monitor", depth=20, timeout_s=30)
        print(f"\ndepth-20 monitor while Pacemaker shows rmqc lost: {deep.elapsed:.2f} s, {deep.reason}")
        assert deep.rc == 190 and "lost" in deep.reason and victim.nodename in deep.reason, deep
        assert deep.elapsed < LOST_PEER_DEEP_CHECK_S, deep
        began = time.monotonic()
        for name in ("rmqa", "rmqb"):
            offset = len(agent_log(cluster[name]))
            notified = cluster[name]("notify", **post_stop)  # type: ignore[arg-type]
            assert notified.rc == 0, notified
            log = agent_log(cluster[name])[offset:]
            assert f"dropped the links to {victim.nodename}" in log
            # rmqa, the first online node by name, calls the elections of the queues rmqc led.
            assert ("elections called for" in log) == (name == "rmqa"), log
        survivors = ("rmqa", "rmqb")
        dropped = eventually(lambda: all(victim.nodename not in cluster.linked(name) for name in survivors),
                             timeout=20)
        print(f"\nnotified of the fenced rmqc: both peers saw it down after {time.monotonic() - began:.1f} s "
              "(net_ticktime 60 s)")
        assert dropped, (cluster.linked("rmqa"), cluster.linked("rmqb"))
        assert eventually(lambda: cluster.leader(LED_BY_RMQC) not in ("", victim.nodename), timeout=20)
        print(f"{LED_BY_RMQC}: a new leader after {time.monotonic() - began:.1f} s")
    finally:
        os.kill(frozen, signal.SIGKILL)
        assert eventually(lambda: not alive(frozen))
        cluster.pacemaker()
    started = victim("start", timeout_s=START_S)
    assert started.rc == 0, started
    assert cluster.running() == cluster.all_nodenames()
    cluster.assert_messages_kept()
    assert cluster["rmqa"].ctl("delete_queue", LED_BY_RMQC).returncode == 0


def test_power_loss_all_come_back_together(cluster):
    cluster.kill_all()
    began = time.monotonic()
    results = cluster.start_together(list(NODES))
    print(f"\nall three killed -9 and started at once: {time.monotonic() - began:.1f} s "
          f"({', '.join(f'{name} {result.elapsed:.1f} s' for name, result in results.items())})")
    for name, result in results.items():
        assert result.rc == 0, (name, result)
        assert "forcing its boot" not in agent_log(cluster[name])
    assert eventually(lambda: cluster.running() == cluster.all_nodenames())
    cluster.assert_messages_kept()


def test_power_loss_one_comes_back_and_the_others_rejoin(cluster):
    cluster.kill_all()
    first = cluster["rmqa"]
    # Its peers online in Pacemaker but not starting: it waits for them, within the start's budget,
    # and fails with a reason of its own before the timeout.
    waited = first("start", timeout_s=45)
    print(f"\nrmqa alone, peers online but not starting: {waited.elapsed:.1f} s, {waited.reason}")
    assert waited.rc == 1 and "s at boot for its cluster peers" in waited.reason, waited
    assert "the broker was stopped" in waited.reason and not broker_vms(first.nodename)
    assert waited.elapsed < 45 and len(waited.reasons) == 1
    # Its peers lost for Pacemaker: it boots at once (force_boot) and runs.
    cluster.pacemaker(rmqb=False, rmqc=False)
    offset = len(agent_log(first))
    alone = first("start", timeout_s=START_S)
    print(f"rmqa alone, peers lost: started in {alone.elapsed:.1f} s")
    assert alone.rc == 0, alone
    assert "forcing its boot (rabbitmqctl force_boot)" in log_since(first, offset)
    assert first("monitor", depth=10).rc == 0
    # The others come back later, with their data: no wipe, no move aside.
    cluster.pacemaker()
    offsets = {name: len(agent_log(cluster[name])) for name in ("rmqb", "rmqc")}
    aside = {name: glob.glob(f"{cluster[name].data_dir}.forgotten-*") for name in ("rmqb", "rmqc")}
    results = cluster.start_together(["rmqb", "rmqc"])
    for name, result in results.items():
        assert result.rc == 0, (name, result)
        log = log_since(cluster[name], offsets[name])
        assert "with its existing data" in log and "FORGOTTEN" not in log and "joined" not in log, log
        assert glob.glob(f"{cluster[name].data_dir}.forgotten-*") == aside[name]
    assert eventually(lambda: cluster.running() == cluster.all_nodenames())
    cluster.assert_messages_kept()
    assert first("monitor", depth=20, timeout_s=30).rc == 0


def test_power_loss_two_come_back_and_the_first_forces(cluster):
    # One node lost for good, two back at once: both would wait for the lost one (3.10 after kill -9
    # of all), so the first by name forces its boot and the other waits for it.
    cluster.kill_all()
    cluster.pacemaker(rmqc=False)
    offsets = {name: len(agent_log(cluster[name])) for name in NODES}
    began = time.monotonic()
    results = cluster.start_together(["rmqa", "rmqb"])
    print(f"\nrmqa and rmqb back at once, rmqc lost: {time.monotonic() - began:.1f} s")
    for name, result in results.items():
        assert result.rc == 0, (name, result)
    assert "this one, forces its boot" in log_since(cluster["rmqa"], offsets["rmqa"])
    assert "force_boot" not in log_since(cluster["rmqb"], offsets["rmqb"])
    assert eventually(lambda: cluster.running() == {cluster["rmqa"].nodename, cluster["rmqb"].nodename})
    cluster.pacemaker()
    late = cluster["rmqc"]("start", timeout_s=START_S)
    assert late.rc == 0, late
    assert "with its existing data" in log_since(cluster["rmqc"], offsets["rmqc"])
    assert eventually(lambda: cluster.running() == cluster.all_nodenames())
    cluster.assert_messages_kept()
