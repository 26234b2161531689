"""How an `--overwrite` stopped at its edges leaves the run folder (strata/train/overwritten.py,
docs/training.md "The run folder"): Ctrl-C before the new run's first checkpoint puts the old
run back at once (was: kept aside until the next start); a kill between that checkpoint and the
commit keeps the new run (was: the next claim put the old run back and dropped the new
checkpoint); the temporary files of atomic writes a kill left are removed by the next claim,
strata's names only; a user's files in the run (in cache/, in .overwritten) are never removed."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.optional import require

torch = require("torch")

from strata.cli import main  # noqa: E402
from strata.errors import WriteError  # noqa: E402
from strata.train import folder, start, state  # noqa: E402
from strata.train.folder import claim  # noqa: E402
from strata.train.overwritten import ASIDE  # noqa: E402
from tests.train.helpers import ROOT, write  # noqa: E402
from tests.train import test_overwrite  # noqa: E402
from tests.train.test_overwrite import TRAIN, _fail_at, _files  # noqa: E402

trained = test_overwrite.trained  # the fixture: r, a finished 1-step run holding two files of the user's

# A real `strata train ... --overwrite` process that waits, at `point`, for a signal.
_HOLD = """
import sys, time
from pathlib import Path
import strata.train.checkpoint as checkpoint, strata.train.folder as folder, strata.train.state as state
from strata.io import atomic_output, write_atomic
from strata.cli import main

def hold(*_, **__):
    Path("held").write_text("now")
    time.sleep(600)

def half_written(path, data, follow=True):
    if Path(path).name != "latest.json":
        return write_atomic(path, data, follow)
    with atomic_output(path, follow) as tmp:
        tmp.write_text(data)
        hold()

point = sys.argv[1]
if point == "stepped":      # the new run's steps taken, its first checkpoint being written
    state.TrainState.save = hold
elif point == "pointing":   # its first checkpoint written, latest.json half-written (a temporary file)
    checkpoint.write_atomic = half_written
else:                       # "saved": latest.json names its first checkpoint; the commit next
    folder.discard = hold
sys.exit(main(sys.argv[2:]))
"""


def _held_at(point: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", _HOLD, point, *TRAIN, "--data", "d.txt", "--overwrite",
                          "--steps", "3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not Path("held").exists():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            pytest.fail(f"the start never reached {point}: {p.communicate()}")
        time.sleep(0.1)
    return p


def test_ctrl_c_before_the_first_checkpoint_puts_the_old_run_back_at_once(trained):
    p = _held_at("stepped")
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert _files(Path("r")) == trained and not Path("r", ASIDE).exists()


def test_ctrl_c_before_the_first_step_puts_the_old_run_back(trained, monkeypatch):
    """The data being tokenized, the loop not begun (Ctrl-C is KeyboardInterrupt, no Exception)."""
    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(start, "_dataset", interrupted)
    assert main([*TRAIN, "--data", "d.txt", "--overwrite"]) == 130
    assert _files(Path("r")) == trained and not Path("r", ASIDE).exists()


def test_ctrl_c_after_the_first_checkpoint_keeps_the_new_run(trained, monkeypatch):
    _fail_at(monkeypatch, 2, KeyboardInterrupt())
    assert main([*TRAIN, "--data", "d.txt", "--overwrite", "--steps", "4", "--checkpoint-every", "2"]) == 130
    assert not Path("r", ASIDE).exists() and json.loads(Path("r/latest.json").read_text())["step"] == 2


def test_a_stub_that_cannot_be_written_puts_the_old_run_back(trained, monkeypatch, capsys):
    """The old run set aside, the new stub run.json refused (a full disk): was kept aside
    until the next start, the claim having released the folder without putting it back."""
    real = folder._write_stub

    def full(out):
        if Path(out, ASIDE).exists():
            raise WriteError(f"{out}/run.json: cannot write (No space left on device)", "No space left on device")
        real(out)

    monkeypatch.setattr(folder, "_write_stub", full)
    assert main([*TRAIN, "--data", "d.txt", "--overwrite"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert _files(Path("r")) == trained and not Path("r", ASIDE).exists()


def test_a_kill_between_the_first_checkpoint_and_the_commit_keeps_the_new_run(trained, capsys):
    """latest.json names the new run's first checkpoint, the old run is still aside: the new run
    won (it can be resumed); the next claim finishes the commit and says so."""
    p = _held_at("saved")
    p.kill()
    p.wait()
    assert json.loads(Path("r/latest.json").read_text())["step"] == 3 and Path("r", ASIDE, "run.json").is_file()
    assert main([*TRAIN, "--data", "d.txt"]) == 2  # the folder's run is the new one, not the one aside
    err = capsys.readouterr().err
    assert "r already holds a run: --resume continues it" in err, err
    assert main(["train", "g.arch", "--out", "r", "--resume", "--steps", "4", "-q"]) == 0
    err = capsys.readouterr().err
    assert err == (f"strata: warning: r: removed the run an --overwrite had set aside in r/{ASIDE} (the new run had written "
                   "its first checkpoint, step 3, when it stopped)\n"), err
    metrics = [json.loads(line) for line in Path("r/metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "train_loss" in m] == [1, 2, 3, 4]  # the new run's 3 steps, then 1
    assert not Path("r", ASIDE).exists() and Path("r/notes.txt").read_text() == "mine"


def test_an_error_after_the_first_checkpoints_pointer_keeps_that_checkpoint(trained, monkeypatch, capsys):
    """best.json cannot be written (a full disk) after latest.json named the first checkpoint:
    the error says that checkpoint is kept, and it is (was: the old run put back over it)."""
    real = state.set_pointer

    def full(run, which, rel, **extra):
        if which == "best":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(run, which, rel, **extra)

    monkeypatch.setattr(state, "set_pointer", full)
    assert main([*TRAIN, "--data", "d.txt", "--overwrite", "--steps", "2"]) == 1
    assert "the last complete checkpoint, step 2" in capsys.readouterr().err
    assert json.loads(Path("r/latest.json").read_text())["step"] == 2 and not Path("r", ASIDE).exists()


def test_the_next_claim_removes_strata_temporary_files_only(trained):
    """Killed while latest.json was being written: its temporary file (.latest.json.k3j9x_2a.tmp)
    was left for good (was); a user's files with temporary-looking names stay."""
    p = _held_at("pointing")
    p.kill()
    p.wait()
    assert [n for n in os.listdir("r") if n.startswith(".latest.json.") and n.endswith(".tmp")]
    write(Path("r/.notes.tmp"), "mine")
    write(Path("r/cache/.mine.tmp"), "mine")
    write(Path("r/checkpoints/.mine.tmp"), "mine")
    claim(Path("r"), True, False, say=lambda _: None)[0].release()
    now = _files(Path("r"))
    assert {n: now.pop(n) for n in (".notes.tmp", "cache/.mine.tmp", "checkpoints/.mine.tmp")} == \
        dict.fromkeys((".notes.tmp", "cache/.mine.tmp", "checkpoints/.mine.tmp"), b"mine")
    assert now == trained and not Path("r", ASIDE).exists()


def test_an_overwrite_never_removes_a_users_files(trained, monkeypatch, capsys):
    """cache/.mine.tmp (a name like strata's temporary files) went aside with the old run and
    was removed with it (was); a file put into .overwritten stays there, said."""
    write(Path("r/cache/.mine.tmp"), "mine")
    real = start._dataset

    def planted(*a, **k):
        write(Path("r", ASIDE, "mine.txt"), "mine")
        return real(*a, **k)

    monkeypatch.setattr(start, "_dataset", planted)
    assert main([*TRAIN, "--data", "d.txt", "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert err == (f"strata: warning: r/{ASIDE}: kept mine.txt (not strata's) where the run --overwrite "
                   "replaced was; move it away\n"), err
    assert Path("r/cache/.mine.tmp").read_text() == "mine" and os.listdir(Path("r", ASIDE)) == ["mine.txt"]
    monkeypatch.setattr(start, "_dataset", real)
    assert main([*TRAIN, "--data", "d.txt", "--overwrite"]) == 0  # the folder left there is no obstacle
    assert Path("r", ASIDE, "mine.txt").read_text() == "mine" and Path("r/notes.txt").read_text() == "mine"


def test_an_old_run_that_cannot_be_removed_is_said_once(trained, monkeypatch, capsys):
    """The new run's first checkpoint written, .overwritten/run.json cannot be removed (a
    read-only folder): the error was printed twice, the error path trying the commit again and
    saying its failure too.  Once now; the new run is kept, the next claim finishes the commit."""
    real = os.unlink

    def refused(path, *a, **k):
        if str(path).endswith(f"{ASIDE}/run.json"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(os, "unlink", refused)
    assert main([*TRAIN, "--data", "d.txt", "--overwrite", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("cannot remove the old run kept in") == 1 and len(err.splitlines()) == 1, err
    assert json.loads(Path("r/latest.json").read_text())["step"] == 2 and Path("r", ASIDE, "run.json").is_file()


def test_ctrl_c_between_the_claim_and_the_lock_handed_back_puts_the_old_run_back(trained, monkeypatch):
    """Ctrl-C in _prepare_folder after `claim` set the old run aside, before the lock reached
    train(): the old run stayed aside (train() had no lock to abandon) until the next start."""
    real = start.Dist.share_bytes

    def interrupted(d, data):  # the tokenizer is shared before the claim: that one goes through
        if Path("r", ASIDE).exists():
            raise KeyboardInterrupt
        return real(d, data)

    monkeypatch.setattr(start.Dist, "share_bytes", interrupted)
    assert main([*TRAIN, "--data", "d.txt", "--overwrite"]) == 130
    assert _files(Path("r")) == trained and not Path("r", ASIDE).exists()
