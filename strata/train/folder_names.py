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
           "COMPRESSED_WEIGHTS", "REPORT", "ASIDE", "is_run", "is_compressed", "kept_run", "neither",
           "replaced"]

RUN_JSON, SPEC, TOKENIZER, METRICS, PLOT, FINAL, CACHE = (
    "run.json", "model.arch", "tokenizer.json", "metrics.jsonl", "loss.png", "model.safetensors", "cache")
COMPRESSED_SPEC, COMPRESSED_WEIGHTS, REPORT = "model.arch", "weights.safetensors", "report.json"
LATEST = "latest.json"  # the pointer to the newest checkpoint (strata.train.checkpoint)
ASIDE = ".overwritten"  # the run an --overwrite replaces, until the new run's first checkpoint (overwritten.py)


def kept_run(out: Path) -> Path | None:
    """RUN/.overwritten/run.json when it holds a run set aside (a regular file in
    a real folder) that the new run has not replaced yet (`replaced`), else None."""
    aside = Path(out) / ASIDE
    return aside / RUN_JSON if _aside_run(aside) and not replaced(out) else None


def replaced(out: Path) -> bool:
    """The run an --overwrite set aside is still there, but the new run has written
    its first checkpoint whole — its latest.json beside its run.json (while RUN/run.json
    is there every strata name in RUN is the new start's) — and was stopped before
    the commit removed the old one: the new run is the folder's."""
    out = Path(out)
    try:
        return (_aside_run(out / ASIDE) and stat.S_ISREG(os.lstat(out / RUN_JSON).st_mode)
                and os.path.lexists(out / LATEST))
    except OSError:
        return False


def _aside_run(aside: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(aside).st_mode) and stat.S_ISREG(os.lstat(aside / RUN_JSON).st_mode)
    except OSError:
        return False


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
