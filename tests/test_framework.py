"""The OCF framework's policy, one test per row, through a real agent process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from lxml import etree

from agents.ocf.codes import OCF
from agents.ocf.deadline import Deadline
from agents.ocf.log import Logger, debug_enabled
from agents.ocf.params import Param, parse
from agents.ocf.proc import Identity, spawn, stop_session
from harness.ocfrun import agent_env, run_agent, source_agent

SAMPLE = source_agent("harness/sample_agent.py")
GOOD = {"address": "192.0.2.1"}


def sample(action: str, params: dict[str, str] | None = None, **extra: str):
    return run_agent(SAMPLE, action, agent_env(params, **extra))


# --- dispatcher policy ------------------------------------------------------

def test_no_action_is_an_argument_error():
    done = subprocess.run(SAMPLE, capture_output=True, text=True, check=False, env={})
    assert done.returncode == OCF.ERR_ARGS
    assert "usage:" in done.stderr


def test_unknown_action_is_unimplemented_with_a_reason():
    result = sample("migrate_to", GOOD)
    assert result.rc == OCF.ERR_UNIMPLEMENTED
    assert len(result.exit_reasons) == 1


def test_meta_data_needs_no_environment():
    done = subprocess.run([*SAMPLE, "meta-data"], capture_output=True, text=True, check=False, env={})
    assert done.returncode == 0, done.stderr
    assert etree.fromstring(done.stdout.encode()).get("name") == "sample"


def test_all_parameter_errors_are_reported_at_once():
    result = sample("start", {"count": "eleven", "behaviour": "dance", "verbose": "perhaps"})
    assert result.rc == OCF.ERR_CONFIGURED
    (reason,) = result.exit_reasons
    for fragment in ("address is not set", "count must be an integer", "behaviour must be one of",
                     "verbose must be a boolean"):
        assert fragment in reason


def test_validate_all_success_and_worst_code_wins():
    assert sample("validate-all", GOOD).rc == OCF.SUCCESS
    assert sample("validate-all", {**GOOD, "behaviour": "missing-software"}).rc == OCF.ERR_INSTALLED
    both = sample("validate-all", {**GOOD, "behaviour": "bad-file"})
    assert both.rc == OCF.ERR_CONFIGURED
    assert "unreadable" in both.exit_reasons[0] and "not installed" in both.exit_reasons[0]


def test_probe_with_invalid_configuration_is_not_running():
    result = sample("monitor", {}, OCF_RESKEY_CRM_meta_interval="0")
    assert result.rc == OCF.NOT_RUNNING
    assert result.exit_reasons == []


def test_probe_without_the_software_is_not_running():
    result = sample("monitor", {**GOOD, "behaviour": "missing-software"}, OCF_RESKEY_CRM_meta_interval="0")
    assert result.rc == OCF.NOT_RUNNING


def test_recurring_monitor_without_the_software_is_an_install_error():
    result = sample("monitor", {**GOOD, "behaviour": "missing-software"},
                    OCF_RESKEY_CRM_meta_interval="10000")
    assert result.rc == OCF.ERR_INSTALLED


def test_start_with_invalid_configuration_is_a_configuration_error():
    assert sample("start", {"count": "0"}).rc == OCF.ERR_CONFIGURED


def test_stop_never_fails_on_validation():
    assert sample("stop", {"count": "nope"}).rc == OCF.SUCCESS
    assert sample("stop", {**GOOD, "behaviour": "missing-software"}).rc == OCF.SUCCESS


def test_unexpected_exception_is_generic_error_without_traceback(tmp_path):
    logfile = tmp_path / "agent.log"
    result = sample("start", {**GOOD, "behaviour": "crash", "password": "hunter2-secret"},
                    HA_LOGFILE=str(logfile))
    assert result.rc == OCF.ERR_GENERIC
    assert "Traceback" not in result.stderr
    (reason,) = result.exit_reasons
    assert "RuntimeError" in reason
    assert "hunter2-secret" not in result.stderr
    log = logfile.read_text()
    assert "Traceback" in log
    assert "hunter2-secret" not in log and "***" in log


def test_deadline_from_the_operation_timeout_is_respected():
    started = time.monotonic()
    result = sample("start", {**GOOD, "behaviour": "slow"}, OCF_RESKEY_CRM_meta_timeout="1500")
    elapsed = time.monotonic() - started
    assert result.rc == OCF.ERR_GENERIC
    assert "timed out" in result.exit_reasons[0]
    assert elapsed < 1.5 + 0.8  # the budget, plus interpreter start on a loaded machine


def test_deprecated_name_carries_its_value():
    assert sample("validate-all", {"old_address": "192.0.2.9"}).rc == OCF.SUCCESS


def test_exit_reason_is_one_line():
    result = sample("start", {"behaviour": "x\ny", "count": "a\nb"})
    assert len(result.exit_reasons) == 1


# --- meta-data --------------------------------------------------------------

def test_meta_data_escapes_markup_in_descriptions():
    result = sample("meta-data")
    root = etree.fromstring(result.stdout.encode())
    assert root.findtext("shortdesc") == 'Sample <agent> & "friends"'
    assert "&amp;amp;" in result.stdout  # a literal "&amp;" in the text stays literal
    assert root.find("parameters/parameter[@name='address']/shortdesc").text == "An address <required>"


def test_ocf_1_1_callers_learn_what_is_reloadable():
    v10 = etree.fromstring(sample("meta-data").stdout.encode())
    v11 = etree.fromstring(sample("meta-data", OCF_RA_VERSION_MAJOR="1", OCF_RA_VERSION_MINOR="1")
                           .stdout.encode())
    assert v10.findtext("version") == "1.0" and v11.findtext("version") == "1.1"
    reloadable = {p.get("name") for p in v11.iterfind("parameters/parameter[@reloadable='1']")}
    assert reloadable == {"count", "verbose"}
    assert v11.find("parameters/parameter[@name='password']").get("private") is None  # pcs rejects it
    assert v11.find("actions/action[@name='reload-agent']") is not None
    assert v10.find("actions/action[@name='reload-agent']") is None
    assert not any(p.get("reloadable") for p in v10.iterfind("parameters/parameter"))


# --- parameters ---------------------------------------------------------------

@pytest.mark.parametrize(("raw", "value"), [("yes", True), ("0", False), ("TRUE", True), ("off", False)])
def test_boolean_words(raw, value):
    config, errors = parse([Param("b", "boolean", shortdesc="b")], {"OCF_RESKEY_b": raw})
    assert errors == [] and config.boolean("b") is value


def test_integer_bounds_and_defaults():
    params = [Param("n", "integer", shortdesc="n", default=5, minimum=1, maximum=9)]
    assert parse(params, {})[0].integer("n") == 5
    assert parse(params, {"OCF_RESKEY_n": " 7 "})[0].integer("n") == 7
    assert parse(params, {"OCF_RESKEY_n": "10"})[1] == ["parameter n must be at most 9, not 10"]
    assert "integer" in parse(params, {"OCF_RESKEY_n": "٣"})[1][0]  # unicode digits are not integers


def test_nul_and_oversized_values_are_rejected():
    params = [Param("s", shortdesc="s")]
    assert "NUL" in parse(params, {"OCF_RESKEY_s": "a\x00b"})[1][0]
    assert "longer" in parse(params, {"OCF_RESKEY_s": "x" * 5000})[1][0]


# --- logging ----------------------------------------------------------------

@pytest.mark.parametrize(("value", "enabled"), [("", False), ("0", False), ("no", False), ("1", True),
                                                ("yes", True), ("pacemaker-execd", True)])
def test_ha_debug_is_read_as_the_string_it_is(value, enabled):
    assert debug_enabled({"HA_debug": value}) is enabled


def test_secrets_are_redacted_in_every_destination(tmp_path):
    logfile = tmp_path / "log"
    log = Logger("sample(x)", {"HA_LOGFILE": str(logfile), "HA_debug": "1"})
    log.add_secret("s3cr3t")
    log.add_secret("s3")
    log.info("password=s3cr3t and s3")
    log.debug("again s3cr3t")
    text = logfile.read_text()
    assert "s3cr3t" not in text and "s3 " not in text
    assert text.count("***") == 3


# --- processes ----------------------------------------------------------------

def test_identity_needs_pid_and_start_time():
    mine = Identity.of(os.getpid())
    assert mine is not None and mine.alive()
    assert not Identity(os.getpid(), mine.start_time + 1).alive()  # a reused pid is not ours
    assert Identity.parse(mine.dump()).alive()
    assert Identity.parse("garbage") is None


def test_zombies_count_as_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = Identity.of(child.pid)
    assert identity is not None
    deadline = Deadline(10)
    deadline.wait_for(lambda: not identity.alive(), "child to exit")
    assert os.path.exists(f"/proc/{child.pid}")  # still a zombie: not reaped yet
    child.wait()


STUBBORN_TREE = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setpgid(0, 0)  # a grandchild in another process group, same session
    time.sleep(600)
time.sleep(600)
"""


def test_stop_session_kills_a_tree_that_ignores_term_within_budget(tmp_path):
    identity = spawn([sys.executable, "-c", STUBBORN_TREE], user=None, log_path=str(tmp_path / "log"),
                     env={})
    Deadline(5).wait_for(lambda: len(identity.session_members()) == 2, "tree to start")
    started = time.monotonic()
    stop_session(identity, Deadline(3), term_grace_s=0.5)
    assert time.monotonic() - started < 3
    assert identity.session_members() == []


def test_stop_session_handles_a_frozen_process(tmp_path):
    identity = spawn([sys.executable, "-c", "import time; time.sleep(600)"], user=None,
                     log_path=str(tmp_path / "log"), env={})
    os.kill(identity.pid, signal.SIGSTOP)
    Deadline(5).wait_for(identity.stopped, "process to freeze")
    stop_session(identity, Deadline(5))
    assert not identity.alive()


def test_deadline_wait_is_bounded():
    deadline = Deadline(0.3)
    started = time.monotonic()
    with pytest.raises(Exception, match="timed out"):
        deadline.wait_for(lambda: False, "nothing")
    assert time.monotonic() - started < 0.6
    assert Deadline.from_timeout_ms(20000).budget_s == pytest.approx(19.5)
    assert Deadline.from_timeout_ms(1000).budget_s == pytest.approx(0.9)


# --- typed parameter values -------------------------------------------------

TYPED = [
    Param("name", shortdesc="a string", default="web"),
    Param("note", shortdesc="a string without default"),
    Param("mode", "select", choices=("fast", "safe"), default="safe", shortdesc="a select"),
    Param("size", "integer", default=5, minimum=1, shortdesc="an integer"),
    Param("port", "integer", minimum=1, maximum=65535, shortdesc="an integer without default"),
    Param("on", "boolean", default=True, shortdesc="a boolean"),
    Param("off", "boolean", shortdesc="a boolean without default"),
    Param("old_note", deprecated_for="note", shortdesc="the old name of note"),
]


def typed(**values: str):
    config, errors = parse(TYPED, {f"OCF_RESKEY_{name}": value for name, value in values.items()})
    assert errors == []
    return config


def test_typed_accessors_return_given_values():
    config = typed(name="db", note="x", mode="fast", size=" 7 ", port="3306", on="no", off="yes")
    assert config.text("name") == "db" and config.text("note") == "x"
    assert config.text("mode") == "fast"
    assert config.integer("size") == 7 and type(config.integer("size")) is int
    assert config.optional_integer("port") == 3306 and config.optional_integer("size") == 7
    assert config.boolean("on") is False and config.boolean("off") is True


def test_typed_accessors_return_defaults_or_empty_values():
    config = typed()
    assert config.text("name") == "web" and config.text("mode") == "safe"
    assert config.text("note") == ""
    assert config.integer("size") == 5
    assert config.optional_integer("port") is None
    assert config.boolean("on") is True and config.boolean("off") is False
    assert config.given == frozenset()


def test_typed_accessors_fall_back_to_the_default_of_an_invalid_value():
    config, errors = parse(TYPED, {"OCF_RESKEY_size": "0", "OCF_RESKEY_on": "maybe", "OCF_RESKEY_port": "x"})
    assert len(errors) == 3
    assert config.integer("size") == 5 and config.boolean("on") is True
    assert config.optional_integer("port") is None


def test_typed_accessor_reads_a_deprecated_alias_through_its_replacement():
    config = typed(old_note="from the old name")
    assert config.text("note") == "from the old name" and "note" in config.given


@pytest.mark.parametrize(("accessor", "name"), [
    ("text", "size"), ("text", "on"), ("integer", "name"), ("integer", "on"),
    ("optional_integer", "mode"), ("boolean", "name"), ("boolean", "size"),
])
def test_typed_accessor_of_another_kind_is_a_type_error(accessor, name):
    with pytest.raises(TypeError, match=rf"parameter {name} is declared \w+; {accessor}\(\) reads"):
        getattr(typed(), accessor)(name)


def test_integer_without_default_needs_the_optional_accessor():
    with pytest.raises(TypeError, match="port has no default: read it with optional_integer"):
        typed(port="80").integer("port")


@pytest.mark.parametrize("accessor", ["text", "integer", "optional_integer", "boolean"])
def test_typed_accessor_of_an_undeclared_name_is_a_key_error(accessor):
    with pytest.raises(KeyError, match="nosuch is not a declared parameter"):
        getattr(typed(), accessor)("nosuch")


# --- the health attribute ---------------------------------------------------

UNCHANGED_HEALTH = """
import sys
sys.path.insert(0, {repo!r})
from agents.ocf.agent import _publish_health
from agents.ocf.deadline import Deadline
from agents.ocf.environment import Environment
from agents.ocf.log import Logger

env = Environment("monitor", {{"HA_RSCTMP": {rsctmp!r}, "OCF_RESOURCE_INSTANCE": "test"}})
_publish_health("sample", env, "", Deadline(5), Logger("sample", {{}}))
print("subprocess" in sys.modules)
"""


def test_an_unchanged_health_attribute_imports_no_subprocess(tmp_path):
    """Nothing to publish (the common monitor and stop): no crm_attribute, and no import for it."""
    from harness.ocfrun import REPO

    script = UNCHANGED_HEALTH.format(repo=REPO, rsctmp=str(tmp_path))
    done = subprocess.run(["/usr/bin/python3", "-IS", "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False", done
