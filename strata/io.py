"""Files in and out, the one way strata does them.

Every file strata writes — generated modules, diagrams, converted or formatted
specs, imported weights, checkpoints — goes through `atomic_output` /
`write_atomic`: a temporary file in the destination's folder, flushed and
fsynced, renamed over the destination, then the folder fsynced.  A crash at any
instant leaves either the old file or the new one, never half of either.  New
files get the user's umask (like `open(..., "w")`); a replaced file keeps its
mode; a symlink is followed, so the link stays and its target is rewritten —
except with `follow=False` (every file of a run folder), where the new file
replaces the link itself and nothing outside the folder changes.

Every file strata reads as text — specs, their imports, a Hugging Face
`config.json` — goes through `read_regular`: a regular file only (never a FIFO,
a device such as /dev/zero, or a folder), and at most a size cap, so a hostile
path cannot hang strata or fill its memory.  `open_regular` is the same check
for a file read in pieces or memory-mapped (training data, cached token ids);
`follow=False` (a run's own files) refuses a symlink as well.

`is_spec_path` is the one rule for telling a spec path from spec text.

    >>> is_spec_path("specs/gpt2.arch"), is_spec_path("br{ace}.arch")
    (True, True)
    >>> is_spec_path("model m { stack s(x) { embedding(10, 4) } }")
    False
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from strata.errors import UsageError, WriteError

__all__ = ["MAX_TEXT_BYTES", "SPEC_SUFFIXES", "atomic_folder", "atomic_output", "file_kind", "is_spec_path",
           "open_regular", "read_regular", "read_spread", "same_file", "spread_text", "write_atomic"]

SPEC_SUFFIXES = (".arch", ".yaml", ".yml")
# The largest text file strata reads (a spec, an import, a config.json).  The
# largest real spec is a few KB and a config.json a few hundred KB.
MAX_TEXT_BYTES = 16 * 2 ** 20


def is_spec_path(spec: object) -> bool:
    """True when `spec` names a file rather than holding spec text: a Path, or a
    one-line string that ends in a spec suffix or names an existing file."""
    if isinstance(spec, os.PathLike):
        return True
    if not isinstance(spec, str) or "\n" in spec or "\r" in spec or not spec.strip():
        return False
    return spec.endswith(SPEC_SUFFIXES) or os.path.isfile(spec)


def open_regular(path: str | os.PathLike, what: str = "file", follow: bool = True) -> int:
    """A descriptor open for reading on a regular file; anything else is a
    UsageError naming the path.  Opened without blocking (a FIFO never hangs
    the open) and checked on the descriptor (a swapped-in link cannot slip
    past); follow=False refuses a symlink too.  The caller closes it.

        >>> open_regular("/dev/zero")
        Traceback (most recent call last):
        strata.errors.UsageError: /dev/zero: not a regular file (a character device)
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except ValueError:  # a NUL character: no file has such a name
        raise UsageError(f"{path}: no such file (a path cannot hold a NUL character)") from None
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a {what}") from None
    except OSError as e:
        if not follow and os.path.islink(path):  # ELOOP from O_NOFOLLOW
            raise UsageError(f"{path}: is a symlink; strata reads only the files it wrote "
                             "there itself (remove the link)") from None
        raise UsageError(f"{path}: cannot read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{path}: is a directory, not a {what}")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{path}: not a regular file ({file_kind(st.st_mode)})")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike, limit: int = MAX_TEXT_BYTES, what: str = "file",
                 follow: bool = True) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; anything else is a
    UsageError naming the path (see `open_regular`).

        >>> read_regular("/dev/zero")
        Traceback (most recent call last):
        strata.errors.UsageError: /dev/zero: not a regular file (a character device)
    """
    fd = open_regular(path, what, follow)
    try:
        st = os.fstat(fd)
        if st.st_size > limit:
            raise UsageError(f"{path}: {st.st_size:,} bytes is too large for a {what} "
                             f"(at most {limit:,})")
        chunks, size = [], 0
        while size <= limit:  # the file may grow after fstat: read at most limit + 1
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise UsageError(f"{path}: more than {limit:,} bytes is too large for a {what}")
        return b"".join(chunks)
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror})") from None
    finally:
        os.close(fd)


def spread_text(text: str, limit: int, pieces: int = 128) -> str:
    """All of `text` when it holds at most `limit` characters, else `pieces`
    pieces of limit // pieces characters spread evenly from its start to its
    end, one per line: a bounded sample of all of it (calibration data), not
    its beginning.

        >>> spread_text("abcdefghij", 4, pieces=2)
        'ab\\nij'
    """
    if len(text) <= limit:
        return text
    size = max(1, limit // pieces)
    step = (len(text) - size) / max(1, pieces - 1)
    return "\n".join(text[round(i * step):round(i * step) + size] for i in range(pieces))


def read_spread(path: str | os.PathLike, limit: int, pieces: int = 128, what: str = "file") -> str:
    """A regular text file as `spread_text` samples a text, reading at most
    `limit` bytes of it: the pieces are read where they lie, and a character
    cut at a piece's edge is dropped (invalid UTF-8 inside reads as U+FFFD)."""
    fd = open_regular(path, what)
    try:
        size = os.fstat(fd).st_size
        if size <= limit:
            chunks = []
            while chunk := os.read(fd, limit - sum(map(len, chunks))):  # at most limit: the file may grow
                chunks.append(chunk)
            return b"".join(chunks).decode("utf-8", errors="replace")
        piece = max(1, limit // pieces)
        step = (size - piece) / max(1, pieces - 1)
        parts = [os.pread(fd, piece, round(i * step)).decode("utf-8", errors="replace").strip("\ufffd")
                 for i in range(pieces)]
        return "\n".join(parts)
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror})") from None
    finally:
        os.close(fd)


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for an error: 'a FIFO', 'a socket', ..."""
    for test, word in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "not a plain file"


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths exist and are the same file (links followed): a
    command must not write its output onto its own input."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _target(path: str | os.PathLike, follow: bool = True) -> Path:
    """Where the bytes really go: symlinks followed (unless follow=False: then
    the link itself is replaced); the folder must exist and the target must not
    be a folder (UsageError otherwise, naming the path)."""
    written = os.fspath(path)
    path = Path(path)
    if follow and path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.is_dir() and not path.is_symlink():
        raise UsageError(f"{path}: is a directory; give a file name to write")
    if isinstance(written, str) and written.endswith(("/", os.sep)):  # Path("sub/") is "sub": a file
        raise UsageError(f"{written}: names a folder, which does not exist; give a file name to write")
    try:
        mode = (os.stat(path) if follow else os.lstat(path)).st_mode
    except (OSError, ValueError):
        mode = None  # nothing there yet (or no such path: the folder check below says so)
    # The rename would put a regular file in place of /dev/null (root may rename over
    # a device) or of a FIFO: only the link replaced in a run folder (follow=False) is meant.
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)) \
            and (follow or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
        raise UsageError(f"{path}: not a regular file ({file_kind(mode)}); strata writes only regular files")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"{path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WriteError(f"{path}: cannot write into {folder} (permission denied)", os.strerror(errno.EACCES))
    return path


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, follow: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on a clean exit it replaces `path`
    (with follow=False a symlink at `path` is replaced, never written through).

        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_output(out) as tmp:
        ...     _ = tmp.write_text("hello")
        >>> out.read_text()
        'hello'
    """
    path = _target(path, follow)
    try:
        st = os.stat(path) if follow else os.lstat(path)
        mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else _umask_mode()
    except FileNotFoundError:
        mode = _umask_mode()
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise WriteError(f"{path}: cannot write ({e.strerror})", e.strerror) from None
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


def write_atomic(path: str | os.PathLike, data: bytes | str, follow: bool = True,
                 written: Callable[[os.stat_result], None] | None = None) -> Path:
    """Write `data` (text is UTF-8, newlines as given) to `path` atomically; return the path.
    `written`, if given, is told the new file's stat before it replaces `path`: its
    inode and mtime are the file's once renamed, so a watcher's report of the rename
    can be told for the writer's own (the workbench's saves)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_output(path, follow) as tmp:
        try:
            tmp.write_bytes(data)
            if written is not None:
                written(os.stat(tmp))
        except OSError as e:
            raise WriteError(f"{path}: cannot write ({e.strerror})", e.strerror) from None
    return Path(path)


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike, names: tuple[str, ...]) -> Iterator[Path]:
    """Yield an empty temporary folder beside `out` to write the files `names`
    into; on a clean exit they land in `out` — by one rename when `out` is new,
    else each file written replacing its namesake (a link is replaced, never
    written through) and a name of `names` not written this time removed — so a
    command's output folder is whole or as it was.  Other files in `out` are
    never touched.

        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "result"
        >>> with atomic_folder(out, ("a.txt",)) as tmp:
        ...     _ = (tmp / "a.txt").write_text("whole")
        >>> sorted(p.name for p in out.iterdir())
        ['a.txt']
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as e:
        raise UsageError(f"{out}: cannot create the output folder ({e.strerror})") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # renamed to `out`: a folder as mkdir would have made it
    try:
        yield tmp
        if not out.exists():
            os.rename(tmp, out)
        else:  # every file written lands (a side file such as ONNX's external data too)
            written = sorted(p.name for p in tmp.iterdir())
            for name in written:
                os.replace(tmp / name, out / name)
            for name in names:
                if name not in written and os.path.lexists(out / name):
                    os.unlink(out / name)
        _fsync_dir(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
