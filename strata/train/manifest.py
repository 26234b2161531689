"""The names strata writes at the top of a run folder, and their removal.

run.json lists them (`files`); `--overwrite` and a start stopped before its
first step touch only these — never through a link, and in the two subfolders
only entries of strata's own naming — so the user's files in a run folder stay.

    remove_own(Path("runs/x"), MANIFEST)   # every strata name but run.json and the lock
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from pathlib import Path

from strata.train.checkpoint import BEST, DIR, LATEST

__all__ = ["LOCK", "MANIFEST", "OWN_ENTRIES", "TEMP", "remove_own"]

LOCK = "run.lock"
# Every name strata writes at the top of a run folder (run.json lists them).
MANIFEST = ("run.json", "model.arch", "tokenizer.json", "metrics.jsonl", "loss.png", "model.safetensors",
            LATEST, BEST, DIR, "cache", LOCK)
# What strata writes inside its two subfolders (temporary files of atomic writes too).
OWN_ENTRIES = {DIR: re.compile(r"\A(\.?step-\d{8}(\.[\w-]+)?)\Z"),
               "cache": re.compile(r"\A(\w+-[0-9a-f]{20}\.uint(16|32)(\.json)?|\..+\.tmp)\Z")}
TEMP = re.compile(r"\A\..+\.tmp\Z")


def remove_own(folder: Path, names) -> None:
    """Remove the files strata wrote (names from its manifest), never through a
    link; in its subfolders only entries of strata's own naming."""
    for name in names:
        if name not in MANIFEST or name in (LOCK, "run.json"):
            continue
        p = folder / name
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode) and name in OWN_ENTRIES:
            for entry in os.listdir(p):
                q = p / entry
                if not OWN_ENTRIES[name].match(entry):
                    continue
                if q.is_dir() and not q.is_symlink():
                    shutil.rmtree(q)
                else:
                    q.unlink()
            with contextlib.suppress(OSError):  # the user's own files in it stay, with it
                p.rmdir()
        elif not stat.S_ISDIR(st.st_mode):
            p.unlink()
