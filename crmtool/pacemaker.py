"""Pacemaker's command-line tools, run offline on files (``CIB_file``) or live.

Every call is an argv list; XML travels in files or on stdin, never on a
command line.
"""

from __future__ import annotations

import os
import re

from crmtool.findings import NoInput, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess

    from lxml import etree

TOOL_TIMEOUT_S = 120


def run(argv: list[str], *, cib_file: str | None = None, input_bytes: bytes | None = None,
        ok: tuple[int, ...] = (0,), env_extra: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[bytes]:
    """Run a tool; ``cib_file`` points it at a file instead of the live cluster."""
    import subprocess

    env = {**os.environ, **(env_extra or {})}
    if cib_file is not None:
        env["CIB_file"] = cib_file
    try:
        done = subprocess.run(argv, input=input_bytes, capture_output=True, env=env, check=False,
                              timeout=TOOL_TIMEOUT_S)
    except FileNotFoundError:
        raise Unavailable(f"{argv[0]} is not installed (Pacemaker's command-line tools are needed)") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{argv[0]} did not finish within {TOOL_TIMEOUT_S} s") from None
    if done.returncode not in ok:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise ToolFailed(argv[0], done.returncode, message[-1] if message else "")
    return done


class ToolFailed(Unavailable):
    def __init__(self, tool: str, code: int, last_line: str) -> None:
        super().__init__(f"{os.path.basename(tool)} failed with exit code {code}: {last_line}")
        self.tool = tool
        self.code = code


def parse(data: bytes) -> etree._Element:
    from lxml import etree

    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    return etree.fromstring(data, parser)


def write(path: str, element: etree._Element) -> None:
    from lxml import etree

    with open(path, "wb") as handle:
        handle.write(etree.tostring(element, pretty_print=True, encoding="UTF-8", xml_declaration=False))


def empty_cib() -> etree._Element:
    """A fresh ``<cib>`` as Pacemaker itself writes it (its own crm_feature_set)."""
    return parse(run(["cibadmin", "--empty"]).stdout)


def full_cib(configuration: etree._Element) -> etree._Element:
    """``configuration`` inside a fresh CIB from ``cibadmin --empty``."""
    import copy

    cib = empty_cib()
    old = cib.find("configuration")
    if old is None:
        raise Unavailable("cibadmin --empty returned no <configuration>")
    cib.replace(old, copy.deepcopy(configuration))
    return cib


def query(cib_file: str | None) -> etree._Element:
    """The whole CIB, from ``cib_file`` or (when None) the live cluster or ``$CIB_file``."""
    named = cib_file if cib_file is not None else os.environ.get("CIB_file")  # noqa: SIM112 (Pacemaker's name)
    if named and not os.path.isfile(named):
        # cibadmin would say only "exit code 105: Init failed"
        raise NoInput(f"{named}: no such CIB file")
    return parse(run(["cibadmin", "--query"], cib_file=cib_file).stdout)


DAEMON_DIRS = ("/usr/lib/pacemaker", "/usr/libexec/pacemaker")
# The daemons whose metadata lists the cluster options (pacemaker-fenced's lists stonith device attributes).
OPTION_DAEMONS = ("pacemaker-schedulerd", "pacemaker-controld", "pacemaker-based")


class Option:
    """One cluster option as Pacemaker's daemons declare it (``<daemon> metadata``)."""

    __slots__ = ("choices", "default", "name", "type")

    def __init__(self, name: str, type_: str, default: str | None, choices: tuple[str, ...]) -> None:
        self.name = name
        self.type = type_
        self.default = default
        self.choices = choices


_OPTIONS: dict[str, Option] = {}


def cluster_options() -> dict[str, Option]:
    """Every cluster property the installed Pacemaker knows, read once per process."""
    if not _OPTIONS:
        for daemon in OPTION_DAEMONS:
            for option in _daemon_options(daemon):
                _OPTIONS.setdefault(option.name, option)
    return _OPTIONS


def _daemon_options(daemon: str) -> list[Option]:
    path = next((os.path.join(d, daemon) for d in DAEMON_DIRS if os.path.isfile(os.path.join(d, daemon))),
                None)
    if path is None:
        raise Unavailable(f"{daemon} is not installed (its metadata lists the cluster options)")
    options = []
    for parameter in parse(run([path, "metadata"]).stdout).iterfind("parameters/parameter"):
        content = parameter.find("content")
        if content is None:
            continue
        choices = tuple(o.get("value", "") for o in content.iterfind("option"))
        options.append(Option(parameter.get("name", ""), content.get("type", "string"),
                              content.get("default"), choices))
    return options


FENCE_AGENT_DIR = "/usr/sbin"
OCF_ROOT = "/usr/lib/ocf"
AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_AGENT_PARAMS: dict[str, frozenset[str] | None] = {}


def agent_parameters(standard: str, provider: str | None, type_: str) -> frozenset[str] | None:
    """The parameter names an installed agent's meta-data declares (None: not installed or unreadable).

    Fence agents answer ``-o metadata``, OCF agents ``meta-data``; read once per process.
    """
    key = f"{standard}:{provider}:{type_}"
    if key not in _AGENT_PARAMS:
        _AGENT_PARAMS[key] = _read_agent_parameters(standard, provider, type_)
    return _AGENT_PARAMS[key]


def _read_agent_parameters(standard: str, provider: str | None, type_: str) -> frozenset[str] | None:
    if not AGENT_NAME.match(type_) or (provider is not None and not AGENT_NAME.match(provider)):
        return None
    if standard == "stonith":
        path, argv_tail, env = os.path.join(FENCE_AGENT_DIR, type_), ["-o", "metadata"], {}
    elif standard == "ocf" and provider:
        path = os.path.join(OCF_ROOT, "resource.d", provider, type_)
        argv_tail, env = ["meta-data"], {"OCF_ROOT": OCF_ROOT}
    else:
        return None
    if not os.path.isfile(path):
        return None
    try:
        done = run([path, *argv_tail], env_extra=env)
        root = parse(done.stdout)
    except (Unavailable, SyntaxError):
        return None
    return frozenset(p.get("name", "") for p in root.iterfind("parameters/parameter"))
