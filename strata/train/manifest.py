"""The names strata writes at the top of a run folder, and their removal.

run.json lists them (`files`); `--overwrite` and a start stopped before its
first step touch only these — never through a link, and in the two subfolders
only entries of strata's own naming — so the user's files in a run folder stay.
A kill in an atomic write leaves its temporary file (`.latest.json.k3j9x_2a.tmp`:
tempfile's random part between the name and `.tmp`); the next claim removes
those of strata's names only (`remove_temp`), never a user's `.notes.tmp`.

    remove_own(Path("runs/x"), MANIFEST)   # every strata name but run.json and the lock
    remove_temp(Path("runs/x"))            # under the run's lock: no write is under way
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from pathlib import Path

from strata.train.checkpoint import BEST, DIR, LATEST

__all__ = ["LOCK", "MANIFEST", "OWN_ENTRIES", "TEMP", "remove_own", "remove_temp"]

LOCK = "run.lock"
# Every name strata writes at the top of a run folder (run.json lists them).
MANIFEST = ("run.json", "model.arch", "tokenizer.json", "metrics.jsonl", "loss.png", "model.safetensors",
            LATEST, BEST, DIR, "cache", LOCK)
_RANDOM = r"\.[a-z0-9_]+"  # what tempfile puts after a name: .k3j9x_2a
_CACHED = r"\w+-[0-9a-f]{20}\.uint(?:16|32)(?:\.json)?"
# What strata writes inside its two subfolders (temporary files of atomic writes too: a
# checkpoint's folder before its rename, .step-00000500.k3j9x_2a; a cache file's .NAME.k3j9x_2a.tmp).
OWN_ENTRIES = {DIR: re.compile(r"\A(\.?step-\d{8}(\.[\w-]+)?)\Z"),
               "cache": re.compile(rf"\A({_CACHED}|\.{_CACHED}{_RANDOM}\.tmp)\Z")}
# Half-written files a folder may hold and still count as empty (any of these looks).
TEMP = re.compile(r"\A\..+\.tmp\Z")
_FILES = "|".join(re.escape(n) for n in MANIFEST if n not in (DIR, "cache", LOCK))
# The temporary files of strata's own atomic writes at the top of a run, and in its subfolders.
_OWN_TEMP = {".": re.compile(rf"\A\.(?:{_FILES}){_RANDOM}\.tmp\Z"),
             DIR: re.compile(rf"\A\.step-\d{{8}}{_RANDOM}\Z"),
             "cache": re.compile(rf"\A\.{_CACHED}{_RANDOM}\.tmp\Z")}


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


def remove_temp(folder: Path) -> None:
    """Remove what a killed atomic write left in the run (strata's names only; a
    link is removed, never followed).  Only under the run's lock: then no write
    of strata's is under way there."""
    for sub, own in _OWN_TEMP.items():
        p = folder / sub
        try:
            if not stat.S_ISDIR(os.lstat(p).st_mode):
                continue
            names = os.listdir(p)
        except OSError:
            continue
        for name in filter(own.match, names):
            q = p / name
            with contextlib.suppress(OSError):  # a failure leaves it, for the next claim
                if stat.S_ISDIR(os.lstat(q).st_mode):
                    shutil.rmtree(q)
                else:
                    q.unlink()
