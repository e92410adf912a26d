"""crmtool: one cluster description → a checked, simulated, safely applied CIB.

The only module that prints and exits.  Exit codes are Pacemaker's: 0 ok,
1 generic, 64 usage, 65 data error in the description, 66 no input, 69 a
tool is unavailable, 70 a crmtool bug, 73 an output file cannot be written,
75 the CIB changed meanwhile (retry), 78 Pacemaker rejects the configuration,
141 the reader of the output went away (as a tool killed by SIGPIPE).
"""

from __future__ import annotations

import os
import sys

from crmtool.findings import CrmtoolError, DescriptionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    import tempfile
    from collections.abc import Callable
    from typing import NoReturn

    from crmtool.pipeline import Result

EXIT_USAGE = 64
STDIN = "-"
EXIT_CANTCREAT = 73
EXIT_CONFIG = 78
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE
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
            raise DescriptionError([Finding("toml-syntax", STDIN, str(exc))]) from None

    def cib(self) -> str | None:
        """--cib as a path: ``-`` reads the CIB from standard input into a private file."""
        path: str | None = getattr(self.args, "cib", None)
        if path != STDIN:
            return path
        import tempfile

        if getattr(self.args, "site", None) == STDIN:
            raise CrmtoolError("standard input can hold the description or the CIB, not both", EXIT_USAGE)
        if self.args.command == "apply":
            raise CrmtoolError("apply --cib - has no file to write the result to: name the CIB file",
                               EXIT_USAGE)
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
        raise CrmtoolError(f"cannot write {path}: {exc.strerror}", EXIT_CANTCREAT) from None


def _closed_stdout() -> int:
    """The reader went away (``| head``): quiet, as a shell tool killed by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush goes nowhere
    os.close(devnull)
    return EXIT_BROKEN_PIPE


# Commands ------------------------------------------------------------------


def cmd_render(ctx: Context) -> int:
    from crmtool import pacemaker, render, validate

    configuration = ctx.result().configuration
    if ctx.args.live or ctx.args.cib:
        if ctx.args.full:
            raise CrmtoolError("--full renders a new CIB; --live/--cib render onto the current one",
                               EXIT_USAGE)
        from crmtool import apply

        ctx.output(render.to_bytes(apply.onto(configuration, ctx.cib())))
    elif ctx.args.full:
        cib = pacemaker.full_cib(configuration)
        validate.validate(cib)
        ctx.output(render.to_bytes(cib))
    else:
        ctx.output(render.to_bytes(configuration))
    return 0


def cmd_check(ctx: Context) -> int:
    result = ctx.result()
    print(f"{ctx.args.site}: ok ({len(result.warnings)} warning(s))")
    return 0


def cmd_verify(ctx: Context) -> int:
    from crmtool import verify

    configuration = ctx.result().configuration
    complaints = verify.verify(configuration)
    for line in complaints:
        err(line)
    if complaints:
        return EXIT_CONFIG
    print(f"{ctx.args.site}: crm_verify clean")
    return 0


def cmd_simulate(ctx: Context) -> int:
    from crmtool import simulate

    result = ctx.result()
    reports = simulate.run_scenarios(result, ctx.args.scenario or None)
    failed = 0
    for report in reports:
        print(report.text())
        failed += not report.ok
    if failed:
        err(f"{failed} of {len(reports)} scenario(s) failed")
        return 1
    print(f"{len(reports)} scenario(s) passed")
    return 0


def cmd_diff(ctx: Context) -> int:
    from crmtool import apply, render

    plan = apply.plan(ctx.result().configuration, ctx.cib())
    if plan.patch is None:
        print("no changes")
        return 0
    ctx.output(render.to_bytes(plan.patch))
    return 0


def cmd_apply(ctx: Context) -> int:
    from crmtool import apply, render

    if ctx.args.patch:
        print(f"applied: version {apply.commit_file(ctx.args.patch, ctx.cib())}")
        return 0
    plan = apply.plan(ctx.result().configuration, ctx.cib())
    if plan.patch is None:
        print(f"no changes (version {plan.epoch_text()} kept)")
        return 0
    if ctx.args.dry_run:
        sys.stdout.buffer.write(render.to_bytes(plan.patch))
        for line in apply.simulated_transition(plan):
            print(line)
        return 0
    new_epoch = apply.commit(plan)
    print(f"applied: version {plan.epoch_text()} -> {new_epoch}")
    return 0


def cmd_pcs(ctx: Context) -> int:
    from crmtool import pcs

    script = pcs.script(ctx.result().description, force=ctx.args.force)
    ctx.output(script.encode())
    return 0


def cmd_graph(ctx: Context) -> int:
    from crmtool import graph

    dot = graph.dot(ctx.result().description)
    if ctx.args.svg:
        write_file(ctx.args.svg, graph.svg(dot))
    ctx.output(dot.encode())
    return 0


def cmd_agents(ctx: Context) -> int:
    from crmtool import agents

    print(agents.describe(ctx.provider), end="")
    return 0


def cmd_codes(ctx: Context) -> int:
    from crmtool.findings import CODES

    for code in CODES.values():
        print(f"{code.code} {code.name} ({code.severity}): {code.summary}")
    return 0


COMMANDS: dict[str, tuple[Callable[[Context], int], str]] = {
    "render": (cmd_render, "print the CIB configuration (--full: a whole CIB with nodes)"),
    "check": (cmd_check, "check the description, report every problem with its code"),
    "verify": (cmd_verify, "run crm_verify on the rendered configuration"),
    "simulate": (cmd_simulate, "simulate cold start, node and resource failures with crm_simulate"),
    "diff": (cmd_diff, "show the versioned patch from the live CIB (or CIB_file) to the description"),
    "apply": (cmd_apply, "apply the patch with an epoch compare-and-swap"),
    "pcs": (cmd_pcs, "print the equivalent pcs -f command script"),
    "graph": (cmd_graph, "print the order/colocation graph as DOT (--svg FILE: also an SVG)"),
    "agents": (cmd_agents, "list our agents and their parameters"),
    "codes": (cmd_codes, "list the report codes of check"),
}
NEEDS_SITE = frozenset(COMMANDS) - {"agents", "codes"}


def parser() -> argparse.ArgumentParser:
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse exits 2 on bad usage; Pacemaker's tools say 64."""

        def error(self, message: str) -> NoReturn:  # type: ignore[override]
            self.print_usage(sys.stderr)
            err(f"{self.prog}: {message}")
            raise SystemExit(EXIT_USAGE)

    top = Parser(prog="crmtool", description=__doc__.splitlines()[0])
    top.add_argument("--templates", help="directory of the profiles (cib-templates)")
    sub = top.add_subparsers(dest="command", required=True, metavar="command")
    for name, (_fn, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name in NEEDS_SITE:
            cmd.add_argument("site", help="the site description (TOML; - for standard input)")
        if name in ("render", "diff", "pcs", "graph"):
            cmd.add_argument("-o", "--output", help="write to this file instead of stdout")
        if name in ("diff", "apply", "render"):
            cmd.add_argument("--cib", help="a CIB file to work on (default: $CIB_file or the live cluster; "
                             "- for standard input, except with apply)")
        extra = {
            "render": [
                ("--full", {"action": "store_true", "help": "a whole CIB from cibadmin --empty"}),
                ("--live", {"action": "store_true",
                            "help": "merged onto the current CIB ($CIB_file, the live cluster or --cib) as "
                                    "apply would, for review; a cibadmin --replace of it has no "
                                    "compare-and-swap: use apply"}),
            ],
            "simulate": [("--scenario", {"action": "append", "help": "run only this scenario (repeatable)"})],
            "apply": [
                ("--dry-run", {"action": "store_true", "help": "show the patch and the transition only"}),
                ("--patch", {"help": "apply a patch saved by `diff -o` (refused if the CIB changed since; "
                                    "- for standard input)"}),
            ],
            "pcs": [("--force", {"action": "store_true", "help": "add --force to resource creation"})],
            "graph": [("--svg", {"help": "also write an SVG with Graphviz"})],
        }
        for flag, options in extra.get(name, []):
            cmd.add_argument(flag, **options)  # type: ignore[arg-type]
    return top


def main(argv: list[str] | None = None, templates_dir: str | None = None,
         provider: str = "openstack") -> None:
    args = parser().parse_args(argv)
    ctx = Context(args, args.templates or templates_dir or SOURCE_TEMPLATES, provider)
    handler = COMMANDS[args.command][0]
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
        code = 130
    except BrokenPipeError:
        code = _closed_stdout()
    except Exception as exc:  # last line of defence: a bug is exit 70, not a traceback
        if os.environ.get("CRMTOOL_DEBUG"):
            raise
        err(f"crmtool: internal error (a crmtool bug; CRMTOOL_DEBUG=1 shows the traceback): {exc!r}")
        code = 70
    finally:
        if ctx.tmp is not None:
            ctx.tmp.cleanup()
    raise SystemExit(code)
