"""openstack-ha-backup on a real 3-node cluster: MariaDB on DRBD (the double), the target a directory
every node sees (as an NFS mount would be), the command started on every node at once, and a crash of
the database holder in the middle of a backup."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from harness.cluster_fixtures import start_database_cluster
from nscluster import database, health
from nscluster.cluster import wait_until

pytestmark = pytest.mark.cluster
COMMAND = "/usr/local/bin/openstack-ha-backup"
BEFORE, AFTER = 7001, 7002  # row ids written before and after the differential


@pytest.fixture(scope="module")
def backup_cluster(request):
    return start_database_cluster(request)


def setup_backups(cluster) -> tuple[str, str]:
    """The backup account (root has no password in the harness's image), its 0600 option file,
    the shared target and the configuration; returns (configuration, target)."""
    (holder,) = cluster.status().where("mysql")
    password = os.urandom(12).hex()
    cluster.run(holder, ["mariadb", f"--socket={database.SOCKET}", "-uroot"], input_text=(
        f"CREATE USER 'backup'@'localhost' IDENTIFIED BY '{password}';\n"
        "GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO 'backup'@'localhost';\n"))
    home = cluster.spec.state_dir / "backup"
    home.mkdir(mode=0o700)
    target = home / "target"
    target.mkdir(mode=0o700)
    options = home / "backup.cnf"
    options.touch(mode=0o600)
    options.write_text(f"[client]\nuser = backup\npassword = {password}\n")
    conf = home / "backup.toml"
    conf.write_text(f'[target]\ndirectory = "{target}"\n'
                    f'[database]\noption_file = "{options}"\ndatadir = "{database.DATADIR}"\n'
                    f'socket = "{database.SOCKET}"\n[cluster]\ngroup = "db"\nresource = "mysql"\n')
    return str(conf), str(target)


def listed(target: str) -> list[dict]:
    found = []
    for name in sorted(os.listdir(target)):
        if name[0].isdigit():
            with open(os.path.join(target, name, "manifest.json"), encoding="utf-8") as handle:
                found.append(json.load(handle))
    return found


def on_node(cluster, node: str, conf: str, *args: str) -> list[str]:
    return ["nsenter", "-t", str(cluster.nodes[node].pid1), "-m", "-u", "-i", "-n", "-p", "--",
            COMMAND, "-c", conf, *args]


def test_one_node_backs_up_and_a_crash_mid_backup_leaves_nothing_listed(backup_cluster):
    cluster, stack, db = backup_cluster
    conf, target = setup_backups(cluster)
    (holder,) = cluster.status().where("mysql")

    # Started on every controller at once: exactly one backs up, the others say why not.
    runs = {node: subprocess.Popen(on_node(cluster, node, conf, "run", "--auto"), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for node in cluster.nodes}
    results = {node: (p.wait(300), *p.communicate()) for node, p in runs.items()}
    assert all(rc == 0 for rc, _out, _err in results.values()), results
    assert "full backup complete" in results[holder][1], results
    for node, (_rc, out, _err) in results.items():
        if node != holder:
            assert f"not active here: db runs on {holder}" in out
    (full,) = listed(target)

    # A differential cut by a crash of the holder.
    cut = subprocess.Popen(on_node(cluster, holder, conf, "run", "--differential"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: any(n.startswith(".staging-") for n in os.listdir(target)),
               "a staging directory on the target", 60, poll_s=0.005)
    crashed_at = cluster.crash(holder)
    cut.wait(60)
    assert [b["id"] for b in listed(target)] == [full["id"]], "a cut backup is listed"
    health.wait_fenced(cluster, holder, crashed_at)
    health.wait_healthy(cluster, stack)
    (new_holder,) = cluster.status().where("mysql")
    assert new_holder != holder

    address = cluster.spec.vip_address(1)
    db.write(address, row_id=BEFORE)  # acknowledged before the differential
    done = subprocess.run(on_node(cluster, new_holder, conf, "run", "--auto"), capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "removed leftover .staging-" in done.stdout
    diff = listed(target)[-1]
    assert diff["base"] == full["id"] and diff["type"] == "diff"
    db.write(address, row_id=AFTER)  # after it: a restore of the differential does not have it

    # Restore full + differential through Pacemaker: mysql stopped and started by the cluster.
    restore = subprocess.run(on_node(cluster, new_holder, conf, "restore", diff["id"]), capture_output=True,
                             text=True, timeout=600, check=False)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert f"mysql runs again on {new_holder}" in restore.stdout
    health.wait_healthy(cluster, stack)
    ids = set(db.ids(address))
    assert BEFORE in ids and AFTER not in ids
    status = subprocess.run(on_node(cluster, new_holder, conf, "status", "--max-age", "3600"),
                            capture_output=True, text=True, timeout=120, check=False)
    assert status.returncode == 0, status.stdout + status.stderr
    age = cluster.run(new_holder, ["crm_attribute", "--node", new_holder, "--lifetime", "reboot",
                                   "--name", "openstack-ha-backup-age", "--query", "--quiet"]).stdout
    assert 0 <= int(age.strip()) < 3600
