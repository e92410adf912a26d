"""The agent base class and the dispatcher: the only place an agent exits.

One policy for every agent:

* ``meta-data`` works with an empty environment and imports nothing heavy.
* Parameter problems are reported all at once, as ``ERR_CONFIGURED`` (or
  ``ERR_INSTALLED``/``ERR_PERM`` when the agent says so) with an exit reason.
* A probe that cannot be evaluated because the configuration or the software
  is missing answers ``NOT_RUNNING``: a probe error would ban the node.
* ``stop`` never fails because of a validation problem: a failed stop gets
  the node fenced.  The agent decides from what it recorded at start whether
  anything of its own still runs.
* Any unexpected exception becomes ``ERR_GENERIC`` with one exit reason line;
  the traceback goes to the log.
"""

from __future__ import annotations

import os
import sys

from agents.ocf import actions as _actions
from agents.ocf.codes import OCF, OCFError
from agents.ocf.deadline import Deadline
from agents.ocf.environment import Environment
from agents.ocf.log import Logger, one_line
from agents.ocf.params import TEXT_KINDS, Config, Param, parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

# When several problems are found, the one that says most about where the
# resource may still run wins: a configuration error is wrong everywhere.
SEVERITY = (OCF.ERR_CONFIGURED, OCF.ERR_PERM, OCF.ERR_INSTALLED, OCF.ERR_GENERIC)
SUCCESS_CODES = frozenset((OCF.SUCCESS, OCF.RUNNING_PROMOTED))
# State files are named openstack-<agent>-<instance>: room for the longest agent name within NAME_MAX.
MAX_INSTANCE_LENGTH = 200
# Pacemaker 2.1.5 lists degraded monitors among failed actions (without counting them) and keeps
# the entry after recovery: the transient node attribute <resource>-health says what holds now.
HEALTH = {OCF.DEGRADED: "degraded", OCF.DEGRADED_PROMOTED: "degraded-promoted"}
HEALTH_STATE_FILE = "published-health"
HEALTH_CAP_S = 5.0


class Agent:
    """Subclasses declare ``name``, descriptions, ``params`` and decorated actions."""

    name: str = ""
    version: str = "1.0"
    shortdesc: str = ""
    longdesc: str = ""
    params: tuple[Param, ...] = ()
    action_specs: dict[str, _actions.ActionSpec] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__()
        specs: dict[str, _actions.ActionSpec] = {}
        for klass in reversed(cls.__mro__):
            specs.update(_actions.collect(vars(klass)))
        cls.action_specs = specs

    def __init__(self, env: Environment, config: Config, deadline: Deadline, log: Logger) -> None:
        self.env = env
        self.config = config
        self.deadline = deadline
        self.log = log

    # Hooks an agent may override -------------------------------------------

    def validate(self) -> Iterable[OCFError]:
        """Problems beyond parameter syntax (missing binary, bad file, ...)."""
        return ()

    def stop_unconfigured(self, problems: Sequence[OCFError]) -> OCF:
        """``stop`` when validation failed: succeed unless something of ours is known to run."""
        return OCF.SUCCESS

    def probe_unconfigured(self, problems: Sequence[OCFError]) -> OCF:
        """A probe when validation failed: nothing of ours can be running here."""
        return OCF.NOT_RUNNING

    # Declarations derived from the class ------------------------------------

    @classmethod
    def param(cls, name: str) -> Param:
        for param in cls.params:
            if param.name == name:
                return param
        raise KeyError(name)

    @classmethod
    def has_reload_agent(cls) -> bool:
        return "reload-agent" in cls.action_specs and any(p.reloadable for p in cls.params)

    @classmethod
    def action_names(cls) -> list[str]:
        return [*cls.action_specs, *_actions.BUILTIN_TIMEOUTS]

    @classmethod
    def main(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
        code = cls.run(list(sys.argv if argv is None else argv), os.environ if environ is None else environ)
        sys.stdout.flush()
        raise SystemExit(int(code))

    @classmethod
    def run(cls, argv: list[str], environ: Mapping[str, str]) -> OCF:
        if len(argv) < 2:
            sys.stderr.write(cls.usage())
            return OCF.ERR_ARGS
        action = argv[1]
        if action == "meta-data":
            from agents.ocf.metadata import render

            env = Environment(action, environ)
            sys.stdout.write(render(cls, env.ocf_version))
            return OCF.SUCCESS
        if action in ("usage", "help", "--help", "-h"):
            sys.stdout.write(cls.usage())
            return OCF.SUCCESS
        if action not in cls.action_specs and action != "validate-all":
            sys.stderr.write(cls.usage())
            _exit_reason(environ, f"action {action!r} is not implemented by {cls.name}")
            return OCF.ERR_UNIMPLEMENTED
        return cls._dispatch(action, environ)

    @classmethod
    def usage(cls) -> str:
        return f"usage: {cls.name} {{{'|'.join(cls.action_names())}}}\n"

    @classmethod
    def _dispatch(cls, action: str, environ: Mapping[str, str]) -> OCF:
        env = Environment(action, environ)
        if len(env.instance) > MAX_INSTANCE_LENGTH:
            return _overlong_instance(env, environ)
        log = Logger(f"{cls.name}({env.instance})", environ)
        config, errors = parse(cls.params, environ)
        for param in cls.params:
            if param.secret and param.kind in TEXT_KINDS:
                log.add_secret(config.text(param.name))
        spec = cls.action_specs.get(action)
        timeout_s = spec.timeout if spec else _actions.BUILTIN_TIMEOUTS[action]
        deadline = Deadline.from_timeout_ms(env.timeout_ms or timeout_s * 1000)
        agent = cls(env, config, deadline, log)
        try:
            code, reason = agent._guarded(action, [OCFError(OCF.ERR_CONFIGURED, e) for e in errors])
        except BaseException as exc:
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                raise
            code, reason = agent._unexpected(action, exc)
        if action in ("monitor", "stop"):
            _publish_health(cls.name, env, HEALTH.get(code, "") if action == "monitor" else "", deadline, log)
        if code not in SUCCESS_CODES and reason:
            if code == OCF.NOT_RUNNING:
                log.info(f"{action} returned {code.name}: {reason}")
            else:
                log.error(f"{action} failed ({code.name}): {reason}")
            _exit_reason(environ, log.redact(reason))
        return code

    def _guarded(self, action: str, problems: list[OCFError]) -> tuple[OCF, str]:
        try:
            if not problems:
                problems = list(self.validate())
            if problems:
                return self._with_problems(action, problems)
            if action == "validate-all":
                return OCF.SUCCESS, ""
            handler = getattr(self, self.action_specs[action].method)
            result = handler()
            return _normalise(result), ""
        except OCFError as err:
            return err.code, err.reason

    def _with_problems(self, action: str, problems: list[OCFError]) -> tuple[OCF, str]:
        reason = "; ".join(p.reason for p in problems)
        if action == "stop":
            self.log.warning(f"stop with an invalid configuration: {reason}")
            return self.stop_unconfigured(problems), reason
        if self.env.is_probe:
            self.log.info(f"probe with an invalid configuration: {reason}")
            return self.probe_unconfigured(problems), ""
        worst = min(problems, key=lambda p: SEVERITY.index(p.code) if p.code in SEVERITY else len(SEVERITY))
        return worst.code, reason

    def _unexpected(self, action: str, exc: BaseException) -> tuple[OCF, str]:
        import traceback

        self.log.error(f"{action}: unexpected error\n" + "".join(traceback.format_exception(exc)))
        return OCF.ERR_GENERIC, f"{action} failed unexpectedly: {type(exc).__name__}: {exc}"


def _publish_health(agent: str, env: Environment, health: str, deadline: Deadline, log: Logger) -> None:
    """Set ``<resource>-health`` to ``health`` on this node, or delete it when ``health`` is empty.

    Only when it changes (the last value published is kept in the state directory): a
    crm_attribute call is a process and a round trip to the attribute manager, a file read is not.
    A failure is logged and retried by the next monitor.
    """
    from agents.ocf.state import StateDir

    state = StateDir(env.rsctmp, agent, env.instance)
    if (state.read(HEALTH_STATE_FILE) or "") == health:
        return
    import subprocess  # only now: its import costs more than the rest of an unchanged case

    primitive = env.instance.split(":", 1)[0]  # one attribute per node for all clone instances
    argv = ["crm_attribute", "-l", "reboot", "-n", f"{primitive}-health",
            *(["-N", env.node] if env.node else []), *(["-v", health] if health else ["-D"])]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=deadline.timeout(HEALTH_CAP_S))
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning(f"publishing {primitive}-health failed: {type(exc).__name__}")
        return
    if done.returncode != 0:
        log.warning(f"publishing {primitive}-health failed: crm_attribute exited {done.returncode}")
    elif health:
        state.write(HEALTH_STATE_FILE, health)
    else:
        state.remove(HEALTH_STATE_FILE)


def _overlong_instance(env: Environment, environ: Mapping[str, str]) -> OCF:
    """A resource name too long for the state files named after it: nothing can run under it.

    Start refuses it, so stop and a probe know that nothing of it runs here.
    """
    if env.action == "stop":
        return OCF.SUCCESS
    if env.is_probe:
        return OCF.NOT_RUNNING
    _exit_reason(environ, f"the resource name is {len(env.instance)} characters long; at most "
                          f"{MAX_INSTANCE_LENGTH} are supported (state files are named after it)")
    return OCF.ERR_CONFIGURED


def _normalise(result: object) -> OCF:
    if isinstance(result, OCF):
        return result
    if isinstance(result, int) and result in OCF._value2member_map_:
        return OCF(result)
    return OCF.ERR_GENERIC


def _exit_reason(environ: Mapping[str, str], reason: str) -> None:
    prefix = environ.get("OCF_EXIT_REASON_PREFIX", "ocf-exit-reason:")
    sys.stderr.write(f"{prefix}{one_line(reason)}\n")
