"""The namespace-cluster harness itself: fence agent protocol, client confinement, site file, teardown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from nscluster import config, fence_agent
from nscluster.cluster import (
    FENCE_AGENT_DIR,
    NETNS_DIR,
    SYSTEM_PYTHON,
    Cluster,
    ClusterError,
    ClusterSpec,
    cleanup_run,
    corosync_conf,
    mount_point,
    root_netns_inode,
    stale_runs,
)

PROBE = Path(__file__).resolve().parent.parent / "nscluster" / "probe.py"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")


def test_fence_agent_metadata_declares_the_actions_pacemaker_calls():
    root = ET.fromstring(fence_agent.metadata("fence_nsc_x"))  # noqa: S314 (our own output)
    assert root.get("name") == "fence_nsc_x"
    actions = {a.get("name") for a in root.iter("action")}
    assert {"on", "off", "reboot", "status", "monitor", "list", "metadata"} <= actions
    assert {"port", "plug", "delay"} <= {p.get("name") for p in root.iter("parameter")}


def test_fence_agent_reads_stdin_and_command_line_conventions():
    assert fence_agent.parse_request([], "action=off\nport=node2\n# comment\n") == {"action": "off",
                                                                                    "port": "node2"}
    assert fence_agent.parse_request(["-o", "status", "-n", "node3"], "")["port"] == "node3"
    assert fence_agent.parse_request([], "option=reboot\nplug=node1\n")["action"] == "reboot"


def test_fence_agent_without_a_target_fails_without_asking_anyone(tmp_path, capsys):
    assert fence_agent.run(str(tmp_path), "fence_nsc_x", [], "action=reboot\n") == 1
    assert "port=NODE" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_corosync_conf_lists_every_node_and_the_timing():
    spec = ClusterSpec(run_id="nsctest", token_ms=500, token_coefficient_ms=0)
    text = corosync_conf(spec)
    for index, name in enumerate(spec.node_names, start=1):
        assert f"name: {name}" in text and f"ring0_addr: {spec.node_address(index)}" in text
    assert "token: 500" in text and "token_coefficient: 0" in text and "transport: knet" in text


def test_site_file_is_toml_that_crmtool_renders(tmp_path):
    spec = ClusterSpec(run_id="nsctest")
    site = tmp_path / "site.toml"
    site.write_text(config.site_file(spec, config.Stack(fence_delay_s=3)))
    parsed = tomllib.loads(site.read_text())
    assert parsed["fencing"]["agent"] == "fence_nsc_nsctest"
    done = subprocess.run([config.CRMTOOL, "render", str(site)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    rendered = ET.fromstring(done.stdout)  # noqa: S314 (our own output)
    ids = {p.get("id") for p in rendered.iter("primitive")}
    assert {"public-vip", "db-vip", "dummy", "fence-node1", "fence-node2", "fence-node3"} <= ids
    assert "mysql" not in ids


@needs_root
def test_a_missing_private_directory_is_made_only_where_root_alone_writes(tmp_path):
    tmp_path.chmod(0o755)
    made = tmp_path / "memcached"
    mount_point(str(made))
    assert made.is_dir() and made.stat().st_uid == 0 and made.stat().st_mode & 0o777 == 0o755
    mount_point(str(made))  # there already: left as it is
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o1777)
    for refused in (tmp_path / "link", shared / "memcached"):
        with pytest.raises(ClusterError, match="does not exist on this machine"):
            mount_point(str(refused))
    assert not (tmp_path / "elsewhere").exists() and not (shared / "memcached").exists()


def test_probe_refuses_to_run_outside_the_expected_namespace():
    wrong = root_netns_inode() + 1
    done = subprocess.run([SYSTEM_PYTHON, "-I", "-S", str(PROBE), str(wrong), "tcp", "127.0.0.1", "9", "1"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 3
    assert "refused" in done.stderr


def test_clients_are_refused_outside_the_clusters_namespaces():
    cluster = Cluster(ClusterSpec(run_id="nscnotcreated"))
    with pytest.raises(ClusterError, match="refusing"):
        cluster.client_argv(["true"], netns="some-other-namespace")


@needs_root
@pytest.mark.cluster
def test_teardown_leaves_nothing_behind_even_after_a_crash_and_a_killed_owner(tmp_path):
    spec = ClusterSpec(state_root=tmp_path / "state")
    with Cluster(spec) as cluster:
        cluster.crash("node2")
        assert cluster.status().online >= {"node1", "node3"}
    assert not list(NETNS_DIR.glob(f"{spec.run_id}-*"))
    assert not (FENCE_AGENT_DIR / spec.fence_agent_name).exists()
    assert not spec.state_dir.exists()
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _mentions(p, spec.run_id)]

    # A run whose owner process died (killed test runner): found as stale and removed.
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    orphan = Cluster(ClusterSpec(state_root=tmp_path / "state"))
    orphan._write_state()
    orphan._install_fence_agent()
    orphan._build_network()
    (orphan.spec.state_dir / "owner").write_text(json.dumps({"pid": owner.pid, "start": "0"}))
    owner.kill()
    owner.wait()
    assert orphan.spec.run_id in stale_runs(tmp_path / "state")
    removed = cleanup_run(orphan.spec.run_id, tmp_path / "state")
    assert any(item.startswith("netns") for item in removed)
    assert not list(NETNS_DIR.glob(f"{orphan.spec.run_id}-*"))
    assert not (FENCE_AGENT_DIR / orphan.spec.fence_agent_name).exists()


def _mentions(proc: Path, text: str) -> bool:
    try:
        return text.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False
