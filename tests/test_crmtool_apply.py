"""crmtool diff/apply on CIB_file copies: idempotent, keeps what pcs added, compare-and-swap."""

from __future__ import annotations

import subprocess
import sys

import pytest
from lxml import etree

from crmtool import apply, pipeline, verify
from crmtool.exits import Exit
from crmtool.findings import ConcurrentChange
from tests.crmtool_cases.support import EXAMPLE, ROOT, TEMPLATES, example_text, run_cli


def cib_file(path) -> str:
    path.write_bytes(subprocess.run(["cibadmin", "--empty"], capture_output=True, check=True).stdout)
    return str(path)


def read(path: str) -> etree._Element:
    return etree.parse(path, etree.XMLParser(remove_blank_text=True)).getroot()


def version(path: str) -> tuple[str, str, str]:
    root = read(path)
    return root.get("admin_epoch"), root.get("epoch"), root.get("num_updates")


def tool(*argv: str, cib: str) -> None:
    done = subprocess.run(list(argv), env={"CIB_file": cib, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def test_apply_twice_changes_nothing_the_second_time(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    cib = cib_file(tmp_path / "cib.xml")
    code, out, err = run_cli(["apply", EXAMPLE, "--cib", cib], capsys)
    assert code == 0 and out.startswith("applied"), err
    after_first = (tmp_path / "cib.xml").read_bytes()
    first_version = version(cib)
    code, out, err = run_cli(["apply", EXAMPLE, "--cib", cib], capsys)
    assert code == 0 and out.startswith("no changes"), out + err
    assert version(cib) == first_version
    assert (tmp_path / "cib.xml").read_bytes() == after_first
    code, out, _ = run_cli(["diff", EXAMPLE, "--cib", cib], capsys)
    assert (code, out) == (0, "no changes\n")
    # the configuration is the rendered one
    rendered = pipeline.from_file(EXAMPLE, TEMPLATES, "openstack").configuration
    live = read(cib).find("configuration")
    assert etree.tostring(live, method="c14n") == etree.tostring(rendered, method="c14n")


def test_apply_keeps_nodes_status_and_what_pcs_added(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    cib = cib_file(tmp_path / "cib.xml")
    assert run_cli(["apply", EXAMPLE, "--cib", cib], capsys)[0] == 0
    tool("pcs", "-f", cib, "resource", "disable", "public-vip", cib=cib)
    tool("pcs", "-f", cib, "resource", "ban", "keystone-clone", "ctl2", cib=cib)
    tool("pcs", "-f", cib, "resource", "create", "extra", "ocf:heartbeat:Dummy", "--no-default-ops", cib=cib)
    tool("crm_attribute", "--node", "ctl1", "--name", "standby", "--update", "on", cib=cib)
    # the nodes come up and run resources: a status section the apply must keep
    tool("crm_simulate", "-x", cib, "-X", "-q", "1", "-u", "ctl1", "-u", "ctl2", "-u", "ctl3", cib=cib)
    running = read(cib).xpath("count(status//lrm_resource)")
    assert running > 0
    tool("crm_attribute", "--node", "ctl2", "--name", "master-drbd", "--update", "5", "--lifetime", "reboot",
         cib=cib)
    changed = tmp_path / "site.toml"
    changed.write_text(example_text()
                       + "\n[cluster.rsc_defaults]\nresource-stickiness = 200\n")
    code, out, err = run_cli(["apply", str(changed), "--cib", cib], capsys)
    assert code == 0 and out.startswith("applied"), err
    root = read(cib)
    assert root.xpath("//primitive[@id='public-vip']/meta_attributes/nvpair[@name='target-role']/@value") \
        == ["Stopped"]
    assert root.xpath("//rsc_location[@id='cli-ban-keystone-clone-on-ctl2']/@node") == ["ctl2"]
    assert root.xpath("//primitive[@id='extra']/@type") == ["Dummy"]
    assert root.xpath("//node[@uname='ctl1']//nvpair[@name='standby']/@value") == ["on"]
    assert root.xpath("status//nvpair[@name='master-drbd']/@value") == ["5"]
    assert root.xpath("count(status//lrm_resource)") == running
    assert root.xpath("//rsc_defaults//nvpair[@name='resource-stickiness']/@value") == ["200"]
    before = version(cib)
    code, out, _ = run_cli(["apply", str(changed), "--cib", cib], capsys)
    assert code == 0 and out.startswith("no changes") and version(cib) == before


def test_live_node_ids_are_kept(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    cib = cib_file(tmp_path / "cib.xml")
    root = read(cib)
    nodes = root.find("configuration/nodes")
    for number, name in ((101, "ctl1"), (102, "ctl2"), (103, "ctl3")):
        etree.SubElement(nodes, "node", id=str(number), uname=name)
    (tmp_path / "cib.xml").write_bytes(etree.tostring(root))
    assert run_cli(["apply", EXAMPLE, "--cib", cib], capsys)[0] == 0
    assert [(n.get("id"), n.get("uname")) for n in read(cib).iterfind("configuration/nodes/node")] == [
        ("101", "ctl1"), ("102", "ctl2"), ("103", "ctl3")]


def test_a_change_between_diff_and_patch_is_detected_not_overwritten(tmp_path) -> None:
    cib = cib_file(tmp_path / "cib.xml")
    configuration = pipeline.from_file(EXAMPLE, TEMPLATES, "openstack").configuration
    plan = apply.plan(configuration, cib)
    assert plan.patch is not None
    tool("crm_attribute", "--name", "maintenance-mode", "--update", "true", cib=cib)
    between = (tmp_path / "cib.xml").read_bytes()
    with pytest.raises(ConcurrentChange) as caught:
        apply.commit(plan)
    assert "configuration changed after the patch was prepared" in caught.value.message
    assert caught.value.exit_code == Exit.TEMPFAIL
    assert (tmp_path / "cib.xml").read_bytes() == between  # the other change stays, ours is not applied
    # a fresh plan includes the other change and applies
    assert apply.commit(apply.plan(configuration, cib))
    assert read(cib).xpath("//nvpair[@name='maintenance-mode']/@value") == ["true"]
    assert read(cib).xpath("//primitive[@id='public-vip']")


def test_saved_patch_is_refused_after_a_concurrent_change(tmp_path, capsys) -> None:
    cib = cib_file(tmp_path / "cib.xml")
    patch = str(tmp_path / "patch.xml")
    assert run_cli(["diff", EXAMPLE, "--cib", cib, "-o", patch], capsys)[0] == 0
    tool("pcs", "-f", cib, "resource", "create", "other", "ocf:heartbeat:Dummy", "--no-default-ops", cib=cib)
    code, out, err = run_cli(["apply", EXAMPLE, "--cib", cib, "--patch", patch], capsys)
    assert code == Exit.TEMPFAIL, out + err
    assert "configuration changed after the patch was prepared" in err and "Traceback" not in err
    assert not read(cib).xpath("//primitive[@id='public-vip']")
    assert run_cli(["diff", EXAMPLE, "--cib", cib, "-o", patch], capsys)[0] == 0
    code, out, err = run_cli(["apply", EXAMPLE, "--cib", cib, "--patch", patch], capsys)
    assert code == 0, err
    assert read(cib).xpath("//primitive[@id='public-vip']") and read(cib).xpath("//primitive[@id='other']")


def test_dry_run_shows_patch_and_transition_without_changing(tmp_path, capsys) -> None:
    cib = cib_file(tmp_path / "cib.xml")
    before = (tmp_path / "cib.xml").read_bytes()
    code, out, err = run_cli(["apply", EXAMPLE, "--cib", cib, "--dry-run"], capsys)
    assert code == 0, err
    assert out.startswith("<diff") and "transition:" in out
    assert (tmp_path / "cib.xml").read_bytes() == before


def test_status_updates_between_diff_and_patch_do_not_block(tmp_path, capsys) -> None:
    """Only the configuration version is compared: the status section moves on its own."""
    cib = cib_file(tmp_path / "cib.xml")
    tool("crm_simulate", "-x", cib, "-X", "-q", "1", "-u", "ctl1", "-u", "ctl2", "-u", "ctl3", cib=cib)
    configuration = pipeline.from_file(EXAMPLE, TEMPLATES, "openstack").configuration
    plan = apply.plan(configuration, cib)
    patch = str(tmp_path / "patch.xml")
    assert run_cli(["diff", EXAMPLE, "--cib", cib, "-o", patch], capsys)[0] == 0
    tool("crm_attribute", "--node", "ctl1", "--name", "master-drbd", "--update", "3", "--lifetime", "reboot",
         cib=cib)
    before = version(cib)
    assert before[2] != plan.live.get("num_updates")
    apply.commit(plan)
    assert version(cib)[1] > before[1]
    assert read(cib).xpath("//primitive[@id='public-vip']")
    assert read(cib).xpath("status//nvpair[@name='master-drbd']/@value") == ["3"]
    # the saved patch was made for the same configuration version: it is now refused (already applied)
    code, _out, err = run_cli(["apply", EXAMPLE, "--cib", cib, "--patch", patch], capsys)
    assert code == Exit.TEMPFAIL and "configuration changed" in err


def test_saved_patch_applies_after_a_status_update(tmp_path, capsys) -> None:
    cib = cib_file(tmp_path / "cib.xml")
    tool("crm_simulate", "-x", cib, "-X", "-q", "1", "-u", "ctl1", "-u", "ctl2", "-u", "ctl3", cib=cib)
    patch = str(tmp_path / "patch.xml")
    assert run_cli(["diff", EXAMPLE, "--cib", cib, "-o", patch], capsys)[0] == 0
    tool("crm_attribute", "--node", "ctl2", "--name", "master-drbd", "--update", "7", "--lifetime", "reboot",
         cib=cib)
    code, _out, err = run_cli(["apply", EXAMPLE, "--cib", cib, "--patch", patch], capsys)
    assert code == 0, err
    assert read(cib).xpath("//primitive[@id='public-vip']")
    assert run_cli(["diff", EXAMPLE, "--cib", cib], capsys)[1] == "no changes\n"


# Properties the DC writes when it takes over; a replace that drops them leaves crm_mon at
# "Stack: unknown" until the next election.
DC_OWNED = {"dc-version": "2.1.5-2.1.5", "cluster-infrastructure": "corosync",
            "cluster-name": "openstack", "last-lrm-refresh": "1763700000"}


def property_value(name: str, cib: str) -> str:
    done = subprocess.run(["crm_attribute", "--type", "crm_config", "--name", name, "--query", "--quiet"],
                          env={"CIB_file": cib, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                          capture_output=True, check=False, timeout=60)
    assert done.returncode == 0, (name, done.stderr)
    return done.stdout.decode().strip()


def test_render_live_piped_into_cibadmin_replace_keeps_what_the_cluster_maintains(tmp_path) -> None:
    cib = cib_file(tmp_path / "cib.xml")
    for name, value in DC_OWNED.items():
        tool("crm_attribute", "--type", "crm_config", "--name", name, "--update", value, cib=cib)
    # an operator's pcs properties: one crmtool owns (its value wins), one it does not (it stays)
    tool("pcs", "-f", cib, "property", "set", "stonith-enabled=false", "cluster-recheck-interval=5min",
         cib=cib)
    env = {"CIB_file": cib, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    render = subprocess.Popen([sys.executable, "-m", "crmtool", "--templates", TEMPLATES, "render", EXAMPLE,
                               "--live"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    replace = subprocess.run(["cibadmin", "--replace", "--scope", "configuration", "--xml-pipe"],
                             stdin=render.stdout, env=env, capture_output=True, check=False, timeout=120)
    assert render.stdout is not None and render.stderr is not None
    render.stdout.close()
    rendered_err = render.stderr.read().decode()
    render.stderr.close()
    assert render.wait(timeout=120) == 0, rendered_err
    assert replace.returncode == 0, replace.stderr
    for name, value in DC_OWNED.items():
        assert property_value(name, cib) == value, name
    assert property_value("stonith-enabled", cib) == "true"
    assert property_value("no-quorum-policy", cib) == "stop"
    assert property_value("cluster-recheck-interval", cib) == "5min"
    assert len(read(cib).findall("configuration/resources/*")) >= 5
    assert verify.verify(read(cib).find("configuration")) == []


def test_render_live_refuses_full(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_cli(["render", EXAMPLE, "--live", "--full"], capsys)
    assert code == Exit.USAGE, err
    assert err == "crmtool: --full renders a new CIB; --live/--cib render onto the current one\n"


def test_apply_raises_the_epoch_by_exactly_one(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """cibadmin --patch raises the epoch itself: a patch that also set it made every apply count twice."""
    cib = cib_file(tmp_path / "cib.xml")
    _admin, epoch, _updates = version(cib)
    code, out, err = run_cli(["apply", EXAMPLE, "--cib", cib], capsys)
    assert code == 0, err
    assert version(cib)[1] == str(int(epoch) + 1), out
    assert out == f"applied: version 0.{epoch}.0 -> 0.{int(epoch) + 1}.0\n"
    changed = tmp_path / "site.toml"
    changed.write_text(example_text() + "\n[cluster.rsc_defaults]\nresource-stickiness = 200\n")
    patch = tmp_path / "patch.xml"
    assert run_cli(["diff", str(changed), "--cib", cib, "-o", str(patch)], capsys)[0] == 0
    code, out, err = run_cli(["apply", str(changed), "--cib", cib, "--patch", str(patch)], capsys)
    assert code == 0, err
    assert version(cib)[1] == str(int(epoch) + 2)
    assert read(cib).xpath("//rsc_defaults//nvpair[@name='resource-stickiness']/@value") == ["200"]
