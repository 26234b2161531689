"""`--overwrite` loses nothing until the new run's first checkpoint (strata/train/overwritten.py,
docs/training.md "The run folder").  Was: the claim removed the old run's files,
so a start that then failed (data too short for the context) or was killed left
a stub run.json where a trained run had been; then (until the commit moved to
the first checkpoint) an error or a kill in the new run's first steps still lost
the old run, and the new one had no checkpoint to resume."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.optional import require

torch = require("torch")

from strata.cli import main  # noqa: E402
from strata.errors import TrainingError, UsageError  # noqa: E402
from strata.train import start  # noqa: E402
from strata.train.folder import RunLock, claim  # noqa: E402
from strata.train.overwritten import ASIDE  # noqa: E402
from tests.train.helpers import GPT, ROOT, text, write  # noqa: E402

TRAIN = ["train", "g.arch", "--out", "r", "--steps", "1", "-q"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """r: a finished 1-step run holding two files of the user's; its files, byte for byte."""
    monkeypatch.chdir(tmp_path)
    write(Path("g.arch"), GPT)
    write(Path("d.txt"), text(1500))
    write(Path("short.txt"), "the cat sat.\n")
    assert main([*TRAIN, "--data", "d.txt"]) == 0
    write(Path("r/notes.txt"), "mine")
    write(Path("r/checkpoints/mine.txt"), "mine too")
    return _files(Path("r"))


def test_an_overwrite_that_fails_before_its_first_step_keeps_the_old_run(trained, capsys):
    assert main([*TRAIN, "--data", "short.txt", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("strata: error: ") and "short.txt: too short" in err and err.count("\n") == 1, err
    assert _files(Path("r")) == trained and not Path("r", ASIDE).exists()
    assert main([*TRAIN, "--data", "d.txt"]) == 2  # still a run: the fixed command needs --overwrite again
    assert "r already holds a run: --resume continues it" in capsys.readouterr().err
    assert main([*TRAIN, "--data", "d.txt", "--overwrite", "--steps", "2"]) == 0
    now = _files(Path("r"))
    assert not Path("r", ASIDE).exists() and now["notes.txt"] == b"mine" and now["checkpoints/mine.txt"] == b"mine too"
    assert '"step": 2' in Path("r/latest.json").read_text() and "checkpoints/step-00000001/state.json" not in now


def test_a_failed_overwrite_keeps_what_run_json_does_not_list(trained, capsys):
    """run.json's "files" edited down to itself: the names it leaves out are set aside
    and put back too (were removed as the new start's)."""
    info = json.loads(Path("r/run.json").read_text())
    write(Path("r/run.json"), json.dumps({**info, "files": ["run.json"]}))
    before = _files(Path("r"))
    assert main([*TRAIN, "--data", "short.txt", "--overwrite"]) == 2
    assert "too short" in capsys.readouterr().err
    assert _files(Path("r")) == before


# A real process stopped by SIGKILL at a point between the claim and the first checkpoint:
# `held` names the function that, patched, signals and waits to be killed there.
_HOLD = """
import sys, time
from pathlib import Path
import strata.train.overwritten as ow, strata.train.start as start, strata.train.state as state
from strata.cli import main

def hold(*_, **__):
    Path("held").write_text("now")
    time.sleep(600)

point = sys.argv[1]
if point == "claimed":        # the stub written, the old run aside: the data being tokenized
    start._dataset = hold
elif point == "started":      # the new run.json, model.arch and metrics.jsonl written, the loop next
    start._loop = hold
elif point == "stepped":      # the new run's steps taken, its first checkpoint being written
    state.TrainState.save = hold
else:                         # the third of the old run's names being moved aside
    moved, rename = [], ow._rename
    def third(*a):
        rename(*a)
        moved.append(a[0])
        if len(moved) == 3:
            hold()
    ow._rename = third
sys.exit(main(sys.argv[2:]))
"""


def _held_at(point: str, *extra: str) -> subprocess.Popen:
    """`strata train ... --overwrite` on r in a process of its own, waiting at `point`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", _HOLD, point, *TRAIN, "--data", "d.txt", "--overwrite", *extra],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not Path("held").exists():
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "the start never reached its point"
            time.sleep(0.1)
    except BaseException:
        _kill(p)
        raise
    return p


def _kill(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait()


def _killed_at(point: str, *extra: str) -> None:
    _kill(_held_at(point, *extra))


@pytest.mark.parametrize("point", ["moving", "claimed", "started", "stepped"])
def test_an_overwrite_killed_before_its_first_checkpoint_is_put_back_by_the_next_start(trained, capsys, point):
    _killed_at(point, "--steps", "3")
    new = Path("r/run.json")  # the new run's: none yet, its stub, the run.json it trains with
    assert (json.loads(new.read_text())["status"] if new.exists() else None) == \
        {"moving": None, "claimed": "started", "started": "ready", "stepped": "ready"}[point]
    if point == "stepped":  # three steps of the new run taken, no checkpoint of it yet
        assert '"step": 3' in Path("r/metrics.jsonl").read_text() and not Path("r/latest.json").exists()
    assert Path("r", ASIDE, "run.json").is_file()
    assert main(["generate", "r"]) == 2  # eval / generate say where the run is and how to get it back
    assert f"the run there is kept in r/{ASIDE} by an --overwrite" in capsys.readouterr().err
    assert main([*TRAIN, "--data", "d.txt"]) == 2  # refused before the data is read, the run named
    err = capsys.readouterr().err
    assert f"r already holds a run (kept in r/{ASIDE} by an --overwrite" in err and err.count("\n") == 1, err
    if point in ("claimed", "stepped"):  # --resume puts it back, says so, and continues it
        assert main(["train", "g.arch", "--out", "r", "--resume", "--steps", "2"]) == 0
        assert f"r: put back the run an --overwrite had set aside in r/{ASIDE}" in capsys.readouterr().err
        assert '"step": 2' in Path("r/latest.json").read_text() and Path("r/notes.txt").read_text() == "mine"
        assert not Path("r", ASIDE).exists()
        return
    claim(Path("r"), True, False, say=lambda _: None)[0].release()  # the claim of any start
    assert _files(Path("r")) == trained and not Path("r", ASIDE).exists()


def _fail_at(monkeypatch, step: int, error: BaseException):
    """The loop's optimizer step `step` (0-based) stops with `error`: out of memory, the
    NaN guard (a TrainingError), a batch the data cannot give.  Returns what undoes it."""
    from strata.train.loop import Loop

    real = Loop.step

    def step_or_fail(self, s: int) -> None:
        if s == step:
            raise error
        real(self, s)

    monkeypatch.setattr(Loop, "step", step_or_fail)
    return lambda: monkeypatch.setattr(Loop, "step", real)


@pytest.mark.parametrize("error", [TrainingError("step 1: the training loss is nan; stopped"),
                                   MemoryError(), UsageError("d.txt: a batch the data cannot give")])
def test_an_overwrite_that_fails_at_its_first_step_keeps_the_old_run(trained, capsys, monkeypatch, error):
    """Was: the old run was removed just before the loop, so an error at step 1 lost
    it and left a new run with no checkpoint."""
    _fail_at(monkeypatch, 0, error)
    assert main([*TRAIN, "--data", "d.txt", "--overwrite"]) != 0
    assert _files(Path("r")) == trained and not Path("r", ASIDE).exists()
    capsys.readouterr()
    assert main([*TRAIN, "--data", "d.txt"]) == 2  # the old run, back: the fixed command needs --overwrite
    assert "r already holds a run: --resume continues it" in capsys.readouterr().err


def test_an_overwrite_that_fails_after_its_first_checkpoint_is_the_new_run(trained, capsys, monkeypatch):
    """Its first checkpoint written, the new run is the folder's: an error later keeps it
    (the old run gone) for --resume to continue, as any run stopped in its loop."""
    fixed = _fail_at(monkeypatch, 2, TrainingError("step 3: the training loss is nan; stopped"))
    assert main([*TRAIN, "--data", "d.txt", "--overwrite", "--steps", "4", "--checkpoint-every", "2"]) == 1
    assert not Path("r", ASIDE).exists() and json.loads(Path("r/latest.json").read_text())["step"] == 2
    assert Path("r/notes.txt").read_text() == "mine"
    fixed()
    assert main(["train", "g.arch", "--out", "r", "--resume", "--steps", "4", "-q"]) == 0
    assert json.loads(Path("r/latest.json").read_text())["step"] == 4


def test_an_old_run_that_cannot_be_put_back_after_a_failed_start_is_said(trained, capsys, monkeypatch):
    """The start fails (data too short) and putting the old run back fails too (a folder
    planted at RUN/run.json): both are said, the second naming where the run is kept
    (was: swallowed, only 'too short' said), and the next claim puts it back."""
    real = start._dataset

    def planted(*a, **k):
        Path("r/run.json").unlink()
        Path("r/run.json").mkdir()
        return real(*a, **k)

    monkeypatch.setattr(start, "_dataset", planted)
    assert main([*TRAIN, "--data", "short.txt", "--overwrite"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"strata: error: r: cannot put back the run kept in r/{ASIDE} (Is a directory); it "
                      "stays there (the next strata train on r puts it back)"), err
    assert len(err) == 2 and "short.txt: too short" in err[1], err
    assert Path("r", ASIDE, "run.json").is_file()
    Path("r/run.json").rmdir()
    claim(Path("r"), True, False, say=lambda _: None)[0].release()
    assert _files(Path("r")) == trained and not Path("r", ASIDE).exists()


@pytest.mark.parametrize("flags", [[], ["--resume"], ["--overwrite"]])
def test_a_start_beside_one_between_its_claim_and_first_step_is_told_the_folder_is_in_use(trained, capsys, flags):
    """Another process holds r between its claim and its first step (its --overwrite has
    set the old run aside): this start is told the folder is in use, by whom (was: 'r
    already holds a run (kept in r/.overwritten ...)', which a plain start got, as if
    the holder had stopped)."""
    p = _held_at("claimed")
    try:
        assert main(["train", "g.arch", "--out", "r", "--data", "d.txt", "-q", *flags]) == 2
        err = capsys.readouterr().err
        assert err == (f"strata: error: r: in use by another strata train (pid {p.pid}); wait for it to "
                       "finish, or --out another folder\n"), err
    finally:
        _kill(p)
    claim(Path("r"), True, False, say=lambda _: None)[0].release()
    assert _files(Path("r")) == trained


def test_a_claim_that_meets_another_starts_check_takes_the_lock(tmp_path):
    """That check (`check_claim`) takes a shared flock on run.lock for an instant: a
    claim meeting it tries again rather than refuse a folder no one holds."""
    Path(tmp_path, "run.lock").write_text("")
    fd = os.open(tmp_path / "run.lock", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    threading.Timer(0.02, os.close, [fd]).start()
    RunLock.acquire(tmp_path).release()


def test_what_a_committed_overwrite_left_is_cleared(trained):
    """Killed while the old run's files were being removed (its run.json went first,
    `discard`): the new run stands, and the next claim clears the rest."""
    Path("r", ASIDE, "checkpoints").mkdir(parents=True)
    write(Path("r", ASIDE, "model.safetensors"), "old")
    assert main(["train", "g.arch", "--out", "r", "--resume", "--steps", "2", "-q"]) == 0
    assert not Path("r", ASIDE).exists() and '"step": 2' in Path("r/latest.json").read_text()


def test_a_planted_link_as_the_aside_is_refused(trained, tmp_path, capsys):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", Path("r", ASIDE))
    assert main([*TRAIN, "--data", "d.txt", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"r/{ASIDE}: not a folder strata made" in err and err.count("\n") == 1, err
    assert list((tmp_path / "elsewhere").iterdir()) == []
    Path("r", ASIDE).unlink()
    assert _files(Path("r")) == trained


def test_a_run_that_cannot_be_put_back_is_one_line_and_stays_aside(trained, capsys):
    """A folder planted where the new stub was (RUN/run.json): the claim cannot put
    the old run back; it says so in one line naming where the run is (was the
    OSError's 'run.json: Is a directory') and the run stays aside, whole, for the
    next try."""
    from strata.train.overwritten import set_aside

    set_aside(Path("r"))  # the claim's first half: a start killed right after it
    Path("r/run.json").mkdir()
    assert main(["train", "g.arch", "--out", "r", "--resume", "--steps", "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert err == f"strata: error: r: cannot put back the run kept in r/{ASIDE} (Is a directory); it stays there\n"
    Path("r/run.json").rmdir()
    claim(Path("r"), True, False, say=lambda _: None)[0].release()  # the next try puts it back
    assert _files(Path("r")) == trained and not Path("r", ASIDE).exists()


def test_compress_and_export_do_not_write_into_a_run_set_aside(trained):
    """Killed midway through setting the run aside, RUN holds no run.json: the run
    there is still one that compress -o / export -o must not write into."""
    from strata.errors import UsageError
    from strata.train.folder import not_a_run
    from strata.train.overwritten import set_aside

    set_aside(Path("r"))
    assert not Path("r/run.json").exists()
    with pytest.raises(UsageError, match="r: holds a training run"):
        not_a_run("r", "export")
