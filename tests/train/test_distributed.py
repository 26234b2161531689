"""torchrun: 2 gloo processes on CPU log the loss curve of 1 process with the same
seed and global batch (DDP and FSDP2); only rank 0 writes; a checkpoint from 2
processes resumes on 1."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.optional import require

torch = require("torch")

import pytest

from tests.train.helpers import GPT, ROOT, cli, losses, metrics, text, write

pytestmark = pytest.mark.slow

ARGS = ["--steps", "8", "--eval-every", "4", "--checkpoint-every", "4", "--set", "eval_steps=2",
        "--set", "schedule=constant(warmup=2)", "-q"]


def torchrun(n: int, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "strata", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def _files(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if "cache" not in p.parts)


def _close(a, b, tol=1e-5):
    assert [x[0] for x in a] == [x[0] for x in b]
    for (s, ta, va), (_, tb, vb) in zip(a, b):
        for x, y in ((ta, tb), (va, vb)):
            assert (x is None) == (y is None) and (x is None or abs(x - y) < tol * max(1, abs(x))), (s, x, y)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    spec, data = write(tmp / "g.arch", GPT), write(tmp / "a.txt", text())
    r = cli("train", spec, "--data", data, "--out", tmp / "one", *ARGS)
    assert r.returncode == 0, r.stderr
    return spec, data, tmp


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_equal_one(single, mode):
    spec, data, tmp = single
    out = tmp / mode
    fsdp = ["--fsdp"] if mode == "fsdp" else []
    r = torchrun(2, "train", spec, "--data", data, "--out", out, *ARGS, *fsdp)
    assert r.returncode == 0, r.stderr[-3000:]
    _close(losses(tmp / "one"), losses(out))
    # only rank 0 wrote: one line per step, the same files as one process, no stray temporaries
    assert [m["step"] for m in metrics(out) if "train_loss" in m] == list(range(1, 9))
    assert _files(out) == _files(tmp / "one")
    assert r.stdout.count("step 8") == 1


def test_checkpoint_from_two_processes_resumes_on_one(single):
    spec, data, tmp = single
    r = torchrun(2, "train", spec, "--data", data, "--out", tmp / "two-then-one", *ARGS)
    assert r.returncode == 0, r.stderr[-3000:]
    more = [a if a != "8" else "12" for a in ARGS]  # constant schedule: 8 steps, then 4 more
    r = cli("train", spec, "--data", data, "--out", tmp / "two-then-one", *more, "--resume")
    assert r.returncode == 0, r.stderr
    r = cli("train", spec, "--data", data, "--out", tmp / "one-12", *more)
    assert r.returncode == 0, r.stderr
    _close(losses(tmp / "one-12"), losses(tmp / "two-then-one"))


def test_a_refused_start_stops_every_process(single):
    """Rank 0 claims the run folder; when it refuses (here: a run is already there),
    the other ranks stop with the same one line instead of waiting for it."""
    spec, data, tmp = single
    r = torchrun(2, "train", spec, "--data", data, "--out", tmp / "one", *ARGS)
    assert r.returncode != 0
    assert r.stderr.count("already holds a run: --resume continues it") == 1, r.stderr[-3000:]
    assert "internal error" not in r.stderr  # (torchrun itself reports the failed ranks)


# Rank 1 fails at its first step, alone; rank 0, in the same step's all-reduce, fails too: gloo
# says the peer is gone once rank 1 leaves the group, and rank 1 waits for rank 0 to have put
# the old run back (its verdict in the store, strata/train/rank_stops.py) before it exits and
# torchrun stops the others (a SIGTERM, which like a kill would leave the old run aside).
_RANK_1_FAILS = """
import os, sys
from strata.errors import TrainingError
from strata.train.loop import Loop

real = Loop.step

def step(self, s):
    if os.environ.get("RANK") == "1":
        raise TrainingError(f"step {s + 1}: only rank 1 stops here")
    real(self, s)

Loop.step = step
from strata.cli import main
sys.exit(main())
"""


def test_a_failure_on_another_rank_before_the_first_checkpoint_keeps_the_old_run(single):
    """docs/training.md: --overwrite loses nothing before the new run's first checkpoint,
    whichever process stops it: rank 0 puts the old run back.  And the terminal says why:
    rank 1's own error, once, and rank 0 that rank 1 stopped (was: rank 0's gloo error as
    'internal error ... a bug in strata', and rank 1's error not at all)."""
    spec, data, tmp = single
    out = tmp / "overwritten-by-two"
    r = cli("train", spec, "--data", data, "--out", out, *ARGS)
    assert r.returncode == 0, r.stderr
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    script = write(tmp / "rank_1_fails.py", _RANK_1_FAILS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script), "train", str(spec), "--data", str(data), "--out", str(out), *ARGS,
                        "--overwrite"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode != 0, r.stderr[-3000:]
    after = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before, r.stderr[-3000:]
    # in either order: the processes' lines interleave
    assert r.stderr.count("strata: error: step 1: only rank 1 stops here") == 1, r.stderr[-3000:]
    assert r.stderr.count("strata: error: another process of this run (rank 1) stopped") == 1, r.stderr[-3000:]
    assert "internal error" not in r.stderr and "bug in strata" not in r.stderr, r.stderr[-3000:]
