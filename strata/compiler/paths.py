"""Paths written in a spec resolve against the file in which they are written.

A spec that extends a model imported from another folder inherits that file's
`train { data = ... }` and `passes { distill("teacher.arch", weights=...) }`;
each path is read from the folder of the file that names it, never from the
folder of the spec given on the command line.  A path from the command line
(`--set data=...`, `--pass 'distill(...)'`) is relative to the current folder.
Resolved paths are absolute, so they hold whatever folder the run is in later.

    >>> from pathlib import Path
    >>> str(resolve_path("teacher.arch", "specs/student.arch")) == str(Path("specs/teacher.arch").resolve())
    True
    >>> resolve_path("/data/x.txt", "specs/student.arch")
    '/data/x.txt'
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["folder_of", "resolve_path", "resolve_option_paths"]


def folder_of(file: str | None) -> Path:
    """The folder relative paths written in `file` start from: its own; the
    current folder for spec text ("<string>", "--set", "<passes[0]>")."""
    if not file or file.startswith("<") or file.startswith("--"):
        return Path(".")
    return Path(file).parent


def resolve_path(value: str, file: str | None) -> str:
    """`value` as written in `file`, made absolute (an absolute value as it is)."""
    if Path(value).is_absolute():
        return value
    return str((folder_of(file) / value).resolve())


def resolve_option_paths(options, file: str | None):
    """`options` (a pydantic `Options`) with the file-naming options it declares in
    `paths` resolved against `file`'s folder."""
    changes = {}
    for key, endings in type(options).paths.items():
        v = getattr(options, key, None)
        if isinstance(v, str) and v and (not endings or v.endswith(endings)):
            changes[key] = resolve_path(v, file)
    return options.model_copy(update=changes) if changes else options
