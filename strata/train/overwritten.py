"""The run an `--overwrite` replaces, kept until the new run's first checkpoint.

`strata train SPEC --out RUN --overwrite` on a trained run renames the old
run's own files (its run.json first, then the other names strata writes; in
checkpoints/ and cache/ only entries of strata's own naming) into the hidden
folder RUN/.overwritten, never through a link, and only then writes the new
run's stub run.json.  So at any instant, whatever killed the process:

    .overwritten/run.json there   the old run is kept (the aside is live)
      and RUN/run.json missing    every strata name in RUN is still the old run's
                                  (a set-aside or a restore under way)
      and RUN/run.json there      every strata name in RUN is the new start's

A start stopped before the new run's first checkpoint — refused before its
first step, failed, interrupted (Ctrl-C) or killed in its first steps — puts the
old run back (`restore`: the new start's files removed, its run.json last; the
old ones renamed back, their run.json last), and so does the next `strata train`
on RUN after a start killed in between.  The new run's first checkpoint (the
first point it can be resumed from: its latest.json) commits (`discard`):
.overwritten/run.json goes first, in one unlink; a folder left without it is
debris the next claim clears.  A start stopped between its latest.json and the
commit has a run to resume (`replaced`): the claim, or the start's own error
path, finishes the commit then (`discard`), never puts the old run back over it.  Only strata's names are removed from .overwritten;
anything else there (a file a user put in it) stays, and is said.

    set_aside(Path("runs/x"))               # at the claim, before the new stub
    restore(Path("runs/x"))                 # stopped before the first checkpoint: True
    discard(Path("runs/x"))                 # the first checkpoint: [] (nothing of the user's left there)
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from strata.errors import UsageError
from strata.train.folder_names import ASIDE, kept_run, replaced
from strata.train.manifest import LOCK, MANIFEST, OWN_ENTRIES, remove_own

__all__ = ["ASIDE", "discard", "kept_run", "replaced", "restore", "set_aside"]

_OTHERS = [n for n in MANIFEST if n not in (LOCK, "run.json")]
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _open(name: str, at: int | None, shown: Path) -> int:
    """The fd of folder `name` in folder `at` (the run folder itself when `at` is
    None), refusing a link or a file there: nothing is moved through one."""
    try:
        return os.open(name, _DIR_FLAGS if at is not None else _DIR_FLAGS & ~os.O_NOFOLLOW, dir_fd=at)
    except OSError as e:
        raise UsageError(f"{shown}: not a folder strata made ({e.strerror}); move it away") from None


def _lstat(name: str, at: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=at, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _rename(name: str, src: int, dst: int, where: Path) -> None:
    if _lstat(name, dst) is not None:  # never replace what is there: it is not the run's
        raise UsageError(f"{where / name}: in the way of the run kept in {where / ASIDE}; move it away")
    os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)


def _move(names, src: int, dst: int, where: Path) -> None:
    """Rename `names` from folder `src` to folder `dst`; of a subfolder, its own
    entries only (into a real folder of that name in `dst`, made if missing)."""
    for name in names:
        st = _lstat(name, src)
        if st is None:
            continue
        if not (name in OWN_ENTRIES and stat.S_ISDIR(st.st_mode)):
            _rename(name, src, dst, where)
            continue
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=dst)
        sub_src = _open(name, src, where / name)
        try:
            sub_dst = _open(name, dst, where / name)
        except UsageError:
            os.close(sub_src)
            raise
        try:
            for entry in os.listdir(sub_src):
                if OWN_ENTRIES[name].match(entry):
                    _rename(entry, sub_src, sub_dst, where / name)
            os.fsync(sub_dst)
        finally:
            os.close(sub_src)
            os.close(sub_dst)
        with contextlib.suppress(OSError):  # the user's own files in it stay, with it
            os.rmdir(name, dir_fd=src)


def set_aside(out: Path) -> None:
    """Move the run in `out` into out/.overwritten: every name of the manifest, not
    only those its run.json lists — `restore` takes whatever strata name is in
    `out` beside a new run.json for the new start's.  A failure puts back what was
    moved and is one line."""
    names = ["run.json", *_OTHERS]
    top = _open(str(out), None, out)
    try:
        with contextlib.suppress(FileExistsError):  # a folder of a user's files a discard left
            os.mkdir(ASIDE, dir_fd=top)
        aside = _open(ASIDE, top, out / ASIDE)
        try:
            _move(names, top, aside, out)
            os.fsync(aside)
        finally:
            os.close(aside)
        os.fsync(top)
    except OSError as e:
        with contextlib.suppress(OSError, UsageError):
            restore(out)
        raise UsageError(f"{out}: cannot set the old run aside in {out / ASIDE} ({e.strerror}); "
                         "nothing was overwritten") from None
    except BaseException:
        with contextlib.suppress(OSError, UsageError):
            restore(out)
        raise
    finally:
        os.close(top)


def restore(out: Path) -> bool:
    """Put back the run kept in out/.overwritten, if one is: the new start's files
    go (strata's names only), the old ones are renamed back.  True if it did;
    debris of a committed overwrite is cleared (strata's names; a user's files
    stay).  A failure is one line; what is left is put back by the next try."""
    top = _open(str(out), None, out)
    try:
        st = _lstat(ASIDE, top)
        if st is None:
            return False
        if kept_run(out) is None:
            if replaced(out):  # the new run's to keep: `discard` commits it
                return False
            if stat.S_ISDIR(st.st_mode):
                _clear(out)  # debris: `discard` removed its run.json, then stopped
                return False
            raise UsageError(f"{out / ASIDE}: not a folder strata made (a link or a file); move it away")
        if _lstat("run.json", top) is not None:
            remove_own(out, MANIFEST)
            os.unlink("run.json", dir_fd=top)  # last: until then, RUN's names are the new start's
        aside = _open(ASIDE, top, out / ASIDE)
        try:
            _move([*_OTHERS, "run.json"], aside, top, out)
        finally:
            os.close(aside)
        os.fsync(top)
    except OSError as e:
        raise UsageError(f"{out}: cannot put back the run kept in {out / ASIDE} ({e.strerror}); "
                         "it stays there") from None
    finally:
        os.close(top)
    with contextlib.suppress(OSError):  # emptied; a user's files in it stay
        _clear(out)
    return True


def discard(out: Path) -> list[str]:
    """The new run has its first checkpoint: the old one goes, its run.json first
    (the commit), then its other files.  What stays in out/.overwritten, not being
    strata's (a user's files; the folder goes once it is empty)."""
    try:
        os.unlink(out / ASIDE / "run.json")
    except OSError as e:
        raise UsageError(f"{out}: cannot remove the old run kept in {out / ASIDE} ({e.strerror}); "
                         "the new run stops at its first checkpoint") from None
    try:
        return _clear(out)
    except OSError:  # what is left is debris the next claim clears
        return []


def _clear(out: Path) -> list[str]:
    """Remove strata's names from out/.overwritten (no run.json there: debris of a
    commit), and the folder once empty; what stays, by path inside it."""
    aside = out / ASIDE
    remove_own(aside, MANIFEST)
    with contextlib.suppress(OSError):
        os.rmdir(aside)
        return []
    left = []
    for name in sorted(os.listdir(aside)):
        sub = aside / name
        if name in OWN_ENTRIES and sub.is_dir() and not sub.is_symlink():
            left += [f"{name}/{entry}" for entry in sorted(os.listdir(sub))]
        else:
            left.append(name)
    return left
