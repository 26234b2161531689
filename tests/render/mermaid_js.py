"""Render Mermaid text with mermaid.js in headless Chromium (one launch per batch).

    results = render_all({"gpt2.model": text, ...})   # name -> {"ok", "error"}

`unavailable()` says why rendering cannot run here (no node, chromium or
node_modules), so tests can skip with that reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("render_mermaid.mjs")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def unavailable() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return f"chromium not found at {CHROMIUM}"
    for pkg in ("mermaid/dist/mermaid.min.js", "playwright-core/package.json"):
        if not (ROOT / "node_modules" / pkg).exists():
            return f"node_modules/{pkg} is missing: run `npm ci` in the repository root"
    return None


def render_all(diagrams: dict[str, str], svg_dir: str | Path | None = None,
               timeout: float = 240) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps([{"name": k, "text": v} for k, v in diagrams.items()]))
        cmd = ["node", str(SCRIPT), str(src), str(dst)] + ([str(svg_dir)] if svg_dir else [])
        env = {**os.environ, "CHROMIUM": CHROMIUM}
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env,
                           check=False)
        if r.returncode != 0:
            raise RuntimeError(f"render_mermaid.mjs failed:\n{r.stderr[-3000:]}")
        return {x["name"]: x for x in json.loads(dst.read_text())}
