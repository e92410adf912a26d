"""The database group on a real 3-node cluster: crash of the database holder under a writer.

Shared storage (an ext4 loop device) stands in for DRBD; Filesystem, our mysql agent and
db-vip come from the default profile, re-enabled by the site file.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from nscluster import config, health
from nscluster.database import SharedDatabase
from tests.cluster_conftest import start_cluster

pytestmark = pytest.mark.cluster
WRITER_SECONDS = 25


@pytest.fixture(scope="module")
def database_cluster(request):
    made = {}

    def prepare(cluster):
        made["database"] = database = SharedDatabase(cluster)
        database.prepare(via=cluster.any_running_node())
        made["stack"] = config.Stack(site_overrides=database.overrides())
        return made["stack"]

    cluster = start_cluster(request, prepare)
    return cluster, made["stack"], made["database"]


def test_every_acknowledged_commit_survives_a_crash_of_the_database_holder(database_cluster):
    cluster, stack, database = database_cluster
    address = cluster.spec.vip_address(1)
    (holder,) = cluster.status().where("mysql")
    writer = subprocess.Popen(database.writer_argv("stream", address, WRITER_SECONDS, 1000),
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
    present = set(database.ids(address))
    print(f"{len(acknowledged)} commits acknowledged; holder {holder} crashed at +3 s")
    assert acknowledged, err
    assert set(acknowledged) <= present, f"lost: {sorted(set(acknowledged) - present)}"
    (new_holder,) = cluster.status().where("mysql")
    assert new_holder != holder
    assert cluster.fenced(holder, since=crashed_at)
    after = database.write(address, row_id=1)
    assert after > crashed_at
    health.wait_fenced(cluster, holder, crashed_at)
    health.wait_healthy(cluster, stack)
