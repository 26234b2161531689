"""Which files `strata serve` may read and write: only those under its root.

A name from the page (a URL path, a WebSocket message) is resolved inside the
root with every symlink followed; a path that lands outside (`../../etc/passwd`,
a link to /etc) is refused, and so is anything not a regular file.  Reads are
bounded by `strata.io` (MAX_TEXT_BYTES); writes go through its atomic writer.

    >>> import tempfile, pathlib
    >>> root = Root(tempfile.mkdtemp())
    >>> root.resolve("../../etc/passwd")
    Traceback (most recent call last):
    strata.serve.files.Refused: ../../etc/passwd: outside the served folder
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from strata.io import MAX_TEXT_BYTES, SPEC_SUFFIXES, read_regular, write_atomic

MAX_LISTED = 2000  # files listed in the sidebar: a huge tree is cut, never walked whole


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_mtime_ns, st.st_size


class Refused(Exception):
    """A name the page may not read or write (outside the root, not a regular file)."""


class Root:
    """The served folder (or the one file served, with its folder as the root)."""

    def __init__(self, path: str | os.PathLike):
        p = Path(path).resolve()
        self.file: str | None = None
        if p.is_file():
            self.file, p = p.name, p.parent
        self.path = p

    def resolve(self, name: str) -> Path:
        """The real path of `name` (relative to the root), refused if it escapes."""
        if "\0" in name or name.startswith(("/", "\\")) or os.path.isabs(name):
            raise Refused(f"{name}: outside the served folder")
        real = (self.path / name).resolve()  # every link followed, `..` collapsed
        if real != self.path and self.path not in real.parents:
            raise Refused(f"{name}: outside the served folder")
        return real

    def read_text(self, name: str) -> str:
        path = self.resolve(name)
        if not path.is_file():
            raise Refused(f"{name}: not a regular file under the served folder")
        return read_regular(path, MAX_TEXT_BYTES, "spec").decode("utf-8", "replace")

    def write_text(self, name: str, text: str, written: Callable[[tuple[int, int, int]], None] | None = None
                   ) -> None:
        """Atomically (strata.io): a temporary file beside it, then a rename.  `written`
        is told the file's `identity` before the rename (a watcher may report the rename
        at once: the writer knows its own file by then)."""
        if len(text.encode()) > MAX_TEXT_BYTES:
            raise Refused(f"{name}: more than {MAX_TEXT_BYTES:,} bytes")
        path = self.resolve(name)
        if not path.name.endswith(SPEC_SUFFIXES):
            raise Refused(f"{name}: only spec files ({', '.join(SPEC_SUFFIXES)}) are written")
        write_atomic(path, text, written=None if written is None else lambda st: written(_identity(st)))

    def identity(self, name: str) -> tuple[int, int, int] | None:
        """(inode, mtime in ns, size) of the file: every atomic write (a new file renamed
        over it) changes it, so a page tells its own last write from another editor's."""
        try:
            return _identity(os.stat(self.resolve(name)))
        except OSError:
            return None

    def name_of(self, path: str | os.PathLike) -> str | None:
        """`path` relative to the root, or None when it is outside."""
        try:
            return Path(path).resolve().relative_to(self.path).as_posix()
        except ValueError:
            return None

    def specs(self) -> list[str]:
        """The spec files under the root (links that leave it skipped), sorted."""
        if self.file:
            return [self.file]
        out: list[str] = []
        for folder, dirs, files in os.walk(self.path):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "node_modules", "__pycache__")))
            for f in sorted(files):
                if f.endswith(SPEC_SUFFIXES):
                    name = self.name_of(Path(folder) / f)
                    if name is not None:
                        out.append(name)
                if len(out) >= MAX_LISTED:
                    return out
        return out
