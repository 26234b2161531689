"""Regenerate docs/img/*.svg (the pictures in docs/diagrams.md).

    python -m tests.render.make_docs_images

Graphviz pictures come from `dot -Tsvg`; the Mermaid pictures from mermaid.js in
headless Chromium (tests/render/render_mermaid.mjs; needs `npm ci`).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from strata.backends.diagram.graphviz import to_dot
from strata.backends.diagram.mermaid import to_mermaid
from strata.compiler import build_file
from strata.passes import apply_passes
from tests.render import mermaid_js

ROOT = Path(__file__).resolve().parents[2]
IMG = ROOT / "docs" / "img"


def main() -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    graphs = {s: build_file(ROOT / "specs" / f"{s}.arch")
              for s in ("gpt2", "llama2_7b", "transformer_base")}
    graphs["transformer_seed"] = apply_passes(build_file(ROOT / "specs" / "transformer_seed.arch"))
    mermaid = {}
    for name, g in graphs.items():
        for level in ("model", "block", "op"):
            dot = to_dot(g, level)
            svg = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True,
                                 check=True).stdout
            (IMG / f"{name}.{level}.svg").write_bytes(svg)
        if name.startswith("transformer"):
            mermaid[f"{name}.model.mermaid"] = to_mermaid(g, "model")
    mermaid["transformer_seed.block.mermaid"] = to_mermaid(graphs["transformer_seed"], "block")
    if mermaid_js.unavailable() is None:
        with tempfile.TemporaryDirectory() as tmp:
            res = mermaid_js.render_all(mermaid, tmp)
            for name, r in res.items():
                assert r["ok"], (name, r["error"])
                (IMG / f"{name}.svg").write_bytes((Path(tmp) / f"{name}.svg").read_bytes())
    for p in sorted(IMG.glob("*.svg")):
        print(f"{p.relative_to(ROOT)}  {p.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
