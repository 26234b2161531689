"""Benchmark: collisions in every shipped diagram as a reader sees it, and the
review PNGs in docs/img/.

    python benchmarks/diagram_collisions.py            # specs x levels x renderers (96 drawings)
    python benchmarks/diagram_collisions.py --all      # also --unfold, LR, --after-passes, synthetic
    python benchmarks/diagram_collisions.py --png      # (re)write docs/img/*.png as well
    python benchmarks/diagram_collisions.py --time     # Llama 2 70B, op level: time per drawing

Each drawing is laid out by headless Chromium (Mermaid through mermaid.js, as
GitHub draws it; Graphviz as the SVG `dot -Tsvg` writes) and measured by
tests/render/collisions.js: a cluster title over a node, an edge through a title,
an edge label on a node or a title, overlapping nodes or titles.  One line per
drawing with collisions, then the totals by kind.  Needs node, node_modules
(`npm ci`), Chromium at /usr/bin/chromium (or $CHROMIUM) and Graphviz.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from strata.compiler import build_file, build_text  # noqa: E402
from strata.passes import apply_passes  # noqa: E402
from tests.render.geometry import (  # noqa: E402
    DEEP,
    RENDERERS,
    SHIPPED,
    WIDE,
    Drawing,
    draw,
    measure,
    unavailable,
)

LEVELS = ("model", "block", "op")
# The reviewable pictures: name -> (spec, level, renderer, options)
PNGS = {
    "gpt2.block.mermaid": ("gpt2", "block", "mermaid", {}),
    "gpt2.block.graphviz": ("gpt2", "block", "graphviz", {}),
    "llama2_7b.op.mermaid": ("llama2_7b", "op", "mermaid", {}),
    "transformer_seed.model.passes.graphviz": ("transformer_seed", "model", "graphviz",
                                               {"after_passes": True}),
    "t5_small.model.LR.mermaid": ("t5_small", "model", "mermaid", {"direction": "LR"}),
}


def graphs() -> dict[str, object]:
    out = {s: build_file(ROOT / "specs" / f"{s}.arch") for s in SHIPPED}
    out["deep"] = build_text(DEEP, "deep.arch")
    out["wide"] = build_text(WIDE, "wide.arch")
    return out


def matrix(every: bool) -> list[tuple[str, str, str, dict]]:
    """(spec, level, renderer, options) of each drawing measured."""
    specs = SHIPPED + (("deep", "wide") if every else ())
    variants = [{}]
    if every:
        variants = [{"unfold": u, "direction": d} for u in (False, True) for d in ("TB", "LR")]
    out = []
    for spec in specs:
        passes = every and spec in ("transformer_seed", "tiny_shakespeare")
        for level in LEVELS:
            for renderer in RENDERERS:
                for v in variants:
                    out.append((spec, level, renderer, v))
                    if passes:
                        out.append((spec, level, renderer, {**v, "after_passes": True}))
    return out


def name_of(spec: str, level: str, renderer: str, opts: dict) -> str:
    tags = [t for t, on in (("unfold", opts.get("unfold")), ("LR", opts.get("direction") == "LR"),
                            ("passes", opts.get("after_passes"))) if on]
    return ".".join([spec, level, *tags, renderer])


def drawing(gs: dict, spec: str, level: str, renderer: str, opts: dict) -> Drawing:
    g = gs[spec]
    if opts.get("after_passes"):
        g = apply_passes(g)
    kw = {k: v for k, v in opts.items() if k != "after_passes"}
    return draw(name_of(spec, level, renderer, opts), g, level, renderer, **kw)


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--all", action="store_true", help="every option combination, synthetic specs")
    ap.add_argument("--png", action="store_true", help="write the review PNGs to docs/img/")
    ap.add_argument("--time", action="store_true", help="time Llama 2 70B at op level")
    ap.add_argument("--repeat", type=int, default=5)
    return ap


def main() -> None:
    args = parser().parse_args()
    if why := unavailable():
        sys.exit(f"cannot measure here: {why}")
    gs = graphs()
    if args.time:
        return timing(gs, args.repeat)
    cases = matrix(args.all)
    ds = [drawing(gs, *c) for c in cases]
    png = {}
    if args.png:
        for name, (spec, level, renderer, opts) in PNGS.items():
            d = drawing(gs, spec, level, renderer, opts)
            ds.append(Drawing(f"png:{name}", d.renderer, d.text))
            png[f"png:{name}"] = ROOT / "docs" / "img" / f"{name}.png"
    res = measure(ds, png)
    kinds: Counter = Counter()
    dirty = 0
    for d in ds:
        r = res[d.name]
        if d.name.startswith("png:"):
            continue
        if not r["ok"]:
            print(f"{d.name:50s} FAILED: {r['error']}")
            continue
        n = len(r["collisions"])
        kinds.update(c["kind"] for c in r["collisions"])
        if n:
            dirty += 1
            print(f"{d.name:50s} {n:3d}  " + ", ".join(
                f"{k} {v}" for k, v in Counter(c["kind"] for c in r["collisions"]).items()))
    print(f"\n{len(cases)} drawings, {dirty} with collisions, {sum(kinds.values())} collisions")
    for k, v in sorted(kinds.items()):
        print(f"  {k:12s} {v}")
    for name, path in png.items():
        print(f"wrote {path.relative_to(ROOT)}")


def timing(gs: dict, repeat: int) -> None:
    """Llama 2 70B at op level: strata's source (+ dot -Tsvg), the browser's layout."""
    cases = [("llama2_70b", "op", r, {}) for r in RENDERERS]
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(repeat):
        ds = [drawing(gs, *c) for c in cases]
        res = measure(ds)
        for d in ds:
            runs.setdefault(d.name, []).append((d.source_ms, res[d.name]["ms"]))
    print(f"Llama 2 70B, op level, median of {repeat} (ms):")
    print(f"{'drawing':32s} {'source':>8s} {'browser':>8s} {'total':>8s} collisions")
    for d in ds:
        src = statistics.median(a for a, _ in runs[d.name])
        web = statistics.median(b for _, b in runs[d.name])
        print(f"{d.name:32s} {src:8.1f} {web:8.1f} {src + web:8.1f} "
              f"{len(res[d.name]['collisions'])}")


if __name__ == "__main__":
    main()
