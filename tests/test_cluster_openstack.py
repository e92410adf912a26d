"""keystone, glance-api, nova-api, nova-conductor and nova-scheduler on a real 3-node cluster: the
profile's clones under our agents, and the profile's RabbitMQ clone (``ocf:openstack:rabbitmq``, the
brokers clustered) for nova, with nova's RPC path crossing it (a server create: nova-api ->
conductor -> scheduler -> conductor).

The database is the cluster's own (the profile's ``db`` group, ``nscluster.database``); the APIs
reach it through the database VIP, glance, nova and placement validate tokens with keystone through
the public VIP. placement runs beside the cluster (``nscluster.nova``: the scheduler needs one at its
start). Clients run only in the bridge namespace.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from harness.cluster_fixtures import (
    assert_no_password_anywhere,
    start_cluster_on_database,
    succeeded,
    wait_rejoined,
)
from nscluster import config, database, health, messaging, nova
from nscluster.cluster import ClusterError, wait_until
from nscluster.messaging import RABBIT_DIRS, RabbitInCluster
from nscluster.nova import NOVA_DIRS, NovaInCluster, PlacementBesideCluster, pongs
from nscluster.openstack import (
    GLANCE,
    GLANCE_PORT,
    PRIVATE_DIRS,
    RESOURCE,
    GlanceInCluster,
    KeystoneInCluster,
    seconds_to_token_after_crash,
    stack_with_keystone,
)

pytestmark = pytest.mark.cluster
# keystone's uwsgi processes per node. Token requests cost 0.3-1.5 s of a worker on this loaded
# 2-core machine; while a node starts keystone, RabbitMQ, glance and nova again, two workers on the
# serving node fall behind two requests a second and a backlog builds up.
KEYSTONE_WORKERS = 4
# A server create's RPC path (202 of the create until it is listed in ERROR), measured 1-3 s here.
SERVER_ERROR_BOUND_S = 60
# The first RPC round trip after a crash of the RPC queues' leaders' node: 2-16 s measured (README,
# the bus bench; docs/cluster.md, "nova's RPC path").
RPC_AFTER_CRASH_BOUND_S = 60


@pytest.fixture(scope="module")
def services(request):
    made = {}
    request.addfinalizer(lambda: made["placement"].stop() if "placement" in made else None)

    def build(cluster, db):
        database_tables = db.overrides()
        mysql_socket = database.SOCKET
        made["keystone"] = keystone = KeystoneInCluster(cluster, db_port=database.PORT,
                                                        workers=KEYSTONE_WORKERS)
        made["glance"] = glance = GlanceInCluster(cluster, db_port=database.PORT, keystone=keystone)
        made["rabbit"] = rabbit = RabbitInCluster(cluster)
        made["placement"] = placement = PlacementBesideCluster(cluster, keystone)
        made["nova"] = compute = NovaInCluster(cluster, db_port=database.PORT, keystone=keystone,
                                               rabbit=rabbit, placement=placement)
        made["stack"] = stack_with_keystone(cluster, database_tables, keystone, mysql_socket, glance, rabbit,
                                            placement, compute)
        return made["stack"]

    private = (*PRIVATE_DIRS, *NOVA_DIRS, *RABBIT_DIRS)
    made["cluster"] = cluster = start_cluster_on_database(request, build, private)
    made["rabbit"].wait_formed()
    # nova's RPC services once the brokers formed and nova's account exists.
    began = time.monotonic()
    stack = made["stack"]
    made["stack"] = stack = dataclasses.replace(stack, site_overrides={
        **stack.site_overrides, **made["nova"].rpc_overrides()})
    config.push(cluster, stack)
    health.wait_healthy(cluster, stack)
    cluster.progress(f"nova-conductor and nova-scheduler running after {time.monotonic() - began:.1f} s")
    return made


@pytest.fixture(scope="module")
def keystone_cluster(services):
    return services["cluster"], services["stack"], services["keystone"]


@pytest.fixture(autouse=True)
def healthy(keystone_cluster):
    cluster, stack, _keystone = keystone_cluster
    health.wait_healthy(cluster, stack)


def bystander(cluster) -> str:
    """A node that does not hold the public VIP (its keystone can fail without moving the VIP)."""
    (holder,) = cluster.status().where(config.PUBLIC_VIP)
    return sorted(set(cluster.nodes) - {holder})[0]


def wait_new_instance(cluster, keystone, node, before, since, timeout_s=120):
    """A failure of keystone on ``node`` was recorded and a different keystone process runs there."""
    def recovered(status):
        failed_here = [f for f in status.failures if f.resource == RESOURCE and f.node == node]
        identity = keystone.identity(node)
        restarted = identity is not None and identity != before
        return bool(failed_here) and restarted and node in status.where(RESOURCE)

    cluster.wait_status(recovered, f"keystone on {node} failed and restarted", timeout_s)
    status = cluster.status()
    assert status.where(RESOURCE) == tuple(sorted(cluster.nodes)), "keystone moved or stopped elsewhere"
    assert not any(cluster.fenced(name, since=since) for name in cluster.nodes)
    return [f for f in status.failures if f.resource == RESOURCE and f.node == node]


def test_a_token_is_issued_through_the_public_vip_by_the_clone_on_every_node(keystone_cluster):
    cluster, _stack, keystone = keystone_cluster
    status = cluster.status()
    assert status.where(RESOURCE) == tuple(sorted(cluster.nodes))
    (holder,) = status.where(config.PUBLIC_VIP)
    assert holder in status.where(RESOURCE)
    began = time.monotonic()
    issued_at = keystone.token(timeout_s=60)
    assert issued_at >= began
    assert all(keystone.identity(node) is not None for node in cluster.nodes)


def executed(cluster, node, operation):
    """How many ``operation``s of keystone the node's controller logged as succeeded."""
    return succeeded(cluster, node, RESOURCE, operation)


def test_glance_api_runs_on_every_node_and_lists_images_through_the_public_vip(keystone_cluster):
    cluster, _stack, keystone = keystone_cluster
    assert cluster.status().where(GLANCE) == tuple(sorted(cluster.nodes))
    answer = keystone.authorized_get(GLANCE_PORT, "/v2/images")
    assert (answer["with"], answer["without"]) == (200, 401), answer
    assert answer["document"]["images"] == []


def test_nova_api_runs_on_every_node_and_lists_flavors_through_the_public_vip(keystone_cluster):
    cluster, _stack, keystone = keystone_cluster
    everyone = tuple(sorted(cluster.nodes))
    status = cluster.status()
    assert status.where(nova.RESOURCE) == everyone
    assert status.where(messaging.RESOURCE) == everyone
    answer = keystone.authorized_get(nova.PORT, "/v2.1/flavors")
    assert (answer["with"], answer["without"]) == (200, 401), answer
    assert answer["document"]["flavors"] == []


def test_nova_conductor_and_scheduler_run_on_every_node_as_nova(services):
    cluster, compute = services["cluster"], services["nova"]
    status = cluster.status()
    for resource in nova.RPC_RESOURCES:
        assert status.where(resource) == tuple(sorted(cluster.nodes)), resource
        for node in cluster.nodes:
            identity = compute.identity(node, resource)
            assert identity is not None, f"no {resource} recorded on {node}"
            owner, _, args = cluster.run(node, ["ps", "-ww", "-o", "user=,args=", "-p", str(identity[0])]
                                         ).stdout.strip().partition(" ")
            assert owner == nova.USER, (node, resource, owner)
            assert f"/usr/bin/{resource}" in args and f"--config-file {nova.CONFIG}" in args, args


def test_a_server_create_through_the_public_vip_ends_in_error_with_no_valid_host(services):
    cluster, compute = services["cluster"], services["nova"]
    server = compute.create_server(timeout_s=SERVER_ERROR_BOUND_S)
    took = float(server["error"]) - float(server["posted"])
    state, fault = compute.buried_in_cell0(database.SOCKET, str(server["id"]))
    print(f"server create through the public VIP: listed in ERROR {took:.2f} s after its 202; "
          f"cell0: {state}, {fault!r}")
    assert state == "error"
    assert "No valid host was found" in fault
    # The scheduler asked placement, which had no candidate (not a failure to reach or use it).
    logs = [compute.service_log(node, nova.SCHEDULER) for node in cluster.nodes]
    assert any("Got no allocation candidates from the Placement API" in log for log in logs)
    for bad in ("Failed to retrieve allocation candidates", "Placement API service is not responding",
                "placement API endpoint was not found"):
        assert not any(bad in log for log in logs), bad
    placement_log = services["placement"].console.read_text(errors="replace")
    assert "GET /allocation_candidates?" in placement_log


def test_every_node_runs_its_broker_as_rabbitmq_on_its_own_address_in_one_cluster(services):
    cluster, rabbit = services["cluster"], services["rabbit"]
    assert rabbit.members() == sorted(messaging.erlang_node(name) for name in cluster.nodes)
    for name, node in cluster.nodes.items():
        pid = rabbit.broker_pid(name)
        assert pid is not None, f"no broker on {name}"
        owner = cluster.run(name, ["ps", "-o", "user=", "-p", str(pid)]).stdout.strip()
        assert owner == messaging.USER
        listening = cluster.run(name, ["ss", "-Hltn", f"sport = :{messaging.PORT}"]).stdout
        assert f"{node.address}:{messaging.PORT}" in listening, listening


def test_a_broker_killed_with_sigkill_is_restarted_by_pacemaker(services):
    cluster, rabbit, keystone = services["cluster"], services["rabbit"], services["keystone"]
    victim = bystander(cluster)
    before = rabbit.broker_pid(victim)
    assert before is not None
    since = time.monotonic()
    cluster.run(victim, ["kill", "-KILL", str(before)])

    def restarted(status):
        failed = [f for f in status.failures if f.resource == messaging.RESOURCE and f.node == victim]
        now = rabbit.broker_pid(victim)
        return bool(failed) and now not in (None, before) and victim in status.where(messaging.RESOURCE)

    cluster.wait_status(restarted, f"the broker on {victim} failed and restarted", 120)
    address = cluster.nodes[victim].address
    listening = ""
    until = time.monotonic() + 90
    while f"{address}:{messaging.PORT}" not in listening and time.monotonic() < until:
        time.sleep(1)
        listening = cluster.run(victim, ["ss", "-Hltn", f"sport = :{messaging.PORT}"]).stdout
    print(f"kill -9 of the broker on {victim}: listening again after {time.monotonic() - since:.1f} s")
    assert f"{address}:{messaging.PORT}" in listening
    assert cluster.status().where(nova.RESOURCE) == tuple(sorted(cluster.nodes))
    answer = keystone.authorized_get(nova.PORT, "/v2.1/flavors")
    assert answer["with"] == 200


def restart_digests(cluster):
    """Each node's op-restart-digest on keystone's last start/probe record (None when absent)."""
    from xml.etree import ElementTree as ET

    done = cluster.run(cluster.any_running_node(), ["cibadmin", "--query", "--scope", "status"])
    root = ET.fromstring(done.stdout)  # noqa: S314 (the cluster's own CIB)
    last = f"{RESOURCE}_last_0"
    return {state.get("uname"): op.get("op-restart-digest")
            for state in root.iter("node_state") for rsc in state.iter("lrm_resource")
            if rsc.get("id") == RESOURCE for op in rsc.iter("lrm_rsc_op") if op.get("id") == last}


def test_changing_a_reloadable_parameter_reloads_instead_of_restarting(keystone_cluster):
    # Runs before the fault tests on purpose: Pacemaker 2.1.5 decides between reload and restart
    # from the restart digest of each instance's last start; an instance re-probed after
    # `crm_resource --cleanup` is recorded without one, and a later parameter change restarts it.
    cluster, _stack, keystone = keystone_cluster
    everyone = sorted(cluster.nodes)
    digests = restart_digests(cluster)
    assert all(digests.get(node) for node in everyone), f"no restart digest to compare: {digests}"
    before = {node: keystone.identity(node) for node in everyone}
    assert all(before.values())
    counts = {op: {node: executed(cluster, node, op) for node in everyone} for op in ("reload-agent", "stop")}

    def new(operation):
        return {node: executed(cluster, node, operation) - counts[operation][node] for node in everyone}

    replacement = keystone.credentials_copy("keystone-admin-rotated.conf")
    cluster.run(cluster.any_running_node(), ["crm_resource", "--resource", RESOURCE, "--set-parameter",
                                             "credentials", "--parameter-value", str(replacement)])

    def reloaded_everywhere(_status):
        return all(new("reload-agent").values())

    cluster.wait_status(reloaded_everywhere, "reload-agent of keystone on every node", 90)
    time.sleep(3)  # a restart, if Pacemaker wanted one, would be under way by now
    status = cluster.status()
    after = {node: keystone.identity(node) for node in everyone}
    stops, reloads = new("stop"), new("reload-agent")
    print(f"credentials changed: reload-agent per node {reloads}, stops {stops}, "
          f"leader pid per node before {dict((n, i[0]) for n, i in before.items())} after "
          f"{dict((n, i and i[0]) for n, i in after.items())}")
    assert after == before, "keystone was restarted"
    assert not any(stops.values()), "keystone was stopped"
    assert status.where(RESOURCE) == tuple(everyone)
    assert not status.failures
    keystone.token(timeout_s=60)


def test_keystone_killed_with_sigkill_is_restarted_in_place(keystone_cluster):
    cluster, _stack, keystone = keystone_cluster
    victim = bystander(cluster)
    before = keystone.identity(victim)
    assert before is not None
    since = time.monotonic()
    keystone.signal(victim, [before[0]], "KILL")
    failures = wait_new_instance(cluster, keystone, victim, before, since)
    print(f"kill -9 on {victim}: {'; '.join(map(str, failures))}; "
          f"recovered after {time.monotonic() - since:.1f} s")
    assert any(f.task == "monitor" for f in failures)
    keystone.token(timeout_s=60)


def test_a_hung_keystone_is_caught_by_the_monitor_timeout_and_recovered(keystone_cluster):
    cluster, _stack, keystone = keystone_cluster
    victim = bystander(cluster)
    before = keystone.identity(victim)
    assert before is not None
    # The workers hang, the uwsgi master still holds the socket: depth 0 stays happy, only the
    # version document's bounded request (depth 10, 8 s budget) can see it.
    workers = keystone.workers_of(victim, before[0])
    assert workers, "uwsgi has no workers"
    since = time.monotonic()
    keystone.signal(victim, workers, "STOP")
    failures = wait_new_instance(cluster, keystone, victim, before, since)
    took = time.monotonic() - since
    print(f"SIGSTOP of {len(workers)} workers on {victim}: {'; '.join(map(str, failures))}; "
          f"recovered after {took:.1f} s")
    assert any(f.task == "monitor" for f in failures)
    keystone.token(timeout_s=60)


def test_rpc_round_trips_come_back_after_a_crash_of_the_rpc_queues_leaders_node(services):
    cluster, stack, compute = services["cluster"], services["stack"], services["nova"]
    (db_holder,) = cluster.status().where("mysql")
    leaders = compute.rpc_queue_leaders()
    # A node without the database, leading as many of the two queues as possible; the others moved.
    candidates = sorted(set(cluster.nodes) - {db_holder})
    victim = max(candidates, key=lambda node: sum(leader == node for leader in leaders.values()))
    compute.lead_rpc_queues_from(victim)
    topics = tuple(nova.RPC_TOPICS.values())
    client = compute.ping_client(topics, seconds=150, interval_s=0.5, call_timeout_s=10)
    try:
        started = time.monotonic()
        try:
            wait_until(lambda: all(pongs(client, topic, started) for topic in topics),
                       "a pong from conductor and scheduler before the crash", 60)
        except ClusterError as error:
            raise AssertionError(f"{error}; the client: {client.tail()}") from None
        before = {topic: pongs(client, topic, started) for topic in topics}
        health.settle(cluster)
        crashed_at = cluster.crash(victim)
        wait_until(lambda: all(pongs(client, topic, crashed_at) for topic in topics),
                   "a pong from conductor and scheduler sent after the crash", 120, poll_s=0.2)
    finally:
        client.stop()
    first = {topic: pongs(client, topic, crashed_at)[0] - crashed_at for topic in topics}
    failed = [e for e in client.events if e.get("event") == "failed" and float(e["t"]) >= crashed_at - 30]
    print(f"crash of {victim} (leading {', '.join(topics)}; was {leaders}; database on {db_holder}): "
          f"first RPC ping answered, sent after the crash: "
          f"{', '.join(f'{topic} +{seconds:.2f} s' for topic, seconds in first.items())}; "
          f"{len(failed)} pings failed ({sorted({str(e['error']) for e in failed})}); before the crash "
          f"{', '.join(f'{t} {len(v)} pongs' for t, v in before.items())}")
    assert all(seconds < RPC_AFTER_CRASH_BOUND_S for seconds in first.values()), first
    new_leaders = compute.rpc_queue_leaders()
    assert victim not in new_leaders.values(), new_leaders
    wait_rejoined(cluster, stack, victim, crashed_at)


def test_a_token_comes_back_after_a_crash_of_the_database_holder(keystone_cluster):
    cluster, stack, keystone = keystone_cluster
    (victim,) = cluster.status().where("mysql")
    began = time.monotonic()
    seconds = seconds_to_token_after_crash(cluster, keystone, victim)
    status = cluster.status()
    print(f"crash of the database holder {victim}: first token through the public VIP after {seconds:.2f} s; "
          f"database now on {status.where('mysql')}, public VIP on {status.where(config.PUBLIC_VIP)}")
    assert victim not in status.where("mysql")
    assert 0 < seconds < 60
    survivors = tuple(sorted(set(cluster.nodes) - {victim}))
    for port, path in ((GLANCE_PORT, "/v2/images"), (nova.PORT, "/v2.1/flavors")):
        answer = keystone.authorized_get(port, path, timeout_s=120)
        assert (answer["with"], answer["without"]) == (200, 401), answer
        print(f"GET {path} with a token answered 200 {answer['t'] - began:.1f} s after the crash")
    status = cluster.status()
    for resource in (GLANCE, nova.RESOURCE, messaging.RESOURCE, *nova.RPC_RESOURCES):
        assert set(survivors) <= set(status.where(resource)), (resource, status.where(resource))
    wait_rejoined(cluster, stack, victim, began)


def test_no_password_in_any_command_line_the_cib_or_a_log(services):
    cluster = services["cluster"]
    passwords = [*services["keystone"].passwords, *services["glance"].passwords, *services["nova"].passwords,
                 *services["rabbit"].passwords]
    assert_no_password_anywhere(cluster, passwords)
