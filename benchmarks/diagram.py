"""Benchmark: diagram of Llama 2 70B at op level, build + render, no weights.

    python benchmarks/diagram.py [--spec specs/llama2_70b.arch] [--level op] [--repeat 5]

Times (best of --repeat): building the IR from the spec, and producing the
Mermaid and dot sources from it (folded, as `strata diagram` draws by default),
plus the unfolded dot source.  No tensor is allocated: the IR holds shapes only
(the script checks torch is never imported).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best(fn, repeat):
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=str(ROOT / "specs" / "llama2_70b.arch"))
    ap.add_argument("--level", default="op")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()

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
