"""The spec files of the editor's workspace folders, as `workspace/symbol` reads
them: bounded before anything is spent.  At most MAX_ENTRIES directory entries are
looked at, MAX_FILES spec files read and MAX_BYTES of their text in all, so a
workspace opened on a home folder (millions of files) or holding a huge generated
file answers with what fits, quickly, instead of walking and reading all of it.

    for path, text in spec_texts(["/home/me/project"]):
        ...
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from strata.dsl import clean_text
from strata.errors import SpecError, UsageError
from strata.io import MAX_TEXT_BYTES, read_regular
from strata.lsp.features import is_spec_file

__all__ = ["MAX_BYTES", "MAX_ENTRIES", "MAX_FILES", "spec_texts"]

MAX_ENTRIES = 200_000   # directory entries looked at (files and folders; a repository has far fewer)
MAX_FILES = 2000        # spec files read
MAX_BYTES = 32 << 20    # of spec text read in all (a spec is a few KB)
SKIPPED = ("node_modules",)  # besides hidden folders (.git, .venv)


def spec_texts(roots: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(path, text) of the .arch / YAML files under `roots` (depth first, in name
    order), within the bounds above; a file that is not a readable UTF-8 regular file, or
    would pass the byte budget, is skipped."""
    files = spent = 0
    for path in _spec_paths(roots):
        if files >= MAX_FILES or spent >= MAX_BYTES:
            return
        files += 1
        try:
            data = read_regular(path, min(MAX_TEXT_BYTES, MAX_BYTES - spent), "spec file")
        except UsageError:  # not a regular file, unreadable, or past the budget (its size, before reading)
            continue
        spent += len(data)
        try:
            yield path, clean_text(data.decode("utf-8"), path)
        except (UnicodeDecodeError, SpecError):
            continue


def _spec_paths(roots: Iterable[str]) -> Iterator[str]:
    """Spec file paths under `roots`, depth first, in name order; stops after
    MAX_ENTRIES entries (os.scandir one entry at a time: a folder of millions is not
    listed whole)."""
    left = MAX_ENTRIES
    stack = [root or "." for root in reversed(list(roots))]
    while stack:
        folder = stack.pop()
        files, subfolders = [], []
        try:
            with os.scandir(folder) as entries:
                for e in entries:
                    left -= 1
                    if left < 0:
                        break
                    if e.is_dir(follow_symlinks=False):
                        if not e.name.startswith(".") and e.name not in SKIPPED:
                            subfolders.append(e.path)
                    elif is_spec_file(e.name):
                        files.append(e.path)
        except OSError:  # a folder that cannot be read is skipped
            continue
        yield from sorted(files)
        if left < 0:
            return
        stack.extend(sorted(subfolders, reverse=True))
