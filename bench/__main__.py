"""``make bench``: every benchmark module of this package, in one run."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import bench
from bench.core import Bench, machine_line

SKIP = frozenset(("core", "__main__"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("only", nargs="*", help="run only these benchmark modules")
    args = parser.parse_args()
    runner = Bench(args.rounds)
    print(f"benchmarks on {machine_line()}, {args.rounds} rounds, medians\n", flush=True)
    for module in sorted(m.name for m in pkgutil.iter_modules(bench.__path__)):
        if module in SKIP or (args.only and module not in args.only):
            continue
        importlib.import_module(f"bench.{module}").run(runner)


if __name__ == "__main__":
    main()
