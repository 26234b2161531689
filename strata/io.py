"""Files in and out, the one way strata does them.

Every file strata writes — generated modules, diagrams, converted or formatted
specs, imported weights, checkpoints — goes through `atomic_output` /
`write_atomic`: a temporary file in the destination's folder, flushed and
fsynced, renamed over the destination, then the folder fsynced.  A crash at any
instant leaves either the old file or the new one, never half of either.  New
files get the user's umask (like `open(..., "w")`); a replaced file keeps its
mode; a symlink is followed, so the link stays and its target is rewritten.

`is_spec_path` is the one rule for telling a spec path from spec text.

    >>> is_spec_path("specs/gpt2.arch"), is_spec_path("br{ace}.arch")
    (True, True)
    >>> is_spec_path("model m { stack s(x) { embedding(10, 4) } }")
    False
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from strata.errors import UsageError

__all__ = ["SPEC_SUFFIXES", "atomic_output", "is_spec_path", "write_atomic"]

SPEC_SUFFIXES = (".arch", ".yaml", ".yml")


def is_spec_path(spec: object) -> bool:
    """True when `spec` names a file rather than holding spec text: a Path, or a
    one-line string that ends in a spec suffix or names an existing file."""
    if isinstance(spec, os.PathLike):
        return True
    if not isinstance(spec, str) or "\n" in spec or "\r" in spec or not spec.strip():
        return False
    return spec.endswith(SPEC_SUFFIXES) or os.path.isfile(spec)


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _target(path: str | os.PathLike) -> Path:
    """Where the bytes really go: symlinks followed; the folder must exist and the
    target must not be a folder (UsageError otherwise, naming the path)."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; give a file name to write")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"{path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: cannot write into {folder} (permission denied)")
    return path


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on a clean exit it replaces `path`.

        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_output(out) as tmp:
        ...     _ = tmp.write_text("hello")
        >>> out.read_text()
        'hello'
    """
    path = _target(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = _umask_mode()
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise UsageError(f"{path}: cannot write ({e.strerror})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` (text is UTF-8, newlines as given) to `path` atomically; return the path."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_output(path) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as e:
            raise UsageError(f"{path}: cannot write ({e.strerror})") from None
    return Path(path)
