"""Paths written in a spec resolve against the file in which they are written.

A spec that extends a model imported from another folder inherits that file's
`train { data = ... }` and `passes { distill("teacher.arch", weights=...) }`;
each path is read from the folder of the file that names it, never from the
folder of the spec given on the command line.  A path from the command line
(`--set data=...`, `--pass 'distill(...)'`) is relative to the current folder.

Checked specs hold every such path relative to the folder of the spec that was
built (`g.graph.file`, "the root"): unchanged where the root itself writes
it, so reports, generated files and diagrams show what the user wrote, and
`located(value, g)` finds it from any current folder.

    >>> resolve_path("teacher.arch", "specs/student.arch", "specs/student.arch")
    'teacher.arch'
    >>> resolve_path("teacher.arch", "lib/base.arch", "work/student.arch")
    '../lib/teacher.arch'
    >>> resolve_path("/data/x.txt", "lib/base.arch", "work/student.arch")
    '/data/x.txt'
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["folder_of", "located", "resolve_path", "resolve_option_paths"]


def folder_of(file: str | None) -> Path:
    """The folder relative paths written in `file` start from: its own; the
    current folder for spec text ("<string>") and the command line ("--set",
    "<passes[0]>")."""
    if not file or file.startswith("<") or file.startswith("--"):
        return Path(".")
    return Path(file).parent


def resolve_path(value: str, file: str | None, root: str | None) -> str:
    """`value` as written in `file`, relative to the folder of `root` (an
    absolute value, or one written in the root itself, as it is)."""
    if Path(value).is_absolute() or folder_of(file) == folder_of(root):
        return value
    return os.path.relpath((folder_of(file) / value).resolve(), folder_of(root).resolve())


def located(value: str, g) -> Path:
    """The path a checked spec's value names, usable from the current folder."""
    p = Path(value)
    return p if p.is_absolute() else folder_of(g.graph.file) / p


def resolve_option_paths(options, file: str | None, root: str | None):
    """`options` (a pydantic `Options`) with the file-naming options it declares in
    `paths` rebased from `file`'s folder to `root`'s (see `resolve_path`)."""
    changes = {}
    for key, endings in type(options).paths.items():
        v = getattr(options, key, None)
        if isinstance(v, str) and v and (not endings or v.endswith(endings)):
            changes[key] = resolve_path(v, file, root)
    return options.model_copy(update=changes) if changes else options
