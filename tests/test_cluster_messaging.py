"""The message bus on a real 3-node cluster: the profile's ``rabbitmq`` clone under our agent, the
brokers one RabbitMQ cluster, and no confirmed message of a quorum queue lost to a fault.

Every proof runs a publisher with publisher confirms (``nscluster/amqpclient.py``, a client listing
all three brokers) streaming into a quorum queue and a consumer draining it, both in the cluster's
client namespace; every confirmed id must come out of the queue. One cluster for the module (no
database, no API: the brokers only); crashed nodes are fenced and boot again by themselves.
"""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from harness.cluster_fixtures import assert_no_password_anywhere, start_cluster, wait_rejoined
from nscluster import config, health, messaging
from nscluster.cluster import ClusterError, wait_until
from nscluster.messaging import RABBIT_DIRS, AmqpClient, RabbitInCluster

pytestmark = pytest.mark.cluster
# Bounds with margin on a busy 2-CPU machine running three Erlang VMs.
FIRST_CONFIRM_AFTER_CRASH_S = 30
DRAIN_S = 90
REJOIN_S = 240
# A slow fence device (seconds): what an isolated node does by itself is seen before it is fenced.
FENCE_DELAY_S = 10
# The brokers form with Pacemaker running one action at a time across the cluster, as it does on a
# loaded cluster (load above load-threshold): each start waits for the one before it.
ONE_ACTION_AT_A_TIME = {"cluster.properties": {"batch-limit": 1}}


@pytest.fixture(scope="module")
def bus(request):
    made = {}

    def build(cluster):
        made["rabbit"] = rabbit = RabbitInCluster(cluster)
        rabbit.prepare()
        made["stack"] = config.Stack(site_overrides=rabbit.overrides(), fence_delay_s=FENCE_DELAY_S)
        forming = {**rabbit.overrides(), **ONE_ACTION_AT_A_TIME}
        return dataclasses.replace(made["stack"], site_overrides=forming)

    began = time.monotonic()
    made["cluster"] = start_cluster(request, build, private_dirs=("/root", *RABBIT_DIRS))
    made["rabbit"].wait_formed()
    config.push(made["cluster"], made["stack"])
    print(f"cluster with three clustered brokers ready in {time.monotonic() - began:.1f} s; failed starts "
          f"while forming: {made['rabbit'].formation_failures or 'none'}")
    return made


def everyone(cluster):
    return sorted(messaging.erlang_node(name) for name in cluster.nodes)


@pytest.fixture(autouse=True)
def healthy(bus):
    cluster, rabbit = bus["cluster"], bus["rabbit"]
    health.wait_healthy(cluster, bus["stack"], timeout_s=REJOIN_S)
    wait_until(lambda: rabbit.running_nodes() == everyone(cluster), "every broker running in the cluster",
               REJOIN_S, poll_s=2)


def drained(publisher: AmqpClient, consumer: AmqpClient, what: str) -> set[int]:
    """Stop the publisher; wait until the consumer got every confirmed id (or DRAIN_S passed); the
    confirmed ids it never got."""
    publisher.stop()
    confirmed = publisher.confirmed
    end = time.monotonic() + DRAIN_S
    while not confirmed <= consumer.consumed and time.monotonic() < end:  # what is missing is reported
        time.sleep(0.5)
    consumer.stop()
    lost = confirmed - consumer.consumed
    print(f"{what}: {len(confirmed)} confirmed, {len(consumer.consumed)} distinct consumed, "
          f"{len(lost)} confirmed lost")
    return lost


def test_three_brokers_form_one_cluster_and_a_quorum_queue_has_a_replica_on_each(bus):
    cluster, rabbit = bus["cluster"], bus["rabbit"]
    assert cluster.status().where(messaging.RESOURCE) == tuple(sorted(cluster.nodes))
    assert rabbit.members() == everyone(cluster)
    # Started for the first time one at a time (batch-limit 1), the brokers formed one cluster without a
    # failed start (the harness clears a failed one so the module can go on; an operator would have to).
    assert not rabbit.formation_failures
    for name, node in cluster.nodes.items():
        pid = rabbit.broker_pid(name)
        assert pid is not None, f"no broker recorded on {name}"
        owner = cluster.run(name, ["ps", "-o", "user=", "-p", str(pid)]).stdout.strip()
        assert owner == messaging.USER
        listening = cluster.run(name, ["ss", "-Hltn", f"sport = :{messaging.PORT}"]).stdout
        assert f"{node.address}:{messaging.PORT}" in listening, listening
    consumer = rabbit.client("consume", "smoke")
    publisher = rabbit.client("publish", "smoke", seconds=60, interval_s=0.02)
    publisher.wait_confirmed(50)
    assert rabbit.queue_members("smoke") == everyone(cluster)
    assert not drained(publisher, consumer, "smoke")


def stream(rabbit, queue, hosts=None):
    """A consumer draining ``queue`` and a publisher with confirms streaming into it (20 a second),
    both through every broker (``hosts``: the order they are tried in); the publisher's first
    broker declares the queue, and so holds its leader."""
    publisher = rabbit.client("publish", queue, seconds=900, interval_s=0.05, hosts=hosts)
    publisher.wait_confirmed(20)
    consumer = rabbit.client("consume", queue, hosts=hosts)
    publisher.wait_confirmed(60)
    return publisher, consumer


def confirm_after(rabbit, publisher, at, fault, timeout_s=FIRST_CONFIRM_AFTER_CRASH_S + 30):
    """Wait for the publisher's first confirm after ``at``; on a timeout, say what it and the
    brokers saw."""
    try:
        wait_until(lambda: publisher.confirmed_after(at) is not None, f"a confirm after {fault}", timeout_s,
                   poll_s=0.1)
    except ClusterError as error:
        raise AssertionError(f"{error}; publisher: {publisher.tail()} (t0 {at:.1f}); brokers running: "
                             f"{rabbit.running_nodes()}") from None


def data_mark(rabbit, node):
    """The inode of the broker's data directory on ``node``, a marker file written into it."""
    return rabbit.data_mark(node)


def assert_data_kept(rabbit, node, mark):
    assert not rabbit.data_replaced(node, mark), \
        f"the data directory of {node} was replaced or lost its marker (a wipe)"


def wait_member_again(cluster, rabbit, node, queue, since):
    wait_until(lambda: rabbit.running_nodes() == everyone(cluster), f"{node}'s broker running in the cluster",
               REJOIN_S, poll_s=2)
    print(f"{node}'s broker a running member again {time.monotonic() - since:.1f} s after the fault")
    assert messaging.erlang_node(node) in rabbit.queue_members(queue)


def classic_loss(rabbit, cluster, victim):
    """The negative control, before the crash: confirmed messages in a classic non-durable queue on
    the victim's broker (a client of that broker alone)."""
    address = cluster.nodes[victim].address
    publisher = rabbit.client("publish-classic", "classic-control", seconds=60, interval_s=0.02,
                              hosts=[address])
    publisher.wait_confirmed(30)
    publisher.stop()
    return publisher.confirmed


def test_crash_of_the_quorum_queue_leaders_node_loses_no_confirmed_message_and_wipes_nothing(bus):
    cluster, rabbit, stack = bus["cluster"], bus["rabbit"], bus["stack"]
    queue = "crash"
    publisher, consumer = stream(rabbit, queue)
    victim = rabbit.queue_leader(queue)
    assert victim, "no leader for the quorum queue"
    control = classic_loss(rabbit, cluster, victim)
    mark = data_mark(rabbit, victim)
    before = len(publisher.confirmed)
    crashed_at = cluster.crash(victim)
    confirm_after(rabbit, publisher, crashed_at, "the crash")
    first = publisher.confirmed_after(crashed_at) - crashed_at
    print(f"crash of {victim} (the quorum queue's leader, the clients' first broker): first confirmed "
          f"publish after {first:.2f} s ({before} confirmed before the crash)")
    wait_rejoined(cluster, stack, victim, crashed_at)
    wait_member_again(cluster, rabbit, victim, queue, crashed_at)
    publisher.wait_confirmed(len(publisher.confirmed) + 40)
    lost = drained(publisher, consumer, f"crash of {victim}")
    assert not lost, f"confirmed messages lost: {sorted(lost)[:20]}"
    assert first < FIRST_CONFIRM_AFTER_CRASH_S
    assert_data_kept(rabbit, victim, mark)
    # The negative control: what the crash took from a classic non-durable queue on the victim.
    address = cluster.nodes[victim].address
    late = rabbit.client("consume-classic", "classic-control", hosts=[address])
    wait_until(lambda: rabbit.queue_info("classic-control", via=victim).get("consumers", 0) >= 1,
               "the control's consumer attached", 60, poll_s=0.5)
    left = rabbit.queue_info("classic-control", via=victim)
    late.stop()
    print(f"negative control: {len(control)} confirmed into a classic non-durable queue on {victim}; "
          f"after its crash the queue holds {left.get('messages')} and its consumer got "
          f"{len(control & late.consumed)} of them")
    assert left.get("messages") == 0
    assert control - late.consumed, "the control lost nothing: this test could not see a loss"


def listening(cluster, node):
    """Whether the broker on a powered ``node`` accepts AMQP connections (False when powered off)."""
    if not cluster.nodes[node].powered:
        return False
    done = cluster.run(node, ["ss", "-Hltn", f"sport = :{messaging.PORT}"], check=False)
    return f":{messaging.PORT}" in done.stdout


def test_kill_9_of_the_leaders_broker_is_restarted_in_place_and_loses_no_confirmed_message(bus):
    cluster, rabbit = bus["cluster"], bus["rabbit"]
    queue = "kill"
    publisher, consumer = stream(rabbit, queue)
    victim = rabbit.queue_leader(queue)
    before = rabbit.identity(victim)
    assert victim and before
    mark = data_mark(rabbit, victim)
    killed_at = time.monotonic()
    cluster.run(victim, ["kill", "-KILL", str(before[0])])
    confirm_after(rabbit, publisher, killed_at, "the kill")
    first = publisher.confirmed_after(killed_at) - killed_at
    wait_until(lambda: rabbit.identity(victim) not in (None, before), f"a new broker on {victim}", REJOIN_S)
    wait_member_again(cluster, rabbit, victim, queue, killed_at)
    print(f"kill -9 of the broker on {victim} (the leader): first confirmed publish after {first:.2f} s")
    assert not any(cluster.fenced(node, since=killed_at) for node in cluster.nodes)
    assert cluster.status().where(messaging.RESOURCE) == tuple(sorted(cluster.nodes))
    publisher.wait_confirmed(len(publisher.confirmed) + 40)
    lost = drained(publisher, consumer, f"kill -9 on {victim}")
    assert not lost, f"confirmed messages lost: {sorted(lost)[:20]}"
    assert first < FIRST_CONFIRM_AFTER_CRASH_S
    assert_data_kept(rabbit, victim, mark)


def proved_broker(cluster, node, identity):
    """Check that ``identity`` (pid, start time) is the broker of ``node`` (not a reused pid): an
    Erlang VM (``beam.smp``) of the broker's user, given the node's Erlang node name (the agent sets
    it in the environment); its state letter (``/proc/<pid>/stat``)."""
    pid, start = identity
    stat = cluster.run(node, ["cat", f"/proc/{pid}/stat"]).stdout
    fields = stat.rpartition(")")[2].split()  # after the command name: state is field 3, start time 22
    argv = cluster.run(node, ["cat", f"/proc/{pid}/cmdline"]).stdout.split("\0")
    owner = cluster.run(node, ["ps", "-o", "user=", "-p", str(pid)]).stdout.strip()
    assert int(fields[19]) == start, f"pid {pid} on {node} is no longer the broker the agent started"
    assert owner == messaging.USER, f"pid {pid} on {node} runs as {owner}"
    assert os.path.basename(argv[0]) == "beam.smp", f"pid {pid} on {node} is {argv[0]}"
    environment = cluster.run(node, ["cat", f"/proc/{pid}/environ"]).stdout.split("\0")
    name = f"RABBITMQ_NODENAME={messaging.erlang_node(node)}"
    assert name in environment, f"pid {pid} on {node} is not {messaging.erlang_node(node)}"
    return fields[0]


def monitor_failures(status, node):
    return [f for f in status.failures
            if (f.resource, f.task, f.node) == (messaging.RESOURCE, "monitor", node)]


def fail_count(cluster, node):
    done = cluster.run(node, ["crm_failcount", "--query", "--resource", messaging.RESOURCE, "--node", node,
                              "--quiet"])
    return int(done.stdout.strip() or 0)


def agent_at_work(cluster, node):
    """Whether an action of our agent (a monitor, say) runs on ``node`` now."""
    done = cluster.run(node, ["pgrep", "-f", "/resource.d/openstack/rabbitmq "], check=False)
    return done.returncode == 0


def first_confirm_through(cluster, publisher, at):
    """The node whose broker confirmed the publisher's first message after ``at``, and the
    connections the publisher gave up on before it (why)."""
    events = [e for e in list(publisher.events) if float(e["t"]) > at]
    first = min((e for e in events if e.get("event") == "confirmed"), key=lambda e: float(e["t"]))
    names = {node.address: name for name, node in cluster.nodes.items()}
    before = [e for e in events if float(e["t"]) < float(first["t"])]
    lost = [str(e.get("why")) for e in before if e.get("event") == "lost"]
    return names.get(str(first.get("broker")), str(first.get("broker"))), lost


def test_sigstop_of_the_leaders_broker_is_caught_by_the_monitor_and_restarted_in_place(bus):
    cluster, rabbit = bus["cluster"], bus["rabbit"]
    queue = "sigstop"
    publisher, consumer = stream(rabbit, queue)
    victim = rabbit.queue_leader(queue)
    before = rabbit.identity(victim)
    assert victim and before
    assert proved_broker(cluster, victim, before) in "RS"
    mark = data_mark(rabbit, victim)
    # Not while a monitor is under way: pacemaker-execd runs one operation of a resource at a time,
    # and a depth-10 or depth-20 check that got past the liveness check before the freeze would wait
    # out its own bound (and fail with its own reason) while depth 0 queues behind it.
    wait_until(lambda: not agent_at_work(cluster, victim), f"no action of the agent under way on {victim}",
               90, poll_s=0.05)
    frozen_at = time.monotonic()
    cluster.run(victim, ["kill", "-STOP", str(before[0])])
    try:
        # Every thread of the VM stops: the main thread's state letter a moment later.
        wait_until(lambda: proved_broker(cluster, victim, before) == "T", f"the broker on {victim} stopped",
                   10, poll_s=0.05)
        # Depth 0 (every 5 s) sees the VM stopped by a signal; the stop that follows (TERM and CONT)
        # ends it and the start launches a new one, on the same node.
        status = cluster.wait_status(lambda s: bool(monitor_failures(s, victim)),
                                     f"a failed monitor of the frozen broker on {victim}", 60)
        caught = time.monotonic() - frozen_at
        reasons = sorted({f.reason for f in monitor_failures(status, victim)})
        confirm_after(rabbit, publisher, frozen_at, "the freeze")
        first = publisher.confirmed_after(frozen_at) - frozen_at
        through, gave_up = first_confirm_through(cluster, publisher, frozen_at)
        wait_until(lambda: rabbit.identity(victim) not in (None, before), f"a new broker on {victim}",
                   REJOIN_S, poll_s=0.5)
        relaunched = time.monotonic() - frozen_at
        wait_member_again(cluster, rabbit, victim, queue, frozen_at)
        back = time.monotonic() - frozen_at
    finally:
        still = rabbit.identity(victim)
        if still == before:  # the agent never stopped it: let the next test have a broker
            cluster.run(victim, ["kill", "-CONT", str(before[0])], check=False)
    after = rabbit.identity(victim)
    print(f"SIGSTOP of the broker on {victim} (the leader, pid {before[0]}): failed monitor seen after "
          f"{caught:.1f} s ({'; '.join(reasons)}); first confirmed publish after {first:.2f} s (through "
          f"{through}'s broker; connections given up before it: {gave_up or 'none'}); a new broker "
          f"(pid {after[0] if after else None}) recorded after {relaunched:.1f} s; a running member again "
          f"after {back:.1f} s")
    status = cluster.status()
    assert status.where(messaging.RESOURCE) == tuple(sorted(cluster.nodes))
    assert not any(cluster.fenced(node, since=frozen_at) for node in cluster.nodes), "a node was fenced"
    assert any("frozen" in reason for reason in reasons), reasons
    assert fail_count(cluster, victim) >= 1
    assert after is not None and after != before  # pid and start time
    publisher.wait_confirmed(len(publisher.confirmed) + 40)
    lost = drained(publisher, consumer, f"SIGSTOP on {victim}")
    assert not lost, f"confirmed messages lost: {sorted(lost)[:20]}"
    assert first < FIRST_CONFIRM_AFTER_CRASH_S
    assert_data_kept(rabbit, victim, mark)
    cluster.run(victim, ["crm_resource", "--cleanup", "--resource", messaging.RESOURCE, "--node", victim])
    cluster.wait_status(lambda s: not monitor_failures(s, victim), f"the failure on {victim} cleared", 60)
    assert fail_count(cluster, victim) == 0


def test_netsplit_the_isolated_broker_stops_serving_and_the_majority_keeps_confirming(bus):
    cluster, rabbit, stack = bus["cluster"], bus["rabbit"], bus["stack"]
    queue = "split"
    publisher, consumer = stream(rabbit, queue)
    victim = rabbit.queue_leader(queue)
    assert victim
    mark = data_mark(rabbit, victim)
    isolated_at = time.monotonic()
    cluster.isolate(victim)
    wait_until(lambda: not listening(cluster, victim), f"the broker on {victim} no longer listening",
               FENCE_DELAY_S + 60, poll_s=0.2)
    silent = time.monotonic() - isolated_at
    fenced_first = bool(cluster.fenced(victim, since=isolated_at))
    confirm_after(rabbit, publisher, isolated_at, "the split")
    first = publisher.confirmed_after(isolated_at) - isolated_at
    count = len(publisher.confirmed)
    publisher.wait_confirmed(count + 40, timeout_s=60)
    during = cluster.nodes[victim].powered and not cluster.fenced(victim, since=isolated_at)
    print(f"netsplit of {victim} (the leader): its AMQP port closed after {silent:.1f} s "
          f"({'powered off by the fence first' if fenced_first else 'before it was fenced'}); the majority's "
          f"first confirm after {first:.2f} s, 40 more confirmed {'while' if during else 'by the time'} "
          f"{victim} was {'still isolated' if during else 'fenced'}")
    assert not fenced_first, "the isolated broker kept listening until the fence"
    wait_rejoined(cluster, stack, victim, isolated_at)
    wait_member_again(cluster, rabbit, victim, queue, isolated_at)
    publisher.wait_confirmed(len(publisher.confirmed) + 40)
    lost = drained(publisher, consumer, f"netsplit of {victim}")
    assert not lost, f"confirmed messages lost: {sorted(lost)[:20]}"
    assert first < FIRST_CONFIRM_AFTER_CRASH_S
    assert_data_kept(rabbit, victim, mark)


def test_a_broker_whose_data_was_destroyed_rejoins_as_a_new_node_with_its_replicas_grown_back(bus):
    """The disk under /var/lib/rabbitmq of one node replaced: the clone instance there banned (the
    agent stops the broker), the broker's HOME emptied, the ban cleared. The agent's start finds no
    data while its peers run and still list the node: it has them forget it, joins anew and grows the
    quorum queues' replicas back onto it."""
    cluster, rabbit = bus["cluster"], bus["rabbit"]
    queue = "wiped"
    began = time.monotonic()
    publisher, consumer = stream(rabbit, queue)
    leader = rabbit.queue_leader(queue)
    assert leader, "no leader for the quorum queue"
    assert rabbit.queue_members(queue) == everyone(cluster)
    # Not the leader's node, where the clients are (the first broker of their list declared the
    # queue): the fault under test is a node's lost data and its rejoin, not a failover (the tests
    # above cover that); the victim's replica is a follower the agent has to grow back.
    victim = max(name for name in cluster.nodes if name != leader)
    kept = {node: data_mark(rabbit, node) for node in cluster.nodes if node != victim}
    before = rabbit.identity(victim)
    offset = rabbit.agent_log_offset(victim)
    stopped_at = time.monotonic()
    ban = ["crm_resource", "--resource", messaging.CLONE, "--node", victim]
    cluster.run(victim, [*ban, "--ban"])
    try:
        wait_until(lambda: victim not in cluster.status().where(messaging.RESOURCE)
                   and not rabbit.broker_processes(victim), f"the broker on {victim} stopped by Pacemaker",
                   60, poll_s=0.5)
        stopped = time.monotonic() - stopped_at
        with rabbit.data_destroyed(victim) as old_inode:
            cleared_at = time.monotonic()
            cluster.run(victim, [*ban, "--clear"])
            wait_until(lambda: rabbit.running_nodes() == everyone(cluster),
                       f"{victim}'s new broker running in the cluster", REJOIN_S, poll_s=1)
            member = time.monotonic() - cleared_at
            wait_until(lambda: rabbit.queue_members(queue) == everyone(cluster),
                       f"a replica of {queue} on {victim} again", 60, poll_s=1)
            grown = time.monotonic() - cleared_at
            new_inode = rabbit.data_inode(victim)
    finally:
        cluster.run(victim, [*ban, "--clear"], check=False)
    log = rabbit.agent_log(victim, offset)
    print(f"{victim}'s broker data destroyed (the leader: {leader}): stopped by the ban in {stopped:.1f} s; "
          f"after the ban was cleared a running member again in {member:.1f} s, the queue's replica back "
          f"in {grown:.1f} s; the test took {time.monotonic() - began:.1f} s")
    node = messaging.erlang_node(victim)
    said = "\n".join(log)
    assert f"starting RabbitMQ node {node} on" in said and "without data yet (a new node)" in said, log
    assert f"still lists node {node}, whose data is gone: forgetting it there" in said, log
    assert f"new node {node} joined the cluster of rabbit@" in said, log
    regrown = [line.partition("grown back on it: ")[2].split(", ") for line in log
               if f"rejoined node {node} (wiped): quorum queue replicas grown back on it: " in line]
    assert regrown and queue in regrown[-1], log
    assert new_inode is not None and new_inode != old_inode, "the data directory is not a new one"
    after = rabbit.identity(victim)
    assert after is not None and after != before
    assert cluster.status().where(messaging.RESOURCE) == tuple(sorted(cluster.nodes))
    assert not any(cluster.fenced(name, since=stopped_at) for name in cluster.nodes), "a node was fenced"
    publisher.wait_confirmed(len(publisher.confirmed) + 40)
    lost = drained(publisher, consumer, f"data of {victim} destroyed")
    assert not lost, f"confirmed messages lost: {sorted(lost)[:20]}"
    for name, mark in kept.items():
        assert_data_kept(rabbit, name, mark)


def test_no_password_or_cookie_in_any_command_line_the_cib_or_a_log(bus):
    cluster, rabbit = bus["cluster"], bus["rabbit"]
    cookie = rabbit.cluster.node_path(next(iter(cluster.nodes)), messaging.COOKIE_FILE).read_text().strip()
    assert_no_password_anywhere(cluster, [*rabbit.passwords, cookie])
    for name in cluster.nodes:
        for path in (messaging.COOKIE_FILE, messaging.MONITOR_CREDENTIALS):
            info = os.stat(cluster.node_path(name, path))
            assert (info.st_uid, info.st_mode & 0o777) == (0, 0o600), (name, path)


def test_all_three_nodes_power_cycled_at_once_come_back_with_every_confirmed_message(bus):
    cluster, rabbit, stack = bus["cluster"], bus["rabbit"], bus["stack"]
    queue = "power"
    publisher, consumer = stream(rabbit, queue)
    marks = {node: data_mark(rabbit, node) for node in cluster.nodes}
    crashed_at = time.monotonic()
    for node in cluster.nodes:
        cluster.crash(node)
    for node in cluster.nodes:
        cluster.start_node(node)
    # The nodes keep their CIB in memory (tmpfs): after a power loss of all of them the harness
    # pushes the configuration again, where a real cluster reads it back from its disks.
    cluster.wait_online(timeout_s=REJOIN_S)
    config.push(cluster, stack)
    try:
        wait_until(lambda: rabbit.running_nodes() == everyone(cluster), "every broker back in the cluster",
                   REJOIN_S + 120, poll_s=2)
    finally:
        status = cluster.try_status()
        print(f"power cycle of all three nodes: brokers running {rabbit.running_nodes()} after "
              f"{time.monotonic() - crashed_at:.1f} s; Pacemaker failures "
              f"{[str(f) for f in status.failures] if status else 'unknown'}")
    wait_until(lambda: publisher.confirmed_after(crashed_at) is not None, "a confirm after the power cycle",
               120, poll_s=0.2)
    first = publisher.confirmed_after(crashed_at) - crashed_at
    print(f"power cycle: first confirmed publish {first:.1f} s after the power loss")
    health.wait_healthy(cluster, stack, timeout_s=REJOIN_S)
    publisher.wait_confirmed(len(publisher.confirmed) + 40)
    lost = drained(publisher, consumer, "power cycle of all three nodes")
    assert not lost, f"confirmed messages lost: {sorted(lost)[:20]}"
    for node, mark in marks.items():
        assert_data_kept(rabbit, node, mark)
