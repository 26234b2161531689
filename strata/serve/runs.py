"""The runs under the served folder: loss curves from `metrics.jsonl` and the
settings from `run.json`, read the way `strata train` writes them (regular
files inside the run, never through a link, bounded).

A run is a folder holding `metrics.jsonl` or `run.json`: the served folder
itself, or one of its sub-folders (two levels down at most: `runs/x`).

metrics.jsonl is streamed (`strata.train.metrics.iter_records`: memory is one
line's) into two `Curve`s (at most 65,536 points each, thinned evenly), then
thinned again to MAX_POINTS for the page, so the page is polled as a run grows
without the file ever being held (a 53 MB file of tiny lines once cost 850 MB here).

    >>> series([{"step": 1, "train_loss": 2.5}, {"step": 2, "val_loss": 2.1, "val_ppl": 8.2}])
    {'train': [[1, 2.5]], 'val': [[2, 2.1]]}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

from strata.errors import UsageError
from strata.io import read_regular
from strata.serve.files import Root
from strata.train.metrics import Curve, Curves, iter_records

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


def _points(curve: Curve) -> list[list[float]]:
    """The curve as [step, value] pairs, every k-th one past MAX_POINTS (the last kept)."""
    steps, values, n = curve.steps, curve.values, len(curve.steps)
    k = max(math.ceil(n / MAX_POINTS), 1)
    keep = list(range(0, n, k)) + ([n - 1] if n and (n - 1) % k else [])
    return [[steps[i], values[i]] for i in keep]


def series(records: Iterable[dict]) -> dict:
    """The train and validation curves of `records` (any iterable: a stream)."""
    curves = Curves()
    for rec in records:
        curves.add(rec)
    return {"train": _points(curves.train), "val": _points(curves.val)}


def run_view(root: Root, name: str) -> dict:
    """One run: its curves and its settings (run.json as it is; {} when absent)."""
    folder = root.resolve(name)
    settings: dict = {}
    if os.path.lexists(folder / "run.json"):
        try:
            settings = json.loads(read_regular(folder / "run.json", 1 << 20, "run record", follow=False))
        except (ValueError, RecursionError, UsageError) as e:  # a damaged record: said, not raised
            settings = {"error": f"run.json: {e}"}
    return {"name": name, **series(iter_records(folder / "metrics.jsonl")),
            "settings": settings if isinstance(settings, dict) else {}}
