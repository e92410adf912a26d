"""crmtool: one cluster description → a checked, simulated, safely applied CIB.

The only module that prints and exits, with the statuses of crmtool.exits.
Every command and flag is declared once, in COMMANDS and the Flag constants.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Literal, NamedTuple

from agents.registry import PROVIDER
from crmtool.exits import Exit
from crmtool.findings import TOML_SYNTAX, CrmtoolError, DescriptionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    import tempfile
    from collections.abc import Callable
    from typing import NoReturn

    from crmtool.pipeline import Result

STDIN = "-"
SOURCE_TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cib-templates")


class Context:
    def __init__(self, args: argparse.Namespace, templates_dir: str, provider: str) -> None:
        self.args = args
        self.templates_dir = templates_dir
        self.provider = provider
        self.tmp: tempfile.TemporaryDirectory[str] | None = None

    def result(self) -> Result:
        from crmtool import pipeline

        site = self.args.site
        if site == STDIN:
            result = pipeline.from_text(self.stdin_text(), self.templates_dir, self.provider)
        else:
            result = pipeline.from_file(site, self.templates_dir, self.provider)
        for finding in result.warnings:
            err(str(finding))
        return result

    def stdin_text(self) -> str:
        from crmtool.findings import Finding

        try:
            return sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DescriptionError([Finding(TOML_SYNTAX, STDIN, str(exc))]) from None

    def cib(self) -> str | None:
        """--cib as a path: ``-`` reads the CIB from standard input into a private file."""
        path: str | None = getattr(self.args, "cib", None)
        if path != STDIN:
            return path
        import tempfile

        if getattr(self.args, "site", None) == STDIN:
            raise CrmtoolError("standard input can hold the description or the CIB, not both", Exit.USAGE)
        if self.args.command == "apply":
            raise CrmtoolError(f"apply {CIB.option} {STDIN} has no file to write the result to: name the CIB "
                               "file", Exit.USAGE)
        if self.tmp is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="crmtool-cib-")
        copy = os.path.join(self.tmp.name, "cib.xml")
        if not os.path.exists(copy):
            write_file(copy, sys.stdin.buffer.read())
        return copy

    def output(self, data: bytes) -> None:
        path = getattr(self.args, "output", None)
        if path:
            write_file(path, data)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()


def err(line: str) -> None:
    sys.stderr.write(line + "\n")


def write_file(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise CrmtoolError(f"cannot write {path}: {exc.strerror}", Exit.CANTCREAT) from None


def replace_file(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` atomically: a new file in the same directory renamed over it.

    A symlink at ``path`` is replaced, never followed; readers see the old file or the new one.
    """
    import tempfile

    directory = os.path.dirname(path) or "."
    temp = None
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        temp = None
    except OSError as exc:
        raise CrmtoolError(f"cannot write {path}: {exc.strerror}", Exit.CANTCREAT) from None
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)


def _closed_stdout() -> Exit:
    """The reader went away (``| head``): quiet, as a shell tool killed by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush goes nowhere
    os.close(devnull)
    return Exit.BROKEN_PIPE


# Commands ------------------------------------------------------------------


def cmd_render(ctx: Context) -> Exit:
    from crmtool import pacemaker, render, validate

    configuration = ctx.result().configuration
    if ctx.args.live or ctx.args.cib:
        if ctx.args.full:
            raise CrmtoolError(f"{FULL.option} renders a new CIB; {LIVE.option}/{CIB.option} render onto the "
                               "current one", Exit.USAGE)
        from crmtool import apply

        ctx.output(render.to_bytes(apply.onto(configuration, ctx.cib())))
    elif ctx.args.full:
        cib = pacemaker.full_cib(configuration)
        validate.validate(cib)
        ctx.output(render.to_bytes(cib))
    else:
        ctx.output(render.to_bytes(configuration))
    return Exit.OK


def cmd_check(ctx: Context) -> Exit:
    result = ctx.result()
    warnings = len(result.warnings)
    desc = result.description
    if desc.haproxy is not None:
        from crmtool import haproxy

        text = haproxy.generate(desc, ctx.provider)
        found = haproxy.check_config(desc, ctx.provider, text) if text is not None else []
        if any(f.is_error for f in found):
            raise DescriptionError(found)
        for finding in found:
            err(str(finding))
        warnings += len(found)
    print(f"{ctx.args.site}: ok ({warnings} warning(s))")
    return Exit.OK


def cmd_verify(ctx: Context) -> Exit:
    from crmtool import verify

    configuration = ctx.result().configuration
    complaints = verify.verify(configuration)
    for line in complaints:
        err(line)
    if complaints:
        return Exit.CONFIG
    print(f"{ctx.args.site}: crm_verify clean")
    return Exit.OK


def cmd_simulate(ctx: Context) -> Exit:
    from crmtool import simulate

    result = ctx.result()
    reports = simulate.run_scenarios(result, ctx.args.scenario or None)
    failed = 0
    for report in reports:
        print(report.text())
        failed += not report.ok
    if failed:
        err(f"{failed} of {len(reports)} scenario(s) failed")
        return Exit.ERROR
    print(f"{len(reports)} scenario(s) passed")
    return Exit.OK


def cmd_diff(ctx: Context) -> Exit:
    from crmtool import apply, render

    plan = apply.plan(ctx.result().configuration, ctx.cib())
    if plan.patch is None:
        print("no changes")
        return Exit.OK
    ctx.output(render.to_bytes(plan.patch))
    return Exit.OK


def cmd_apply(ctx: Context) -> Exit:
    from crmtool import apply, render

    if ctx.args.patch:
        print(f"applied: version {apply.commit_file(ctx.args.patch, ctx.cib())}")
        return Exit.OK
    plan = apply.plan(ctx.result().configuration, ctx.cib())
    if plan.patch is None:
        print(f"no changes (version {plan.epoch_text()} kept)")
        return Exit.OK
    if ctx.args.dry_run:
        sys.stdout.buffer.write(render.to_bytes(plan.patch))
        for line in apply.simulated_transition(plan):
            print(line)
        return Exit.OK
    new_epoch = apply.commit(plan)
    print(f"applied: version {plan.epoch_text()} -> {new_epoch}")
    return Exit.OK


def cmd_haproxy(ctx: Context) -> Exit:
    from crmtool import haproxy

    desc = ctx.result().description
    text = haproxy.generate(desc, ctx.provider)
    if text is None:
        raise CrmtoolError("the description has no [haproxy] table: nothing to generate", Exit.DATAERR)
    path = getattr(ctx.args, "output", None)
    if path:
        replace_file(path, text.encode())
    else:
        sys.stdout.write(text)
    return Exit.OK


def cmd_pcs(ctx: Context) -> Exit:
    from crmtool import pcs

    script = pcs.script(ctx.result().description, force=ctx.args.force)
    ctx.output(script.encode())
    return Exit.OK


def cmd_graph(ctx: Context) -> Exit:
    from crmtool import graph

    dot = graph.dot(ctx.result().description)
    if ctx.args.svg:
        write_file(ctx.args.svg, graph.svg(dot))
    ctx.output(dot.encode())
    return Exit.OK


def cmd_agents(ctx: Context) -> Exit:
    from crmtool import agents

    print(agents.describe(ctx.provider), end="")
    return Exit.OK


def cmd_codes(ctx: Context) -> Exit:
    from crmtool.findings import CODES

    for code in CODES.values():
        print(f"{code.code} {code.name} ({code.severity}): {code.summary}")
    return Exit.OK


class Flag(NamedTuple):
    names: tuple[str, ...]
    help: str
    action: Literal["store", "store_true", "append"] = "store"

    @property
    def option(self) -> str:
        """The name messages use: the long option (``--cib``), or the positional's name."""
        return self.names[-1]

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(*self.names, help=self.help, action=self.action)


# crmtool's own option (before the command); the commands' flags follow.
TEMPLATES = Flag(("--templates",), "directory of the profiles (cib-templates)")

SITE = Flag(("site",), "the site description (TOML; - for standard input)")
OUTPUT = Flag(("-o", "--output"), "write to this file instead of stdout")
CIB = Flag(("--cib",), "a CIB file to work on (default: $CIB_file or the live cluster; - for standard input, "
                       "except with apply)")
FULL = Flag(("--full",), "a whole CIB from cibadmin --empty", "store_true")
LIVE = Flag(("--live",), "merged onto the current CIB ($CIB_file, the live cluster or --cib) as apply would, "
                         "for review; a cibadmin --replace of it has no compare-and-swap: use apply",
            "store_true")
SCENARIO = Flag(("--scenario",), "run only this scenario (repeatable)", "append")
DRY_RUN = Flag(("--dry-run",), "show the patch and the transition only", "store_true")
PATCH = Flag(("--patch",), "apply a patch saved by `diff -o` (refused if the CIB changed since; - for "
                           "standard input)")
FORCE = Flag(("--force",), "add --force to resource creation", "store_true")
SVG = Flag(("--svg",), "also write an SVG with Graphviz")


class Command(NamedTuple):
    run: Callable[[Context], Exit]
    help: str
    flags: tuple[Flag, ...]


COMMANDS: dict[str, Command] = {
    "render": Command(cmd_render, "print the CIB configuration (--full: a whole CIB with nodes)",
                      (SITE, OUTPUT, CIB, FULL, LIVE)),
    "check": Command(cmd_check, "check the description, report every problem with its code", (SITE,)),
    "verify": Command(cmd_verify, "run crm_verify on the rendered configuration", (SITE,)),
    "simulate": Command(cmd_simulate, "simulate cold start, node and resource failures with crm_simulate",
                        (SITE, SCENARIO)),
    "diff": Command(cmd_diff, "show the versioned patch from the live CIB (or CIB_file) to the description",
                    (SITE, OUTPUT, CIB)),
    "apply": Command(cmd_apply, "apply the patch with an epoch compare-and-swap",
                     (SITE, CIB, DRY_RUN, PATCH)),
    "haproxy": Command(cmd_haproxy, "print HAProxy's configuration for the APIs the description fronts "
                                    "(-o FILE: written atomically, mode 0644)", (SITE, OUTPUT)),
    "pcs": Command(cmd_pcs, "print the equivalent pcs -f command script", (SITE, OUTPUT, FORCE)),
    "graph": Command(cmd_graph, "print the order/colocation graph as DOT (--svg FILE: also an SVG)",
                     (SITE, OUTPUT, SVG)),
    "agents": Command(cmd_agents, "list our agents and their parameters", ()),
    "codes": Command(cmd_codes, "list the report codes of check", ()),
}


def parser() -> argparse.ArgumentParser:
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse exits 2 on bad usage; Pacemaker's tools say 64."""

        def error(self, message: str) -> NoReturn:  # type: ignore[override]
            self.print_usage(sys.stderr)
            err(f"{self.prog}: {message}")
            raise SystemExit(Exit.USAGE)

    top = Parser(prog="crmtool", description=__doc__.splitlines()[0])
    TEMPLATES.add_to(top)
    sub = top.add_subparsers(dest="command", required=True, metavar="command")
    for name, command in COMMANDS.items():
        cmd = sub.add_parser(name, help=command.help, description=command.help)
        for flag in command.flags:
            flag.add_to(cmd)
    return top


def main(argv: list[str] | None = None, templates_dir: str | None = None,
         provider: str = PROVIDER) -> None:
    args = parser().parse_args(argv)
    ctx = Context(args, args.templates or templates_dir or SOURCE_TEMPLATES, provider)
    handler = COMMANDS[args.command].run
    code: Exit
    try:
        code = handler(ctx)
        sys.stdout.flush()  # a closed pipe is reported here, not by the interpreter's exit
    except DescriptionError as exc:
        for finding in exc.findings:
            err(str(finding))
        err(f"crmtool: {exc.message}")
        code = exc.exit_code
    except CrmtoolError as exc:
        err(f"crmtool: {exc.message}")
        code = exc.exit_code
    except KeyboardInterrupt:
        code = Exit.INTERRUPTED
    except BrokenPipeError:
        code = _closed_stdout()
    except Exception as exc:  # last line of defence: a bug is exit 70, not a traceback
        if os.environ.get("CRMTOOL_DEBUG"):
            raise
        err(f"crmtool: internal error (a crmtool bug; CRMTOOL_DEBUG=1 shows the traceback): {exc!r}")
        code = Exit.SOFTWARE
    finally:
        if ctx.tmp is not None:
            ctx.tmp.cleanup()
    raise SystemExit(code)
