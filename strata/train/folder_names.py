"""What is in a run folder and in a `strata compress` output, by name (what
each file holds: strata.train.run_folder and strata.train.sources).  Standard
library only: the command line tells the folders apart before it imports
anything else (strata/cli_folders.py).

    >>> is_run("specs"), is_compressed("specs")
    (False, False)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["RUN_JSON", "SPEC", "TOKENIZER", "METRICS", "PLOT", "FINAL", "CACHE", "COMPRESSED_SPEC",
           "COMPRESSED_WEIGHTS", "REPORT", "ASIDE", "is_run", "is_compressed", "kept_run", "neither"]

RUN_JSON, SPEC, TOKENIZER, METRICS, PLOT, FINAL, CACHE = (
    "run.json", "model.arch", "tokenizer.json", "metrics.jsonl", "loss.png", "model.safetensors", "cache")
COMPRESSED_SPEC, COMPRESSED_WEIGHTS, REPORT = "model.arch", "weights.safetensors", "report.json"
ASIDE = ".overwritten"  # the run an --overwrite replaces, until the new run's first checkpoint (overwritten.py)


def kept_run(out: Path) -> Path | None:
    """RUN/.overwritten/run.json when it holds a run set aside (a regular file in
    a real folder), else None."""
    aside = Path(out) / ASIDE
    try:
        if stat.S_ISDIR(os.lstat(aside).st_mode) and stat.S_ISREG(os.lstat(aside / RUN_JSON).st_mode):
            return aside / RUN_JSON
    except OSError:
        pass
    return None


def is_run(path: Path) -> bool:
    """A run folder: its run.json, or the run an --overwrite stopped before its first
    step keeps aside (`read_run` says how to get it back)."""
    return os.path.lexists(Path(path) / RUN_JSON) or kept_run(Path(path)) is not None


def is_compressed(path: str | Path) -> bool:
    """A `strata compress` output folder: model.arch and weights.safetensors."""
    p = Path(path)
    return (p / COMPRESSED_SPEC).is_file() and (p / COMPRESSED_WEIGHTS).is_file() and not is_run(p)


def neither(p: Path) -> str:
    return (f"{p}: not a run folder (no {RUN_JSON}) and not a strata compress output (no "
            f"{COMPRESSED_SPEC} + {COMPRESSED_WEIGHTS})")
