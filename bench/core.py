"""Shared machinery of ``make bench``: timing commands side by side.

Each benchmark module in this package defines ``run(bench: Bench)``; the
runner calls them in order and prints one markdown table per section.
Competing commands are run alternately in one invocation (A, B, A, B, ...)
so that machine noise hits both sides alike; medians are reported.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

BARE_INTERPRETER = ["/usr/bin/python3", "-I", "-S", "-c", "pass"]


def time_once(argv: Sequence[str], env: Mapping[str, str] | None = None,
              expect: Sequence[int] | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(list(argv), env=None if env is None else dict(env), capture_output=True,
                          check=False)
    elapsed = time.perf_counter() - start
    if expect is not None and done.returncode not in expect:
        raise RuntimeError(f"{argv} exited {done.returncode}, expected {list(expect)}: "
                           f"{done.stderr.decode(errors='replace')[-400:]}")
    return elapsed


def alternate(candidates: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Run each candidate ``rounds`` times, interleaved; return the median seconds of each."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            samples[name].append(fn())
    return {name: statistics.median(values) for name, values in samples.items()}


class Bench:
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.sections: list[tuple[str, list[str], list[list[str]]]] = []
        self._bare: float | None = None

    def bare_interpreter(self) -> float:
        """Median cost of starting the interpreter the agents run on."""
        if self._bare is None:
            self._bare = alternate({"bare": lambda: time_once(BARE_INTERPRETER)}, self.rounds * 2)["bare"]
        return self._bare

    def table(self, title: str, header: list[str], rows: list[list[str]]) -> None:
        self.sections.append((title, header, rows))
        print(render_table(title, header, rows), flush=True)


def render_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f} ×" if theirs > 0 else "n/a"


def machine_line() -> str:
    return f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"
