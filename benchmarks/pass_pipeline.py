"""The pass pipeline's overheads: what the copy each pass makes (copy_graph), the
reorder that puts a fused / factored node in its place and the IR lint cost of
`apply_passes` (GPT-2 and Llama 2 70B, each with a fusion and a quantize), and
what the passes cost in `strata check` (strata.check of the same files, in one
process: interpreter start-up and imports not included).

"before" is the pipeline as it was: a reorder that copied the pass's graph
again (written out below) and a lint after every pass (an `on_pass` hook, with
apply_passes' own lint off); "now" is the one in strata: a reorder in place and
one lint at the end.  The two take turns in one process, the order flipped each
round; medians and minima of CPU time (less bent than wall time by other
processes on a shared machine), with the load average.

    python benchmarks/pass_pipeline.py [--rounds 7] [--only gpt2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import strata  # noqa: E402
import strata.passes  # noqa: E402
from strata.compiler import build_text, ir  # noqa: E402
from strata.compiler.ir_copy import copy_graph  # noqa: E402
from strata.passes import _rewrite  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PASSES = 'passes {\n  fuse_qkv\n  quantize(int8_dynamic, on="mlp")\n}\n'
SPECS = ["gpt2", "llama2_70b"]
IN_PLACE = _rewrite.reorder


def copying_reorder(g, order):
    """The reorder before: a second copy of the pass's graph, rebuilt in `order`."""
    h = g.__class__()
    h.graph.update(g.graph)
    for n in order:
        h.add_node(n, **g.nodes[n])
    for u, v, d in g.edges(data=True):
        h.add_edge(u, v, **d)
    return h


def before(g):
    _rewrite.reorder = copying_reorder
    return strata.passes.apply_passes(g, lint=False, on_pass=lambda p, a, b: ir.lint(b))


def now(g):
    _rewrite.reorder = IN_PLACE
    return strata.passes.apply_passes(g)


def shares(g, rounds: int) -> dict[str, float]:
    """Of the `before` pipeline's CPU time on `g`, over `rounds` runs: the part
    each overhead took."""
    spent = {"copy": 0.0, "reorder": 0.0, "lint": 0.0}

    def timed(key, fn):
        def run(*a, **k):
            c = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.process_time() - c
        return run

    users = [m for name, m in sys.modules.items() if name.startswith("strata.passes.")
             and getattr(m, "copy_graph", None) is copy_graph]
    for m in users:
        m.copy_graph = timed("copy", copy_graph)
    lint, ir.lint = ir.lint, timed("lint", ir.lint)
    try:
        _rewrite.reorder = timed("reorder", copying_reorder)
        c = time.process_time()
        for _ in range(rounds):
            strata.passes.apply_passes(g, lint=False, on_pass=lambda p, a, b: ir.lint(b))
        total = time.process_time() - c
    finally:
        ir.lint = lint
        _rewrite.reorder = IN_PLACE
        for m in users:
            m.copy_graph = copy_graph
    return {k: v / total for k, v in spent.items()}


def median_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1e3


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", choices=SPECS, help="one spec (a quick run)")
    return ap


def main() -> None:
    args = parser().parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        for name in [args.only] if args.only else SPECS:
            measure(name, Path(tmp), args.rounds)
    print(f"load average {os.getloadavg()[0]:.2f} at the end (medians of {args.rounds} rounds)")


def measure(name: str, tmp: Path, rounds: int) -> None:
    path = tmp / f"{name}.arch"  # the spec + the passes, beside the specs it imports
    path.write_text((ROOT / "specs" / f"{name}.arch").read_text() + PASSES)
    for other in (ROOT / "specs").glob("*.arch"):
        if not (tmp / other.name).exists():
            (tmp / other.name).write_text(other.read_text())
    g = build_text(path.read_text(), str(path))
    assert ir.format_table(before(g)) == ir.format_table(now(g))  # the same result
    ways = {"before": before, "now": now}
    cpu: dict[str, list[float]] = {k: [] for k in ways}
    check: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(rounds + 1):  # round 0 warms up
        for k in (list(ways) if r % 2 else list(reversed(ways))):
            c = time.process_time()
            ways[k](g)
            t = time.process_time() - c
            _rewrite.reorder = copying_reorder if k == "before" else IN_PLACE  # a check lints nothing
            c = time.process_time()
            strata.check(str(path))
            u = time.process_time() - c
            _rewrite.reorder = IN_PLACE
            if r:
                cpu[k].append(t)
                check[k].append(u)
    part = shares(g, rounds)
    print(f"{name} + 2 passes, {len(g):,} IR nodes")
    print("  before, of apply_passes' CPU: " + ", ".join(f"{k} {v:.0%}" for k, v in part.items()))
    for label, t in (("apply_passes", cpu), ("strata.check", check)):
        b, n = median_ms(t["before"]), median_ms(t["now"])
        lo_b, lo_n = min(t["before"]) * 1e3, min(t["now"]) * 1e3
        print(f"  {label}   before {b:7.1f} ms (min {lo_b:6.1f})   now {n:7.1f} ms (min {lo_n:6.1f})   "
              f"now/before {n / b:.2f} (min {lo_n / lo_b:.2f})")


if __name__ == "__main__":
    main()
