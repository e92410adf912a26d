"""crmtool render/verify/CLI: goldens per profile and size, schema, crm_verify, exit codes."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

import pytest
from lxml import etree

from crmtool import findings, pipeline, render, validate
from crmtool.exits import Exit
from tests.crmtool_cases.support import EXAMPLE, GOLDEN, ROOT, SITES, TEMPLATES, example_text, run_cli

SITE_FILES = sorted(glob.glob(os.path.join(SITES, "*.toml")))
SITE_IDS = [os.path.basename(s)[:-5] for s in SITE_FILES]
PY = os.path.join(ROOT, ".venv", "bin", "python")


def rendered(site: str) -> bytes:
    result = pipeline.from_file(site, TEMPLATES, "openstack")
    return render.to_bytes(result.configuration)


@pytest.mark.parametrize("site", SITE_FILES, ids=SITE_IDS)
def test_render_matches_golden(site: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["render", site], capsys)
    assert code == 0, err
    golden = os.path.join(GOLDEN, os.path.basename(site)[:-5] + ".xml")
    if os.environ.get("CRMTOOL_UPDATE_GOLDENS") == "1":
        with open(golden, "w", encoding="utf-8") as handle:
            handle.write(out)
    with open(golden, encoding="utf-8") as handle:
        assert out == handle.read()


@pytest.mark.parametrize("site", SITE_FILES, ids=SITE_IDS)
def test_render_is_byte_identical_and_schema_valid(site: str) -> None:
    first, second = rendered(site), rendered(site)
    assert first == second
    configuration = etree.fromstring(first)
    assert validate.errors(configuration) == []


@pytest.mark.parametrize("site", SITE_FILES, ids=SITE_IDS)
def test_crm_verify_is_clean(site: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["verify", site], capsys)
    assert code == 0, err
    assert "crm_verify clean" in out


def test_full_cib_starts_from_cibadmin_empty(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["render", "--full", EXAMPLE], capsys)
    assert code == 0, err
    cib = etree.fromstring(out.encode())
    empty = etree.fromstring(subprocess.run(["cibadmin", "--empty"], capture_output=True, check=True).stdout)
    assert cib.get("crm_feature_set") == empty.get("crm_feature_set")
    assert [n.get("uname") for n in cib.iterfind("configuration/nodes/node")] == ["ctl1", "ctl2", "ctl3"]
    assert validate.errors(cib) == []


def test_seven_controllers_profile_shape() -> None:
    conf = etree.fromstring(rendered(os.path.join(SITES, "7ctl.toml")))

    def value(xpath: str) -> list[str]:
        return [str(v) for v in conf.xpath(xpath)]

    assert value("crm_config//nvpair[@name='stonith-enabled']/@value") == ["true"]
    assert value("crm_config//nvpair[@name='no-quorum-policy']/@value") == ["stop"]
    assert set(value("rsc_defaults//nvpair/@name")) == {"resource-stickiness", "migration-threshold",
                                                        "failure-timeout"}
    # one fence device per node, never allowed on the node it fences
    for node in (f"ctl{i}" for i in range(1, 8)):
        assert value(f"resources/primitive[@id='fence-{node}']/instance_attributes/"
                     "nvpair[@name='pcmk_host_list']/@value") == [node]
        assert value(f"constraints/rsc_location[@rsc='fence-{node}']/@node") == [node]
        assert value(f"constraints/rsc_location[@rsc='fence-{node}']/@score") == ["-INFINITY"]
    # DRBD: promotable clone, three replicas, no notifications (off the failover path), role monitors
    # on different intervals
    meta = dict(zip(value("resources/clone[@id='drbd-clone']/meta_attributes/nvpair/@name"),
                    value("resources/clone[@id='drbd-clone']/meta_attributes/nvpair/@value"), strict=True))
    assert meta["promotable"] == "true" and meta["clone-max"] == "3" and meta["notify"] == "false"
    assert not conf.xpath("//master")
    roles = value("//primitive[@id='drbd']//op[@name='monitor']/@role")
    intervals = value("//primitive[@id='drbd']//op[@name='monitor']/@interval")
    assert sorted(roles) == ["Promoted", "Unpromoted"] and len(set(intervals)) == 2
    # the database group follows the Promoted role and starts after promotion
    assert value("resources/group[@id='db']/primitive/@id") == ["db-fs", "mysql", "db-vip"]
    assert value("constraints/rsc_colocation[@rsc='db']/@with-rsc-role") == ["Promoted"]
    assert value("constraints/rsc_order[@then='db']/@first-action") == ["promote"]
    # APIs: interleaved clones, Optional after the database and glance/nova after keystone (a dependency
    # down is degraded: a keystone failure restarts no other API)
    for api in ("keystone", "glance-api", "nova-api"):
        assert value(f"resources/clone[@id='{api}-clone']//nvpair[@name='interleave']/@value") == ["true"]
        assert value(f"constraints/rsc_order[@first='db'][@then='{api}-clone']/@kind") == ["Optional"]
    for api in ("glance-api", "nova-api"):
        kind = value(f"constraints/rsc_order[@first='keystone-clone'][@then='{api}-clone']/@kind")
        assert kind == ["Optional"]
    assert value("constraints/rsc_colocation[@rsc='public-vip']/@with-rsc") == ["keystone-clone"]


def test_haproxy_profile_puts_the_public_vip_with_haproxy() -> None:
    conf = etree.fromstring(rendered(os.path.join(SITES, "3ctl-haproxy.toml")))
    assert conf.xpath("constraints/rsc_colocation[@rsc='public-vip']/@with-rsc") == ["haproxy-clone"]
    assert conf.xpath("resources/clone[@id='haproxy-clone']/primitive/@type") == ["haproxy"]
    assert conf.xpath("resources/clone[@id='haproxy-clone']//nvpair[@name='config_digest']/@value") != []


def test_python_m_crmtool_from_the_source_tree() -> None:
    done = subprocess.run([PY, "-m", "crmtool", "render", EXAMPLE], cwd=ROOT, capture_output=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == rendered(EXAMPLE)


def test_exit_codes_and_no_traceback(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["render", str(tmp_path / "missing.toml")], capsys)[0] == Exit.NOINPUT
    assert run_cli(["no-such-command"], capsys)[0] == Exit.USAGE
    broken = tmp_path / "broken.toml"
    broken.write_text('profile = "openstack-3ctl"\n[primitive.db-vip.params]\nip = "not an address"\n')
    code, out, err = run_cli(["render", str(broken)], capsys)
    assert code == Exit.DATAERR and out == ""
    assert f"{findings.INVALID_PARAMETER_VALUE} primitive.db-vip.params.ip" in err
    assert f"{findings.MISSING_REQUIRED_PARAMETER} primitive.db-vip" not in err  # set, but invalid
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    code, out, err = run_cli(["check", str(binary)], capsys)
    assert code == Exit.DATAERR and findings.TOML_SYNTAX.code in err
    for output in (out, err):
        assert "Traceback" not in output
    code, out, err = run_cli(["render", EXAMPLE, "-o", str(tmp_path / "no-dir" / "x.xml")], capsys)
    assert code == Exit.CANTCREAT and "cannot write" in err


def test_schema_failure_is_a_crmtool_bug(monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    original = render.configuration

    def broken(desc):
        conf = original(desc)
        etree.SubElement(conf.find("resources"), "primitive", id="no-class")
        return conf

    monkeypatch.setattr(render, "configuration", broken)
    code, out, err = run_cli(["render", EXAMPLE], capsys)
    assert code == Exit.SOFTWARE and out == ""
    assert "schema rejects" in err


def test_agents_and_codes_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from agents import registry
    from crmtool.findings import CODES

    code, out, _ = run_cli(["agents"], capsys)
    assert code == 0
    vip = registry.load("vip")
    assert "ocf:openstack:vip" in out
    for param in vip.params:
        assert f"  {param.name} " in out
    code, out, _ = run_cli(["codes"], capsys)
    assert code == 0 and all(c in out for c in CODES)


def test_graph_dot_and_svg(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    svg = tmp_path / "graph.svg"
    code, out, err = run_cli(["graph", EXAMPLE, "--svg", str(svg)], capsys)
    assert code == 0, err
    assert '"drbd-clone" -> "db" [style=solid, label="promote → start"]' in out
    assert '"db" -> "keystone-clone" [style=dashed' in out
    assert '"db" -> "drbd-clone" [style=bold, color=blue, label="with (Promoted) INFINITY"]' in out
    assert etree.parse(str(svg)).getroot().tag.endswith("svg")


def test_main_honours_templates_dir_and_provider(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site.toml"
    site.write_text('profile = "mine"\n')
    (tmp_path / "mine.toml").write_text(
        'profile = "none"\n[primitive.v]\nagent = "ocf:acme:vip"\nparams = { cidr_netmask = 24 }\n')
    capsys.readouterr()
    from crmtool import cli

    with pytest.raises(SystemExit) as stopped:
        cli.main(["check", str(site)], templates_dir=str(tmp_path), provider="acme")
    err = capsys.readouterr().err
    assert stopped.value.code == Exit.DATAERR
    assert f"{findings.MISSING_REQUIRED_PARAMETER} primitive.v.params" in err


def test_profiles_installed_under_another_provider_keep_parameter_checks(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """tools/install.py --provider acme rewrites the profiles to ocf:acme:*; crmtool follows."""
    from crmtool import cli

    dest = tmp_path / "dest"
    dest.mkdir()
    installer = [sys.executable, os.path.join(ROOT, "tools", "install.py"), "install"]
    subprocess.run([*installer, "--destdir", str(dest), "--provider", "acme"], check=True,
                   capture_output=True, timeout=300)
    templates = str(dest / "usr/share/openstack-ha/cib-templates")
    with open(os.path.join(templates, "openstack-3ctl.toml"), encoding="utf-8") as handle:
        assert "ocf:acme:mysql" in handle.read()

    def run(*argv: str) -> tuple[object, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            cli.main(list(argv), templates_dir=templates, provider="acme")
        out, err = capsys.readouterr()
        return stopped.value.code, out, err

    site = tmp_path / "site.toml"
    site.write_text(example_text())
    code, out, err = run("render", str(site))
    assert code == 0, err
    conf = etree.fromstring(out.encode())
    assert conf.xpath("resources//primitive[@id='mysql']/@provider") == ["acme"]
    assert not conf.xpath("resources//primitive[@provider='openstack']")
    site.write_text(example_text() + '\n[primitive.mysql.params]\ncredentails = "/etc/x"\n'
                    + '[primitive.keystone.params]\nport = "not-a-port"\n')
    code, _out, err = run("check", str(site))
    assert code == Exit.DATAERR, err
    assert f"{findings.UNKNOWN_PARAMETER} primitive.mysql.params.credentails: ocf:acme:mysql" in err
    assert f"{findings.INVALID_PARAMETER_VALUE} primitive.keystone.params.port" in err
    assert findings.UNREGISTERED_AGENT.code not in err
    code, out, _err = run("agents")
    assert "ocf:acme:mysql" in out and "ocf:openstack:" not in out


def test_docs_list_every_report_code() -> None:
    from crmtool.findings import CODES

    with open(os.path.join(ROOT, "docs", "crmtool.md"), encoding="utf-8") as handle:
        doc = handle.read()
    for code in CODES.values():
        assert f"| {code.code} | `{code.name}` | {code.severity} | {code.summary} |" in doc


def test_report_codes_render_as_published() -> None:
    """The codes are public (scripts grep for them): a finding prints severity, code, name, path."""
    finding = findings.Finding(findings.NODE_ID, "nodes.ctl1.id", "0 is not a corosync node id")
    assert str(finding) == "error CRM123 node-id nodes.ctl1.id: 0 is not a corosync node id"


def test_docs_table_of_exit_statuses_is_the_declared_one() -> None:
    from crmtool import exits

    with open(os.path.join(ROOT, "docs", "crmtool.md"), encoding="utf-8") as handle:
        doc = handle.read()
    assert exits.table() in doc
    numbered = [line for line in doc.splitlines() if re.match(r"\| [0-9]+ \| `[A-Z_]+` \|", line)]
    assert numbered == exits.table().splitlines()[2:]  # and no other status row elsewhere


def test_documented_command_lines_parse_with_the_declared_flags() -> None:
    """The usage examples (docs/crmtool.md, README) name only commands and flags cli.py declares."""
    import shlex

    from crmtool import cli

    lines: list[str] = []
    for doc in (os.path.join(ROOT, "docs", "crmtool.md"), os.path.join(ROOT, "README.md")):
        with open(doc, encoding="utf-8") as handle:
            blocks = handle.read().split("```")[1::2]
        lines += [line for block in blocks if block.startswith("sh\n")
                  for line in block.splitlines() if line.startswith("crmtool ")]
    assert len(lines) >= 10
    declared = {name for command in cli.COMMANDS.values() for flag in command.flags for name in flag.names}
    for line in lines:
        words = shlex.split(line.split("#")[0].split(">")[0])
        argv = [word.strip("[]") for word in words[1:]]
        assert {w for w in argv if w.startswith("-") and len(w) > 1} <= declared, line
        cli.parser().parse_args(argv)  # an undeclared command or flag: SystemExit(Exit.USAGE)


def test_exit_statuses_are_pacemakers() -> None:
    """Each status below 128 is the one Pacemaker's tools use for it (crm_error names its CRM_EX_*)."""
    import signal

    for status in Exit:
        if status < 128:
            done = subprocess.run(["crm_error", "-X", "-n", str(int(status))], capture_output=True,
                                  text=True, check=True)
            assert done.stdout.split()[0] == f"CRM_EX_{status.name}", done.stdout
    assert Exit.INTERRUPTED - 128 == signal.SIGINT and Exit.BROKEN_PIPE - 128 == signal.SIGPIPE


def test_crm_verify_rejection_exits_78(tmp_path, monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    from crmtool import check

    # check rejects this value itself (invalid-option-value): without that rule, crm_verify rejects it
    monkeypatch.setattr(check, "RULES", tuple(r for r in check.RULES if r is not check._cluster_options))
    site = tmp_path / "site.toml"
    site.write_text(example_text() + '\n[cluster.properties]\nno-quorum-policy = "bogus"\n')
    code, out, err = run_cli(["verify", str(site)], capsys)
    assert code == Exit.CONFIG, out + err
    assert "no-quorum-policy" in err


def test_profiles_merge_inherit_and_disable(tmp_path) -> None:
    from crmtool import load
    from crmtool.findings import DescriptionError

    (tmp_path / "base.toml").write_text(
        'profile = "none"\n[primitive.a]\nagent = "ocf:heartbeat:Dummy"\nparams = { x = 1, y = 2 }\n'
        '[primitive.b]\nagent = "ocf:heartbeat:Dummy"\n')
    (tmp_path / "mid.toml").write_text('profile = "base"\n[primitive.a.params]\ny = 3\n')
    desc = load.load_text('profile = "mid"\n[primitive.b]\nenabled = false\n', str(tmp_path))
    assert [(p.id, p.params) for p in desc.primitives] == [("a", {"x": "1", "y": "3"})]
    (tmp_path / "loop1.toml").write_text('profile = "loop2"\n')
    (tmp_path / "loop2.toml").write_text('profile = "loop1"\n')
    with pytest.raises(DescriptionError) as caught:
        load.load_text('profile = "loop1"\n', str(tmp_path))
    assert [(f.code, f.path) for f in caught.value.findings] == [(findings.UNKNOWN_PROFILE, "profile")]
    with pytest.raises(DescriptionError):
        load.load_text('profile = "../etc/passwd"\n', str(tmp_path))


def test_an_unexpected_error_is_exit_70_not_a_traceback(monkeypatch, capsys) -> None:
    from crmtool import check

    def explode(desc, provider):
        raise KeyError("boom")

    monkeypatch.setattr(check, "check", explode)
    monkeypatch.delenv("CRMTOOL_DEBUG", raising=False)
    code, out, err = run_cli(["check", EXAMPLE], capsys)
    assert code == Exit.SOFTWARE and out == ""
    assert "internal error" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["codes"], ["check", EXAMPLE], ["render", EXAMPLE]],
                         ids=["codes", "check", "render"])
def test_a_closed_pipe_is_quiet(argv: list[str]) -> None:
    """`crmtool ... | head`: no BrokenPipeError, the exit status of a tool killed by SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as for operators
    try:
        done = subprocess.run([PY, "-m", "crmtool", *argv], cwd=ROOT, stdout=write_end,
                              stderr=subprocess.PIPE, env=env, check=False, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode in (Exit.OK, Exit.BROKEN_PIPE), done.stderr
    assert done.stderr == b""


def test_a_missing_cib_file_is_named_exit_66(tmp_path, monkeypatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "no-cib.xml")
    for argv in (["diff", EXAMPLE, "--cib", missing], ["apply", EXAMPLE, "--cib", missing],
                 ["render", "--live", EXAMPLE, "--cib", missing]):
        code, out, err = run_cli(argv, capsys)
        assert (code, out) == (Exit.NOINPUT, ""), err
        assert err == f"crmtool: {missing}: no such CIB file\n"
    monkeypatch.setenv("CIB_file", missing)
    code, _out, err = run_cli(["diff", EXAMPLE], capsys)
    assert code == Exit.NOINPUT and missing in err


def test_dash_reads_standard_input(tmp_path, monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    def stdin(data: bytes) -> None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    stdin(example_text().encode())
    code, out, err = run_cli(["render", "-"], capsys)
    assert code == 0, err
    assert out.encode() == rendered(EXAMPLE)
    stdin(b"\xff\xfe garbage")
    code, _out, err = run_cli(["check", "-"], capsys)
    assert code == Exit.DATAERR and f"{findings.TOML_SYNTAX} -:" in err
    empty = subprocess.run(["cibadmin", "--empty"], capture_output=True, check=True).stdout
    stdin(empty)
    code, out, err = run_cli(["diff", EXAMPLE, "--cib", "-"], capsys)
    assert code == 0 and out.startswith("<diff"), err
    cib = tmp_path / "cib.xml"
    cib.write_bytes(empty)
    patch = tmp_path / "patch.xml"
    assert run_cli(["diff", EXAMPLE, "--cib", str(cib), "-o", str(patch)], capsys)[0] == 0
    stdin(patch.read_bytes())
    code, out, err = run_cli(["apply", EXAMPLE, "--cib", str(cib), "--patch", "-"], capsys)
    assert code == 0 and out.startswith("applied"), err
    stdin(empty)
    code, _out, err = run_cli(["apply", EXAMPLE, "--cib", "-"], capsys)
    assert code == Exit.USAGE
    assert err == "crmtool: apply --cib - has no file to write the result to: name the CIB file\n"
