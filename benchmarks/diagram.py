"""Benchmark: diagram of Llama 2 70B at op level, build + render, no weights;
and, with --layers N, the growth of `strata summary` / `strata diagram` with depth.

    python benchmarks/diagram.py [--spec specs/llama2_70b.arch] [--level op] [--repeat 5]
    python benchmarks/diagram.py --layers 2000 [--repeat 3]

Times (best of --repeat): building the IR from the spec, and producing the
Mermaid and dot sources from it (folded, as `strata diagram` draws by default),
plus the unfolded dot source.  No tensor is allocated: the IR holds shapes only
(the script checks torch is never imported).

--layers N builds a tiny decoder with `repeat(N)` (and one with N/2) and times
what `strata summary` and `strata diagram` do after parsing, at every level,
folded and unfolded, in CPU seconds of this process (steadier than wall time on
a shared machine; the work is single-threaded); the last column is
time(N) / time(N/2), about 2 when the work is linear in the number of layers.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best(fn, repeat, clock=time.perf_counter):
    times = []
    out = None
    for _ in range(repeat):
        t = clock()
        out = fn()
        times.append(clock() - t)
    return min(times), out


DEEP = """
model deep {{
  d = 8
  block layer {{
    residual {{ layernorm; attention(2, causal=true) }}
    residual {{ layernorm; mlp(16) }}
  }}
  stack decoder(tokens) {{
    embedding(16, d) as wte
    repeat({n}) layer as h
    layernorm as ln_f
    lm_head(tie=wte)
  }}
}}
"""


def deep(layers: int, repeat: int) -> None:
    """Seconds per step for `repeat(layers)` and `repeat(layers // 2)`, and their ratio."""
    import io

    from rich.console import Console

    from strata.backends.diagram.graphviz import to_dot
    from strata.backends.diagram.mermaid import to_mermaid
    from strata.compiler import build_text
    from strata.compiler.summary import print_summary

    def steps(g):
        out = {"summary": lambda: print_summary(g, console=Console(file=io.StringIO(), width=80))}
        for level in ("model", "block", "op"):
            for unfold in (False, True):
                flag = " --unfold" if unfold else ""
                out[f"mermaid {level}{flag}"] = (
                    lambda lv=level, uf=unfold: to_mermaid(g, lv, unfold=uf))
                out[f"dot {level}{flag}"] = lambda lv=level, uf=unfold: to_dot(g, lv, unfold=uf)
        return out

    cpu = time.process_time
    times = {}
    for n in (layers // 2, layers):
        t_build, g = best(lambda n=n: build_text(DEEP.format(n=n)), repeat, cpu)
        times[n] = {"build IR": t_build, **{k: best(f, repeat, cpu)[0] for k, f in steps(g).items()}}
        if n == layers:
            print(f"spec      repeat({n}) of a tiny layer: {g.number_of_nodes():,} IR nodes")
    assert "torch" not in sys.modules, "the diagram path imported torch"
    half = layers // 2
    print(f"{'step (CPU s)':<24}{f'{half} layers':>12}{f'{layers} layers':>12}{'ratio':>8}")
    for k in times[layers]:
        a, b = times[half][k], times[layers][k]
        print(f"{k:<24}{a:>11.2f}s{b:>11.2f}s{b / a:>8.2f}")


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=str(ROOT / "specs" / "llama2_70b.arch"))
    ap.add_argument("--level", default="op")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--layers", type=int, default=None,
                    help="time summary and diagrams of a repeat(N) decoder instead")
    return ap


def main() -> None:
    a = parser().parse_args()
    if a.layers:
        deep(a.layers, a.repeat)
        return

    from strata.backends.diagram.graphviz import to_dot
    from strata.backends.diagram.mermaid import to_mermaid
    from strata.compiler import build_file

    t_build, g = best(lambda: build_file(a.spec), a.repeat)
    t_mmd, mmd = best(lambda: to_mermaid(g, a.level), a.repeat)
    t_dot, dot = best(lambda: to_dot(g, a.level), a.repeat)
    t_unf, dot_u = best(lambda: to_dot(g, a.level, unfold=True), a.repeat)
    assert "torch" not in sys.modules, "the diagram path imported torch"
    svg = None
    if shutil.which("dot"):
        from strata.backends.diagram.graphviz import render_bytes

        t_svg, svg = best(lambda: render_bytes(dot, "svg"), a.repeat)
    print(f"spec      {Path(a.spec).name}: {g.number_of_nodes():,} IR nodes, "
          f"{g.graph['parameters']:,} parameters (none allocated)")
    print(f"build     {t_build * 1000:8.1f} ms")
    print(f"mermaid   {t_mmd * 1000:8.1f} ms  ({len(mmd):,} chars)     build+mermaid "
          f"{(t_build + t_mmd) * 1000:.1f} ms")
    print(f"dot       {t_dot * 1000:8.1f} ms  ({len(dot):,} chars)     build+dot "
          f"{(t_build + t_dot) * 1000:.1f} ms")
    if svg is not None:
        print(f"dot -Tsvg {t_svg * 1000:8.1f} ms  (Graphviz layout of the folded graph, {len(svg):,} bytes)")
    print(f"dot -unf  {t_unf * 1000:8.1f} ms  ({len(dot_u):,} chars, every layer drawn)")


if __name__ == "__main__":
    main()
