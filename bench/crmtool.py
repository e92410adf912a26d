"""crmtool: render + check + validate, as a process and in-process by size.

Rows: the default profile (3 controllers) and a 7-controller description
with 60 primitives, each timed as a whole ``crmtool render`` run on the
agents' interpreter and given as a ratio to its bare start; then the
in-process cost of load → check → render → validate for growing
descriptions (fastest round), with the cost per resource, to show it grows
linearly.
"""

from __future__ import annotations

import os
import tempfile
import time

from bench.core import Bench, alternate, ms, ratio, time_once

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "cib-templates")
EXAMPLE = os.path.join(ROOT, "examples", "site.toml")
PROFILE_PRIMITIVES = 8  # drbd, db-fs, mysql, db-vip, keystone, glance-api, nova-api, public-vip
SIZES = (30, 60, 120, 240)


def site_text(nodes: int, primitives: int) -> str:
    """A site over the default profile with ``nodes`` controllers and ``primitives`` primitives in all."""
    lines = ['profile = "openstack-3ctl"', ""]
    for i in range(1, nodes + 1):
        lines += [f"[nodes.ctl{i}]", f'fence = {{ ip = "192.0.2.{100 + i}" }}', ""]
    lines += ['[primitive.db-vip.params]', 'ip = "192.0.2.10"', "",
              '[primitive.public-vip.params]', 'ip = "192.0.2.20"', ""]
    for i in range(max(0, primitives - nodes - PROFILE_PRIMITIVES)):
        name = f"svc{i:03d}"
        lines += [f"[primitive.{name}]", 'agent = "ocf:heartbeat:Dummy"',
                  'ops = [{ name = "monitor", interval = "10s", timeout = "20s" }]', "",
                  f"[colocation.{name}-with-api]", f'rsc = "{name}"', 'with = "keystone-clone"', "",
                  f"[order.{name}-after-db]", 'first = "db"', f'then = "{name}"', 'kind = "Optional"', ""]
    return "\n".join(lines)


def command(site: str) -> list[str]:
    code = (f"import sys; sys.path.insert(0, {ROOT!r}); from crmtool.cli import main; "
            f"main(['render', {site!r}], templates_dir={TEMPLATES!r})")
    return ["/usr/bin/python3", "-I", "-c", code]


def in_process(text: str, rounds: int) -> float:
    from crmtool import load, pipeline, render

    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = pipeline.checked(load.load_text(text, TEMPLATES), "openstack")
        render.to_bytes(result.configuration)
        samples.append(time.perf_counter() - start)
    return min(samples)  # the least disturbed run: other work shares this machine


def run(bench: Bench) -> None:
    bare = bench.bare_interpreter()
    with tempfile.TemporaryDirectory(prefix="crmtool-bench-") as tmp:
        big = os.path.join(tmp, "site-7ctl-60.toml")
        with open(big, "w", encoding="utf-8") as handle:
            handle.write(site_text(7, 60))
        timings = alternate({
            "default": lambda: time_once(command(EXAMPLE), expect=(0,)),
            "big": lambda: time_once(command(big), expect=(0,)),
        }, bench.rounds)
    default_size = 3 + PROFILE_PRIMITIVES
    bench.table("crmtool render + check + validate (whole process)",
                ["description", "ms", "vs bare interpreter"], [
                    ["bare `/usr/bin/python3 -I -S`", ms(bare), "1.00 ×"],
                    [f"default profile, 3 controllers ({default_size} primitives)", ms(timings["default"]),
                     ratio(timings["default"], bare)],
                    ["7 controllers, 60 primitives", ms(timings["big"]), ratio(timings["big"], bare)],
                ])
    in_process(site_text(3, 30), 3)  # warm imports and the schema
    rows = []
    per_resource = []
    for size in SIZES:
        seconds = in_process(site_text(7, size), max(5, bench.rounds))
        per_resource.append(seconds / size)
        rows.append([str(size), ms(seconds), f"{seconds / size * 1e6:.0f}"])
    spread = max(per_resource) / min(per_resource)
    rows.append(["linearity", f"µs/resource max/min = {spread:.2f}",
                 "linear" if spread < 1.5 else "NOT linear"])  # quadratic would give 8 across 30→240
    bench.table("crmtool load → check → render → validate, in-process, 7 controllers",
                ["primitives", "ms", "µs per primitive"], rows)
