"""The runs under the served folder: loss curves from `metrics.jsonl` and the
settings from `run.json`, read the way `strata train` writes them (regular
files inside the run, never through a link, bounded).

A run is a folder holding `metrics.jsonl` or `run.json`: the served folder
itself, or one of its sub-folders (two levels down at most: `runs/x`).

    >>> series([{"step": 1, "train_loss": 2.5}, {"step": 2, "val_loss": 2.1, "val_ppl": 8.2}])
    {'train': [[1, 2.5]], 'val': [[2, 2.1]]}
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from strata.errors import UsageError
from strata.io import read_regular
from strata.serve.files import Root

MAX_METRICS = 1 << 28        # bytes of metrics.jsonl read (over a million steps)
MAX_POINTS = 2000            # points per curve sent to the page: longer runs are thinned
MAX_RUNS = 200


def find_runs(root: Root) -> list[str]:
    """Run folders under the root, relative to it ("." for the root itself)."""
    if root.file:
        return []
    out = []
    for folder, dirs, files in os.walk(root.path):
        depth = len(Path(folder).relative_to(root.path).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < 2 else []
        if "metrics.jsonl" in files or "run.json" in files:
            name = root.name_of(folder)
            if name is not None:
                out.append(name if name else ".")
        if len(out) >= MAX_RUNS:
            break
    return sorted(out)


def read_records(path: Path) -> list[dict]:
    """metrics.jsonl's records; a torn or hand-edited line is skipped."""
    if not os.path.lexists(path):
        return []
    text = read_regular(path, MAX_METRICS, "metrics file", follow=False).decode("utf-8", "replace")
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(rec, dict) and type(rec.get("step")) is int and rec["step"] >= 0:
            out.append(rec)
    return out


def _points(records: list[dict], key: str) -> list[list[float]]:
    pts = [[r["step"], r[key]] for r in records
           if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
           and math.isfinite(r[key])]
    if len(pts) > MAX_POINTS:  # every k-th point, the last one kept
        k = math.ceil(len(pts) / MAX_POINTS)
        pts = pts[::k] + ([pts[-1]] if (len(pts) - 1) % k else [])
    return pts


def series(records: list[dict]) -> dict:
    return {"train": _points(records, "train_loss"), "val": _points(records, "val_loss")}


def run_view(root: Root, name: str) -> dict:
    """One run: its curves and its settings (run.json as it is; {} when absent)."""
    folder = root.resolve(name)
    settings: dict = {}
    if os.path.lexists(folder / "run.json"):
        try:
            settings = json.loads(read_regular(folder / "run.json", 1 << 20, "run record", follow=False))
        except (ValueError, RecursionError, UsageError) as e:  # a damaged record: said, not raised
            settings = {"error": f"run.json: {e}"}
    return {"name": name, **series(read_records(folder / "metrics.jsonl")),
            "settings": settings if isinstance(settings, dict) else {}}
