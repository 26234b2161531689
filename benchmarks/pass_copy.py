"""Running a spec's passes: the copy each pass makes of the graph, `copy.deepcopy`
(before) against strata.compiler.ir_copy.copy_graph (now), in one process,
interleaved (the two take turns, the order flipped each round).  apply_passes
of GPT-2, Llama 2 70B and GPT-2 at 2,000 layers, each with a fusion and a
quantize; medians of CPU time (which other processes on a shared machine bend
less than wall time) and of wall time, with the load average.

    python benchmarks/pass_copy.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import strata.passes  # noqa: E402
from strata.compiler import build_text  # noqa: E402
from strata.compiler.ir_copy import copy_graph  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PASSES = 'passes {\n  fuse_qkv\n  quantize(int8_dynamic, on="mlp")\n}\n'
SPECS = {"gpt2": ("gpt2.arch", None), "llama2_70b": ("llama2_70b.arch", None),
         "gpt2 x 2000 layers": ("gpt2.arch", ("depth = 12", "depth = 2000"))}
# --smoke: the same steps on GPT-2 at 12 and 20 layers (the figures mean nothing)
SMOKE = {"gpt2": ("gpt2.arch", None), "gpt2 x 20 layers": ("gpt2.arch", ("depth = 12", "depth = 20"))}
# the pass modules that bound copy_graph by name (from strata.passes._rewrite import copy_graph)
USERS = [m for name, m in sorted(sys.modules.items()) if name.startswith("strata.passes.")
         and getattr(m, "copy_graph", None) is copy_graph]


def use(fn) -> None:
    for m in USERS:
        m.copy_graph = fn


def graph(file: str, change):
    text = (ROOT / "specs" / file).read_text()
    if change:
        text = text.replace(*change)
    return build_text(text + PASSES, str(ROOT / "specs" / file))


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--smoke", action="store_true", help="small specs only, to test that the script runs "
                    "(the figures mean nothing)")
    return ap


def main() -> None:
    args = parser().parse_args()
    ways = {"deepcopy": copy.deepcopy, "ir_copy": copy_graph}
    print(f"load average {os.getloadavg()[0]:.2f} at the start; {len(USERS)} pass modules switched")
    print(f"{'spec':22} {'IR nodes':>8}  {'deepcopy CPU':>12} {'ir_copy CPU':>12} {'x':>5}"
          f"   {'deepcopy wall':>13} {'ir_copy wall':>12}")
    for label, (file, change) in (SMOKE if args.smoke else SPECS).items():
        g = graph(file, change)
        rounds = args.rounds if len(g) < 10_000 else max(3, args.rounds // 2)
        cpu = {k: [] for k in ways}
        wall = {k: [] for k in ways}
        for r in range(rounds + 1):  # round 0 warms up
            for k in (list(ways) if r % 2 else list(reversed(ways))):
                use(ways[k])
                w, c = time.perf_counter(), time.process_time()
                strata.passes.apply_passes(g)  # it leaves `g` as it was
                if r:
                    cpu[k].append(time.process_time() - c)
                    wall[k].append(time.perf_counter() - w)
        use(copy_graph)
        c = {k: statistics.median(v) * 1e3 for k, v in cpu.items()}
        w = {k: statistics.median(v) * 1e3 for k, v in wall.items()}
        print(f"{label:22} {len(g):>8,}  {c['deepcopy']:>9.1f} ms {c['ir_copy']:>9.1f} ms "
              f"{c['deepcopy'] / c['ir_copy']:>5.1f}   {w['deepcopy']:>10.1f} ms {w['ir_copy']:>9.1f} ms")
    print(f"load average {os.getloadavg()[0]:.2f} at the end (medians of {args.rounds} rounds, "
          f"{max(3, args.rounds // 2)} at 2,000 layers)")


if __name__ == "__main__":
    main()
