"""A run killed with SIGKILL (a real process, at whatever it was doing) and
resumed with --resume logs the same losses, step for step, as a run that was
never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from tests.optional import require

torch = require("torch")

import pytest

from tests.train.helpers import GPT, ROOT, STRATA, cli, losses, text, write

pytestmark = pytest.mark.slow


def test_sigkill_then_resume_gives_identical_losses(tmp_path):
    spec, data = write(tmp_path / "g.arch", GPT), write(tmp_path / "a.txt", text())
    args = ["train", spec, "--data", data, "--steps", "150", "--checkpoint-every", "10",
            "--eval-every", "25", "--set", "dropout=0.1", "--set", "eval_steps=1", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*STRATA, *map(str, args), "--out", str(tmp_path / "killed")], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = tmp_path / "killed" / "latest.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(latest.read_text())["step"] >= 20:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, proc.stderr.read()
    step = json.loads(latest.read_text())["step"]
    assert 20 <= step < 150

    r = cli(*args, "--out", tmp_path / "killed", "--resume")
    assert r.returncode == 0, r.stderr
    r = cli(*args, "--out", tmp_path / "straight")
    assert r.returncode == 0, r.stderr
    resumed, straight = losses(tmp_path / "killed"), losses(tmp_path / "straight")
    assert len(straight) == 150 + 150 // 25  # one line per step, one per evaluation (150: the last)
    assert resumed == straight
    history = json.loads((tmp_path / "killed" / "run.json").read_text())["history"]
    assert [h["start_step"] for h in history] == [0, step]
