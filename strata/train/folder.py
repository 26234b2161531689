"""Run folders are owned: what `strata train` may do to the folder `--out` names.

- A lock (`run.lock`, an flock held for the life of the run and removed at its
  end; the kernel drops the flock when the process dies, so a killed run's
  leftover file locks nothing): a second writer is refused with one line
  naming the holder's pid.
- The folder is claimed in one step: run.json is written first, as a stub
  (`"status": "started"`), so a run killed at any point after that, before
  its first step, is a run that `--resume` (or the same command again) starts
  over, never "a folder that holds no run".  A start stopped by an error
  before its first step (data too short) removes what it wrote instead
  (`RunLock.abandon`): a new folder is gone, a resumed run keeps its files.
- strata writes only into an empty folder or its own run.  run.json lists the
  names strata writes there (`files`); `--overwrite` moves those (never
  following a link) and nothing else into RUN/.overwritten, where the old run
  is kept until the new one's first checkpoint (`RunLock.commit`): a start
  stopped before it — refused, failed in its first steps, interrupted, killed —
  loses nothing (strata.train.overwritten); one stopped after it keeps the new run.
  The user's files in a run folder stay where they are, and a folder that is
  not a run is refused unless it is empty.
- Every file written inside the run replaces what is at its name (a planted
  symlink is replaced, not written through): `strata.io.write_atomic(...,
  follow=False)`; subfolders must be real folders (`own_folder`).  The
  temporary files a killed write left are removed by the next claim (`remove_temp`).

    lock, ckpt = claim(Path("runs/x"), resume=True, overwrite=False)
    ...
    lock.release()          # at the end of the run, however it ends
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import Callable

from strata.errors import UsageError, WriteError
from strata.io import write_atomic
from strata.train.checkpoint import Checkpoint, find_checkpoint
from strata.train.manifest import LOCK, MANIFEST, TEMP, remove_own, remove_temp
from strata.train.overwritten import ASIDE, discard, kept_run, replaced, restore, set_aside
from strata.train.records import FORMAT, RunStub, dump, read_run_json

__all__ = ["LOCK", "MANIFEST", "RunLock", "check_claim", "claim", "not_a_run", "own_folder"]



def own_folder(path: Path) -> Path:
    """`path` as a real folder inside the run (made if missing); a symlink or a
    file there is refused, so nothing is written outside the run."""
    try:
        path.mkdir(exist_ok=True)
        st = os.lstat(path)
    except OSError as e:
        raise WriteError(f"{path}: cannot make the folder ({e.strerror})", e.strerror) from None
    if not stat.S_ISDIR(st.st_mode):
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise UsageError(f"{path}: {what}; strata writes only into folders it made itself "
                         "(move it away, or --out a new folder)")
    return path


class RunLock:
    """An exclusive flock on RUN/run.lock, which holds the holder's pid."""

    def __init__(self, fd: int, path: Path, created: bool):
        self.fd, self.path, self.created = fd, path, created
        self.made: list[Path] = []      # the folders `claim` made, deepest first
        # what `abandon` undoes: "all" (a new run), "files" (all but the stub), "aside" (the new
        # start's files, and the overwritten run put back), None (a resumed run: nothing)
        self.undo: str | None = None

    @classmethod
    def acquire(cls, folder: Path) -> "RunLock":
        path = folder / LOCK
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(100):  # the holder may remove the file between our open and flock
            created = not os.path.lexists(path)
            try:
                fd = os.open(path, flags | os.O_NONBLOCK, 0o644)
            except OSError as e:
                kind = "is a symlink" if os.path.islink(path) else f"cannot be opened ({e.strerror})"
                raise UsageError(f"{path}: the run's lock file {kind}; move it away") from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                raise UsageError(f"{path}: the run's lock file is not a regular file; move it away")
            if not _locked(fd):
                holder = _pid_in(fd)
                os.close(fd)
                raise _in_use(folder, holder)
            try:
                now = os.lstat(path)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return cls(fd, path, created)
            os.close(fd)  # we locked a file its holder had just removed: take the new one
        raise UsageError(f"{path}: cannot take the run's lock (it keeps changing)")

    def release(self, refused: bool = False) -> None:
        """Remove the lock file, then unlock.  A refused start removes it only if
        it made it, so the folder is left as it was found."""
        if self.fd is None:
            return
        if self.created or not refused:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self.fd)
        self.fd = None

    @property
    def keeps_old(self) -> bool:
        """The run --overwrite replaces is still kept aside: the new run has written
        no checkpoint yet (`commit`), so a stop now puts the old one back."""
        return self.undo == "aside"

    def abandon(self) -> None:
        """A start that stopped with an error before its first step (or, over a run
        --overwrite replaces, before its first checkpoint): remove what it wrote
        (strata's own names, never through a link) and the folders it made, so --out
        is as it was found — a new run's folder is gone, a run set up but never
        trained keeps its stub run.json, a run --overwrite was replacing is put back
        whole; a resumed run keeps every file.  The error that stopped the start is
        the one the caller says; a run that cannot be put back is said here too, in
        one more line naming where it is kept (the next claim tries again)."""
        folder = self.path.parent
        # stopped between its first checkpoint's latest.json and the commit, the new run is kept
        # (the error said that checkpoint is kept): the commit is finished rather than undone
        new_won = self.undo == "aside" and replaced(folder)
        try:
            if new_won:
                _commit_late(folder, "")
            elif self.undo == "aside":
                restore(folder)
        except (OSError, UsageError) as e:
            reason = str(e) if isinstance(e, UsageError) else (
                f"{folder}: cannot put back the run kept in {folder / ASIDE} ({e.strerror}); it stays there")
            _stderr(f"strata: error: {reason}" + ("" if new_won else
                                                  f" (the next strata train on {folder} puts it back)"))
        with contextlib.suppress(OSError, UsageError):  # strata's names only; a failure leaves them
            if self.undo not in (None, "aside"):
                remove_own(folder, MANIFEST)
            if self.undo == "all":
                (folder / "run.json").unlink()
        self.release(refused=True)
        if self.undo == "all":
            _remove_made(self.made)

    def commit(self) -> None:
        """The new run has written its first checkpoint (or finished): the run
        --overwrite replaced goes — until now it was kept aside, for `abandon` (or
        the next claim, after a kill) to put back.  Called at every checkpoint;
        only the first does anything."""
        if self.undo == "aside":
            try:
                left = discard(self.path.parent)
            except UsageError:  # said once, by the caller: the new run is kept (`replaced`), and
                self.undo = None  # `abandon` tries no second commit; the next claim finishes it
                raise
            _said_left(self.path.parent, left)
        self.undo = None


def _commit_late(out: Path, when: str) -> None:
    """The commit a stop cut short (the new run had its first checkpoint), finished and
    said, -q or not: the old run is removed outside the commit."""
    step = _latest_step(out)
    _said_left(out, discard(out))
    at = f", step {step}" if step is not None else ""
    _stderr(f"strata: warning: {out}: removed the run an --overwrite had set aside in {out / ASIDE} "
            f"(the new run had written its first checkpoint{at}{when})")


def _said_left(out: Path, left: list[str]) -> None:
    """A user's files a discard left in RUN/.overwritten, said (strata removes its own names only)."""
    if left:
        names = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        _stderr(f"strata: warning: {out / ASIDE}: kept {names} (not strata's) where the run --overwrite "
                "replaced was; move it away")


def _locked(fd: int) -> bool:
    """Take the exclusive flock on `fd`; a few tries 10 ms apart, since `_holder`
    (another start's check) holds a shared one for microseconds."""
    for i in range(5):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if i < 4:
                time.sleep(0.01)
    return False


def _pid_in(fd: int) -> str:
    """The pid a lock's holder wrote in it: it writes it just after it locks, so wait up to 0.5 s."""
    for _ in range(50):
        pid = re.match(rb"\d{1,10}", os.pread(fd, 16, 0))
        if pid:
            return pid[0].decode()
        time.sleep(0.01)
    return "unknown"


def _in_use(folder: Path, pid: str) -> UsageError:
    return UsageError(f"{folder}: in use by another strata train (pid {pid}); "
                      "wait for it to finish, or --out another folder")


def _holder(folder: Path) -> str | None:
    """The pid of the strata train that holds folder/run.lock now, or None if none
    does: a shared flock taken and dropped at once (nothing is written; a lock file
    that is a link or not a regular file is left for `RunLock.acquire` to refuse)."""
    path = folder / LOCK
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _pid_in(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _entries(folder: Path) -> set[str]:
    """What the folder holds, besides strata's lock and half-written temporary files."""
    return {n for n in os.listdir(folder) if n not in (LOCK, ASIDE) and not TEMP.match(n)}


def _remove_made(made: list[Path]) -> None:
    for p in made:  # deepest first; one holding anything else stays
        with contextlib.suppress(OSError):
            p.rmdir()


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def claim(out: Path, resume: bool, overwrite: bool, say: Callable[[str], None] = _stderr
          ) -> tuple[RunLock, Checkpoint | None]:
    """Lock `out` and make it this run's (rank 0 only): (the held lock, the
    checkpoint to resume from or None).  Refusals are one line and leave the
    folder as they found it (a run an interrupted --overwrite had set aside is put
    back first, said with `say`); so does `RunLock.abandon` for a start refused
    later, before its first step."""
    check_claim(out, resume, overwrite)
    made, p = [], out
    while not os.path.lexists(p):
        made.append(p)
        p = p.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{out}: cannot make the run folder ({e.strerror})") from None
    lock = RunLock.acquire(out)
    try:
        ckpt, lock.undo = _take(out, resume, overwrite, say)
    except BaseException:
        lock.release(refused=True)
        _remove_made(made)
        raise
    lock.made = made
    return lock, ckpt


def check_claim(out: Path, resume: bool, overwrite: bool):
    """The refusals `claim` makes that need no lock, with nothing written: `strata
    train` checks them before it reads the data and fits the tokenizer, so a
    folder it cannot have is said at once.  The run.json `out` holds, or None.
    A folder another strata train holds is said first: what is in it (a stub, a
    run set aside by its --overwrite) is that start's, not a run of the folder's."""
    if os.path.lexists(out) and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    holder = _holder(out) if out.is_dir() else None
    if holder is not None:
        raise _in_use(out, holder)
    return _check_contents(out, resume, overwrite)


def _check_contents(out: Path, resume: bool, overwrite: bool):
    """`check_claim` but the lock: what the folder holds (the claim's own check, the lock held)."""
    kept = kept_run(out)
    if kept is not None:  # an --overwrite stopped before its first checkpoint: the old run is the folder's
        info = read_run_json(kept)
        if not isinstance(info, RunStub) and not resume and not overwrite:
            raise UsageError(f"{out} already holds a run (kept in {kept.parent} by an --overwrite stopped "
                             "before its first checkpoint): --resume puts it back and continues it, --overwrite "
                             "starts it over, or --out names another folder")
        return info
    held = _entries(out) if out.is_dir() else set()
    if "run.json" not in held:
        if held:
            raise UsageError(f"{out}: the folder is not empty and holds no run (no run.json); "
                             "strata writes only into an empty folder or its own run: --out a new folder")
        return None
    info = read_run_json(out / "run.json")
    if not isinstance(info, RunStub) and not resume and not overwrite:
        raise UsageError(f"{out} already holds a run: --resume continues it, --overwrite starts it "
                         "over, or --out names another folder")
    return info


def _take(out: Path, resume: bool, overwrite: bool, say: Callable[[str], None]
          ) -> tuple[Checkpoint | None, str | None]:
    """(the checkpoint to resume, what an abandoned start undoes: "all" in a folder
    that held no run, "files" but the stub in a run set up but never trained,
    "aside" in a trained run --overwrite replaces, None in a resumed run)."""
    remove_temp(out)  # what a killed write left (the lock held: none is under way)
    if replaced(out):  # killed between its first checkpoint and the commit: the new run won
        _commit_late(out, ", when it stopped")
    elif restore(out):
        say(f"{out}: put back the run an --overwrite had set aside in {out / ASIDE} "
            "(it stopped before its first checkpoint)")
    info = _check_contents(out, resume, overwrite)  # again, now that the folder is locked
    if info is None:
        _write_stub(out)
        return None, "all"
    if isinstance(info, RunStub):      # set up, never trained: start it (again)
        remove_own(out, info.files)
        _write_stub(out)
        return None, "files"
    if resume:
        return find_checkpoint(out), None
    # kept whole until the new run's first checkpoint (`RunLock.commit`); the stub after it, so a
    # process killed in between leaves a run the next claim puts back (strata.train.overwritten)
    set_aside(out)
    try:
        _write_stub(out)
    except BaseException:  # a full disk, Ctrl-C: the old run back at once (else at the next claim)
        with contextlib.suppress(OSError, UsageError):
            restore(out)
        raise
    return None, "aside"


def _latest_step(out: Path) -> int | None:
    """The step latest.json names, to say; None if it cannot be read (the resume says why)."""
    try:
        ckpt = find_checkpoint(out)
    except UsageError:
        return None
    return ckpt.step if ckpt is not None else None


def _write_stub(out: Path) -> None:
    write_atomic(out / "run.json", dump({"format": FORMAT, "version": 1, "status": "started",
                                         "files": list(MANIFEST)}), follow=False)


def not_a_run(out: str | os.PathLike, command: str) -> None:
    """Refuse to let `command` (compress, export) write its files into a run
    folder: they would replace the run's own (its model.safetensors, its
    tokenizer.json), --overwrite or not; the run belongs to strata train."""
    if os.path.lexists(Path(out) / "run.json") or kept_run(Path(out)) is not None:  # or one set aside
        raise UsageError(f"{out}: holds a training run (run.json); strata {command} would replace the "
                         f"run's files: -o names a folder of its own")
