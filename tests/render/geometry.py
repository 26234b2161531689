"""Collisions in diagrams as a reader sees them: Mermaid drawn by mermaid.js and
Graphviz SVG, both laid out by headless Chromium (one launch per batch), measured
by `collisions.js` (node boxes, cluster titles, edge labels, sampled edge paths).

    drawings = [Drawing("gpt2.block.mermaid", "mermaid", text), ...]
    results = measure(drawings)          # name -> {"ok", "collisions", "ms", ...}

Shared by tests/backends/diagram/test_geometry.py (fails on any collision) and
benchmarks/diagram_collisions.py (counts them, writes the PNGs in docs/img/).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from strata.backends.diagram.graphviz import dot_binary, render_bytes, to_dot
from strata.backends.diagram.mermaid import to_mermaid
from tests.render import mermaid_js

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("measure.mjs")
RENDERERS = ("mermaid", "graphviz")

# Every architecture shipped in specs/ (gpt2.yaml is gpt2.arch in the other surface).
SHIPPED = tuple(sorted(p.stem for p in (ROOT / "specs").glob("*.arch")))

# Synthetic extremes: blocks nested five deep (a title inside a title inside ...),
# and a layer of seven parallel branches (a wide rank) with long names.
DEEP = '''
model deep {
  d = 16
  block e { residual { rmsnorm; mlp(32) } }
  block d4 { repeat(2) e as inner }
  block d3 { d4 as four; residual { layernorm; attention(2, causal=true) } }
  block d2 { repeat(2) d3 as three }
  block d1 { d2 as two; rmsnorm as post }
  stack decoder(tokens) {
    embedding(50, d) as wte
    repeat(3) d1 as one
    lm_head(tie=wte)
  }
}
'''
WIDE = '''
model wide {
  d = 32
  block layer {
    residual {
      layernorm as pre_branch_normalization
      parallel {
        attention(4, causal=true) as causal_attention_branch
        attention(4) as bidirectional_attention_branch
        mlp(64, act=gelu) as gelu_feed_forward_branch
        mlp(64, act=swiglu) as swiglu_feed_forward_branch
        seq { layernorm as inner_norm; mlp(48) as normalized_feed_forward }
        linear(d) as plain_projection_branch
        dropout(0.1) as dropout_branch
      }
    }
  }
  stack decoder(tokens) {
    embedding(100, d) as wte
    repeat(2) layer as layers
    layernorm as ln_f
    lm_head(100)
  }
}
'''


@dataclass(frozen=True)
class Drawing:
    name: str
    renderer: str        # mermaid | graphviz
    text: str            # Mermaid source, or the SVG dot wrote
    source_ms: float = 0.0  # strata's time to write the source (+ dot -Tsvg for Graphviz)


def unavailable() -> str | None:
    """Why drawings cannot be measured here (None when they can)."""
    if dot_binary() is None:
        return "the Graphviz `dot` program is not installed"
    return mermaid_js.unavailable()


def draw(name: str, g, level: str, renderer: str, **kw) -> Drawing:
    """The drawing of graph `g` at `level` by `renderer` (direction=, unfold=)."""
    t = time.perf_counter()
    if renderer == "mermaid":
        text = to_mermaid(g, level, **kw)
    else:
        text = render_bytes(to_dot(g, level, **kw), "svg").decode()
    return Drawing(name, renderer, text, (time.perf_counter() - t) * 1000)


def measure(drawings: list[Drawing], png: dict[str, Path] | None = None,
            timeout: float = 1800) -> dict[str, dict]:
    """Lay out every drawing in one Chromium and measure it: name -> {"ok", "error",
    "ms" (browser time), "items", "collisions": [{"kind", "a", "b"}]}; `png` maps
    names to screenshots to write."""
    png = png or {}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps([{"name": d.name, "renderer": d.renderer, "text": d.text,
                                    "png": str(png[d.name]) if d.name in png else None}
                                   for d in drawings]))
        env = {**os.environ, "CHROMIUM": mermaid_js.CHROMIUM}
        r = subprocess.run(["node", str(SCRIPT), str(src), str(dst)], cwd=ROOT,
                           capture_output=True, text=True, timeout=timeout, env=env, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"measure.mjs failed:\n{r.stderr[-3000:]}")
        return {x["name"]: x for x in json.loads(dst.read_text())}


def describe(collisions: list[dict], limit: int = 6) -> str:
    """A few collisions, one a line, for a failing test's message."""
    lines = [f"  {c['kind']}: {c['a']!r} / {c['b']!r}" for c in collisions[:limit]]
    if len(collisions) > limit:
        lines.append(f"  ... and {len(collisions) - limit} more")
    return "\n".join(lines)
