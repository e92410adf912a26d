"""``make bench``: every benchmark module of this package, in one run."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import bench
from bench.core import Bench, machine_line, render_table

SKIP = frozenset(("core", "__main__"))
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write_into(readme: str, runner: Bench, header: str) -> None:
    """Replace the text between the bench markers of ``readme`` with this run's tables."""
    with open(readme, encoding="utf-8") as handle:
        text = handle.read()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    tables = "\n".join(render_table(title, head, rows).replace("### ", "#### ", 1)
                       for title, head, rows in runner.sections)
    with open(readme, "w", encoding="utf-8") as handle:
        handle.write(text[:start] + f"\n{header}\n\n{tables}" + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--write", metavar="README", help="also put the tables into this file")
    parser.add_argument("only", nargs="*", help="run only these benchmark modules")
    args = parser.parse_args()
    runner = Bench(args.rounds)
    header = f"`make bench` on {machine_line()}, {args.rounds} rounds, medians."
    print(header + "\n", flush=True)
    for module in sorted(m.name for m in pkgutil.iter_modules(bench.__path__)):
        if module in SKIP or (args.only and module not in args.only):
            continue
        importlib.import_module(f"bench.{module}").run(runner)
    if args.write:
        write_into(args.write, runner, header)


if __name__ == "__main__":
    main()
