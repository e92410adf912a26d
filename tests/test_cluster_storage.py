"""Storage nodes on a real 5-node cluster: DRBD (the test double) on 3 of them, declared by the site.

The site of a 5-controller cluster names its storage nodes; the DRBD clone and the database group
are banned from the two diskless nodes and never probed there. A crash of the database holder moves
the database to another storage node with no acknowledged write lost, and nothing of DRBD, the file
system or MariaDB ever ran, or was even probed, on a diskless node.
"""

from __future__ import annotations

import itertools
import re

import pytest
from lxml import etree

from harness.cluster_fixtures import start_cluster
from nscluster import config, database, health
from nscluster.cluster import wait_until
from tests.test_cluster_database import StreamWriter

pytestmark = pytest.mark.cluster
NODES = ("node1", "node2", "node3", "node4", "node5")
STORAGE = ("node2", "node4", "node5")  # not the first three: the default would be wrong
DISKLESS = ("node1", "node3")
ON_DISK = ("drbd", "db-fs", "mysql")
WRITER_SECONDS = 30
FIRST_ID = 1


@pytest.fixture(scope="module")
def storage_cluster(request):
    made = {}

    def prepare(cluster):
        made["database"] = db = database.Database(cluster, storage_nodes=STORAGE)
        db.prepare(via=STORAGE[0])
        made["stack"] = config.Stack(site_overrides=db.overrides(), storage_nodes=STORAGE)
        return made["stack"]

    cluster = start_cluster(request, prepare, node_names=NODES, **database.spec_fields())
    return cluster, made["stack"], made["database"]


def operated(cluster, node):
    """The resources with an operation history on ``node`` (probes included) in the CIB status."""
    status = etree.fromstring(cluster.run(cluster.any_running_node(),
                                          ["cibadmin", "--query", "--scope", "status"]).stdout.encode())
    history = status.iterfind(f"node_state[@uname='{node}']/lrm/lrm_resources/lrm_resource")
    return {str(r.get("id")).split(":")[0] for r in history}


def executed_in_logs(cluster, node):
    """The disk-bound resources the node's controller ran any operation of, from its logs."""
    pattern = re.compile(rf"operation for ({'|'.join(ON_DISK)})\b")
    found = set()
    for log in cluster.logs(node):
        found |= {m.group(1) for m in pattern.finditer(log.read_text(errors="replace"))}
    return found


def test_database_holder_crash_on_five_nodes_with_three_storage_nodes(storage_cluster):
    cluster, _stack, db = storage_cluster
    status = cluster.status()
    assert status.where("drbd") == STORAGE
    (holder,) = status.where("mysql")
    assert holder in STORAGE and status.where("db-fs") == (holder,)
    assert set(db.drbd_roles()) == set(STORAGE)

    address = cluster.spec.vip_address(1)
    writer = StreamWriter(db, address, WRITER_SECONDS, FIRST_ID)
    try:
        wait_until(lambda: len(writer.acks) >= 20, "the writer's first commits", 60)
        crashed_at = cluster.crash(holder)
        health.wait_fenced(cluster, holder, crashed_at)
    finally:
        err = writer.finish(WRITER_SECONDS + 60)
    acknowledged = set(writer.ids())
    after_crash = writer.ids(after=crashed_at)
    present = set(db.ids(address))
    times = [at for at, _id in writer.acks]
    outage = max((b - a for a, b in itertools.pairwise(times)), default=0.0)
    print(f"{len(acknowledged)} commits acknowledged, {len(after_crash)} after the crash of {holder}; "
          f"writes stalled {outage:.1f} s")
    assert acknowledged and after_crash, err
    assert acknowledged <= present, f"lost: {sorted(acknowledged - present)}"

    status = cluster.status()
    (new_holder,) = status.where("mysql")
    assert new_holder in STORAGE and new_holder != holder
    assert db.drbd_roles()[new_holder] == "Primary"
    assert set(status.where("drbd")) <= set(STORAGE)

    # Control: the storage nodes' history and logs do show the disk-bound resources.
    survivors = [n for n in STORAGE if n != holder]
    for node in survivors:
        assert "drbd" in operated(cluster, node), node
        assert "drbd" in executed_in_logs(cluster, node), node
    assert set(ON_DISK) <= executed_in_logs(cluster, new_holder)
    for node in DISKLESS:
        # control: the resources allowed there were probed and run there
        assert {"dummy", "public-vip"} <= operated(cluster, node), node
        assert not operated(cluster, node) & set(ON_DISK), node
        assert executed_in_logs(cluster, node) == set(), node
