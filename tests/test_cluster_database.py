"""The database on a real 3-node cluster as the default profile runs it, under a crash of its holder.

Three DRBD replicas (the DRBD 9 test double) under the profile's promotable ``ocf:openstack:drbd``
clone, ``ocf:heartbeat:Filesystem`` on the Primary's device, our ``mysql`` agent and db-vip, all
re-enabled by the site file.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from nscluster import config, database, health
from tests.cluster_conftest import start_cluster

pytestmark = pytest.mark.cluster
WRITER_SECONDS = 25


@pytest.fixture(scope="module")
def database_cluster(request):
    made = {}

    def prepare(cluster):
        made["database"] = db = database.Database(cluster)
        db.prepare(via=cluster.any_running_node())
        made["stack"] = config.Stack(site_overrides=db.overrides())
        return made["stack"]

    cluster = start_cluster(request, prepare, **database.spec_fields())
    return cluster, made["stack"], made["database"]


def test_the_database_runs_on_the_drbd_primary(database_cluster):
    cluster, _stack, db = database_cluster
    status = cluster.status()
    (holder,) = status.where("mysql")
    assert status.where("db-fs") == status.where("db-vip") == (holder,)
    assert status.where("drbd") == tuple(sorted(cluster.nodes))
    promoted = [r for r in status.resources if r.id == "drbd" and r.role == "Promoted"]
    assert [r.nodes for r in promoted] == [(holder,)]
    roles = db.drbd_roles()
    assert roles == {name: "Primary" if name == holder else "Secondary" for name in cluster.nodes}, roles
    mounted = cluster.run(holder, ["findmnt", "-n", "-o", "SOURCE", database.MOUNTPOINT]).stdout.strip()
    assert mounted == db.device(holder), mounted


def test_every_acknowledged_commit_survives_a_crash_of_the_database_holder(database_cluster):
    cluster, stack, db = database_cluster
    address = cluster.spec.vip_address(1)
    (holder,) = cluster.status().where("mysql")
    writer = subprocess.Popen(db.writer_argv("stream", address, WRITER_SECONDS, 1000),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        crashed_at = cluster.crash(holder)
        out, err = writer.communicate(timeout=WRITER_SECONDS + 60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    acknowledged = [int(line) for line in out.split()]
    present = set(db.ids(address))
    print(f"{len(acknowledged)} commits acknowledged; holder {holder} crashed at +3 s")
    assert acknowledged, err
    assert set(acknowledged) <= present, f"lost: {sorted(set(acknowledged) - present)}"
    (new_holder,) = cluster.status().where("mysql")
    assert new_holder != holder
    assert db.drbd_roles()[new_holder] == "Primary"
    assert cluster.fenced(holder, since=crashed_at)
    after = db.write(address, row_id=1)
    assert after > crashed_at
    health.wait_fenced(cluster, holder, crashed_at)
    health.wait_healthy(cluster, stack)
    # The crashed node came back as a Secondary that resynced from the new Primary.
    roles = db.drbd_roles()
    assert roles == {name: "Primary" if name == new_holder else "Secondary" for name in cluster.nodes}, roles
