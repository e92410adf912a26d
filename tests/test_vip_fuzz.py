"""Fuzzed parameters for every vip action: no traceback, no hang, only the codes OCF allows.

The installed agent runs inside a test namespace.  A generated ``ip`` that
happens to be a valid address outside the documentation ranges is discarded,
so nothing but test addresses is ever configured.  Values with a NUL cannot
travel through an environment, so they are fed to the dispatcher in-process
(still inside the namespace).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agents.vip import PARAMS
from harness.netns import Lab
from harness.ocfrun import EXIT_REASON_PREFIX, REPO, Result
from harness.vip_support import require_root, vip

VALID = {"ip": "192.0.2.10"}
# Exit codes OCF allows for each action of a primitive that is not promotable.
ALLOWED = {
    "start": {0, 1, 5, 6},
    "stop": {0},
    "monitor": {0, 1, 5, 6, 7},
    "validate-all": {0, 5, 6},
    "reload-agent": {0, 1, 5, 6},
    "meta-data": {0},
}
DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
                                               "2001:db8::/32")]
SPECIALS = [
    "; rm -rf /", "$(reboot)", "`id`", "| cat /etc/shadow", "a\nb", "192.0.2.10\n", " 192.0.2.10",
    "192.0.2.010", "192.0.2.10/24", "192.0.2.1", "::ffff:192.0.2.10", "2001:db8::10%veth0", "fe80::1",
    "0.0.0.0", "::", "255.255.255.255", "224.0.0.1", "-1", "0", "1e9", "0x10", "99999999999999999999",
    "true", "yes", "veth0", "veth0:1", "lo", "../../etc/passwd", "é", "\u202e", "x" * 16, "%s%n",
    "255.255.255.0", "255.0.255.0", "+", "-", "",
]
NO_NUL = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
VALUES = st.one_of(
    st.sampled_from(SPECIALS),
    st.text(NO_NUL, max_size=40),
    st.text(NO_NUL, min_size=5000, max_size=6000),
    st.integers().map(str),
    st.from_regex(r"\A[0-9a-f.:/+-]{1,24}\Z"),
)
PARAM_NAMES = [p.name for p in PARAMS] + ["bogus"]
FUZZ_SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))


def test_address_like_values_stay_in_documentation_ranges() -> None:
    assert outside_documentation_ranges("10.0.0.1")
    assert not outside_documentation_ranges("192.0.2.77") and not outside_documentation_ranges("x")


@pytest.fixture(scope="module", name="fuzz_lab")
def fuzz_lab_fixture() -> Iterator[Lab]:
    require_root()
    with Lab("vipf") as made:
        yield made


def outside_documentation_ranges(value: str) -> bool:
    """True for a value the agent would take as an address that is not a documentation one."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            packed = socket.inet_pton(family, value)
        except (OSError, ValueError, UnicodeError):
            continue
        address = ipaddress.ip_address(packed)
        return not any(address in net for net in DOC_NETS)
    return False


def check(action: str, result: Result) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.rc in ALLOWED[action], f"{action} exited {result.rc}: {result.stderr[-500:]}"
    reasons = [line for line in result.stderr.splitlines() if line.startswith(EXIT_REASON_PREFIX)]
    assert len(reasons) <= 1, reasons
    if result.rc not in (0, 7):
        assert reasons, f"{action} exited {result.rc} without an exit reason"


def fuzz(lab: Lab, action: str, name: str, value: str) -> None:
    if name == "ip":
        assume(not outside_documentation_ranges(value))
    params = {**VALID, name: value}
    # A short operation timeout bounds announcements sent in the foreground.
    extra = {"OCF_RESKEY_CRM_meta_timeout": "2000"}
    result = vip(lab.node, action, timeout=30, extra=extra, **params)
    check(action, result)
    if action == "start" and result.rc == 0:
        assert vip(lab.node, "stop", timeout=30, extra=extra, **params).rc == 0


@pytest.mark.parametrize("action", sorted(ALLOWED))
def test_fuzzed_parameters(fuzz_lab: Lab, action: str) -> None:
    @FUZZ_SETTINGS
    @given(name=st.sampled_from(PARAM_NAMES), value=VALUES)
    def run(name: str, value: str) -> None:
        fuzz(fuzz_lab, action, name, value)

    run()


IN_PROCESS = """
import contextlib, io, json, sys
sys.path.insert(0, sys.argv[1])
from agents.vip import AGENT
results = []
for case in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = AGENT.run(["vip", case["action"]], case["env"])
    results.append({"rc": int(code), "stdout": out.getvalue(), "stderr": err.getvalue()})
json.dump(results, sys.stdout)
"""


def test_nul_and_newline_values_in_process(fuzz_lab: Lab) -> None:
    cases = []
    for action in ALLOWED:
        for name in PARAM_NAMES:
            for value in ("\x00", "192.0.2.10\x00; rm -rf /", "a\nb\x00"):
                env = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "fuzz",
                       **{f"OCF_RESKEY_{k}": v for k, v in {**VALID, name: value}.items()}}
                cases.append({"action": action, "env": env})
    done = fuzz_lab.node.run([sys.executable, "-c", IN_PROCESS, REPO], input=json.dumps(cases), timeout=120)
    results = json.loads(done.stdout)
    assert len(results) == len(cases)
    for case, result in zip(cases, results, strict=True):
        check(case["action"], Result(result["rc"], result["stdout"], result["stderr"]))
        if case["env"].get("OCF_RESKEY_ip", "").count("\x00") and case["action"] in ("start", "validate-all"):
            assert result["rc"] == 6
