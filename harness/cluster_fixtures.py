"""Fixtures and helpers of the real-cluster tests (tests/test_cluster*.py import from here).

One cluster per test module (``start_cluster`` in a module-scoped fixture); an
autouse fixture of each module brings it back to health before every test, so
a failed test does not cascade. Teardown runs as a finalizer even when a test
or the setup fails. Set NSCLUSTER_KEEP_LOGS=/some/dir to keep the nodes' logs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from nscluster import config, database, health
from nscluster.cluster import Cluster, ClusterSpec, ClusterStatus, cleanup_run, stale_runs

VIPS = health.VIPS
INSTALLED = ("/usr/lib/ocf/resource.d/openstack/vip", config.CRMTOOL)


def start_cluster(request: pytest.FixtureRequest, stack: config.Stack | Callable[[Cluster], config.Stack],
                  **spec: object) -> Cluster:
    """A running cluster with ``stack`` pushed; ``stack`` may be a function of the created cluster
    (to prepare storage or files first)."""
    if os.geteuid() != 0:
        pytest.skip("a namespace cluster needs root (network, mount and PID namespaces)")
    missing = [path for path in INSTALLED if not Path(path).exists()]
    if missing:
        pytest.fail(f"run `make install` first: {', '.join(missing)} missing")
    for run_id in stale_runs():  # leftovers of a run whose process was killed outright
        cleanup_run(run_id)
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {message}", flush=True)

    cluster = Cluster(ClusterSpec(**spec), progress=progress)  # type: ignore[arg-type]
    keep = os.environ.get("NSCLUSTER_KEEP_LOGS")
    request.addfinalizer(lambda: cluster.teardown(keep_logs_in=Path(keep) if keep else None))
    cluster.create()
    if callable(stack):
        stack = stack(cluster)
    config.push(cluster, stack)
    health.wait_healthy(cluster, stack)
    return cluster


def start_cluster_on_database(request: pytest.FixtureRequest,
                              build: Callable[[Cluster, database.Database], config.Stack],
                              private_dirs: tuple[str, ...], **spec: object) -> Cluster:
    """A running cluster with the database prepared on its DRBD double and the stack that
    ``build(cluster, db)`` returns pushed; ``private_dirs`` (the database's are added) and ``spec``
    are the cluster's fields."""

    def prepare(cluster: Cluster) -> config.Stack:
        db = database.Database(cluster)
        db.prepare(via=cluster.any_running_node())
        return build(cluster, db)

    return start_cluster(request, prepare, **spec, **database.spec_fields(private_dirs=private_dirs))


def start_database_cluster(request: pytest.FixtureRequest) -> tuple[Cluster, config.Stack, database.Database]:
    """A running cluster with the database prepared on its DRBD double and the profile's database
    part pushed: (cluster, stack, database)."""
    made: dict[str, object] = {}

    def prepare(cluster: Cluster) -> config.Stack:
        made["database"] = db = database.Database(cluster)
        db.prepare(via=cluster.any_running_node())
        made["stack"] = stack = config.Stack(site_overrides=db.overrides())
        return stack

    cluster = start_cluster(request, prepare, **database.spec_fields())
    return cluster, made["stack"], made["database"]  # type: ignore[return-value]


def cluster_fixtures(stack: config.Stack) -> tuple[object, object]:
    """A test module's two fixtures: ``cluster`` (one cluster running ``stack`` for the module) and
    the autouse ``healthy`` (back to health before every test). Bind both names in the module:
    ``cluster, healthy = cluster_fixtures(STACK)``."""

    @pytest.fixture(scope="module")
    def cluster(request: pytest.FixtureRequest) -> Cluster:
        return start_cluster(request, stack)

    @pytest.fixture(autouse=True)
    def healthy(cluster: Cluster) -> None:
        health.wait_healthy(cluster, stack)

    return cluster, healthy


def dc_and_holders(status: ClusterStatus) -> tuple[str, set[str]]:
    assert status.dc is not None
    return status.dc, {node for vip in VIPS for node in status.where(vip)}


def wait_rejoined(cluster: Cluster, stack: config.Stack, victim: str, crashed_at: float) -> None:
    """The victim was fenced after the crash, boots again and runs its share."""
    health.wait_fenced(cluster, victim, crashed_at)
    health.wait_healthy(cluster, stack)


def vip_address_of(cluster: Cluster, vip: str) -> str:
    return cluster.spec.vip_address(VIPS.index(vip))


def addresses_on(cluster: Cluster, node: str) -> set[str]:
    done = cluster.run(node, ["ip", "-j", "addr", "show", "dev", "eth0"])
    return {a["local"] for link in json.loads(done.stdout) for a in link.get("addr_info", [])}


def assert_no_password_anywhere(cluster: Cluster, passwords: Iterable[str]) -> None:
    """None of ``passwords`` is in a command line of any process of this machine (the nodes'
    included), in the CIB or in a node's log."""
    cib = cluster.run(cluster.any_running_node(), ["cibadmin", "--query"]).stdout
    command_lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command_lines.append(Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                continue
    logs = [path.read_text(errors="replace") for node in cluster.nodes for path in cluster.logs(node)]
    for password in passwords:
        assert password not in cib
        assert not any(password in line for line in command_lines)
        assert not any(password in text for text in logs)


def succeeded(cluster: Cluster, node: str, resource: str, operation: str) -> int:
    """How many ``operation``s of ``resource`` the node's controller logged as succeeded."""
    line = f"Result of {operation} operation for {resource} on {node}: ok"
    return sum(path.read_text(errors="replace").count(line) for path in cluster.logs(node)
               if path.name == "pacemaker.log")
