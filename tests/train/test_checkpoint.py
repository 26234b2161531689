"""Checkpoints: a crash in the middle of writing one leaves the previous one
whole and loadable; weights are in the spec's own names; nothing is unpickled."""

from __future__ import annotations

import json
import pickle

from tests.optional import require

torch = require("torch")

import pytest

import strata
from strata.backends.torch.weights_file import WeightsError
from strata.errors import UsageError
from strata.train.checkpoint import find_checkpoint
from strata.train.run import Run
from tests.train.helpers import GPT, losses, text, write


class Killed(BaseException):
    """Stands for the process dying (not an Exception: nothing may catch it)."""


@pytest.fixture
def setup(tmp_path):
    return write(tmp_path / "g.arch", GPT), write(tmp_path / "a.txt", text())


def _train(spec, data, out, **kw):
    kw = {"steps": 15, "checkpoint_every": 5, "eval_every": 5, **kw}
    return strata.train(spec, data=str(data), out=out, progress=False, **kw)


@pytest.mark.slow
def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(setup, tmp_path, monkeypatch):
    import safetensors.torch as st

    spec, data = setup
    real, calls = st.save_file, []

    def dying(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 4:  # step 10: model.safetensors, then die halfway through optimizer.safetensors
            real(tensors, filename, metadata=metadata)
            with open(filename, "r+b") as f:
                f.truncate(f.seek(0, 2) // 2)
            raise Killed
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(st, "save_file", dying)
    with pytest.raises(Killed):
        _train(spec, data, tmp_path / "r")
    monkeypatch.setattr(st, "save_file", real)
    run = tmp_path / "r"
    ckpt = find_checkpoint(run)
    assert ckpt.step == 5 and json.loads((run / "latest.json").read_text())["step"] == 5
    # step 10 was written in a temporary folder, never named step-00000010, and removed
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000005"]
    model = strata.compile(str(spec), weights=ckpt.weights)     # the previous checkpoint loads
    assert torch.isfinite(model(torch.zeros(1, 4, dtype=torch.long))).all()
    osd, rng = ckpt.optimizer()
    assert "torch/0" in rng and all("exp_avg" in s for s in osd["state"].values())
    # and the run continues from it as if nothing had happened
    _train(spec, data, run, resume=True)
    _train(spec, data, tmp_path / "straight")
    assert losses(run) == losses(tmp_path / "straight")


def test_weights_are_in_the_specs_names_and_load_with_or_without_passes(setup, tmp_path):
    spec, data = setup
    run = _train(spec, data, tmp_path / "r")
    from safetensors import safe_open

    with safe_open(str(run.weights()), "pt") as f:
        names = set(f.keys())
    assert "decoder.h.0.attn.q.weight" in names and not any("qkv" in n for n in names)
    assert "decoder.lm_head.weight" not in names  # tied: stored once
    ids = torch.randint(0, 128, (2, 16))
    fused = strata.compile(str(spec), weights=run.weights()).eval()   # passes { fuse_qkv }
    plain = strata.compile(str(spec), passes=[], weights=run.path / "model.safetensors").eval()
    torch.testing.assert_close(fused(ids), plain(ids))
    torch.testing.assert_close(fused(ids), run.model(ids))
    best = find_checkpoint(run.path, "best")
    assert best is not None and best.state["best_val"] == min(r[2] for r in losses(run.path) if r[2])


def test_only_latest_and_best_are_kept(setup, tmp_path):
    spec, data = setup
    run = _train(spec, data, tmp_path / "r", steps=20)
    kept = sorted(p.name for p in (run.path / "checkpoints").iterdir())
    named = {json.loads((run.path / f).read_text())["path"].split("/")[1]
             for f in ("latest.json", "best.json")}
    assert set(kept) == named and "step-00000020" in kept


def test_hostile_pointer_and_pickled_optimizer(setup, tmp_path):
    spec, data = setup
    run = _train(spec, data, tmp_path / "r")
    (run.path / "latest.json").write_text(json.dumps({"step": 5, "path": "../../../etc"}))
    with pytest.raises(UsageError, match="not a checkpoint pointer"):
        find_checkpoint(run.path)
    (run.path / "latest.json").write_text(json.dumps({"step": 15, "path": "checkpoints/step-00000015"}))
    opt = run.path / "checkpoints/step-00000015/optimizer.safetensors"
    opt.write_bytes(pickle.dumps({"state": {}}))
    with pytest.raises(UsageError, match="wrong size; the checkpoint is damaged"):
        find_checkpoint(run.path)
    state = json.loads((opt.parent / "state.json").read_text())
    state["files"]["optimizer.safetensors"] = opt.stat().st_size
    (opt.parent / "state.json").write_text(json.dumps(state))
    with pytest.raises(WeightsError, match="pickle"):
        find_checkpoint(run.path).optimizer()


def test_resume_refuses_another_tokenizer(setup, tmp_path):
    """--resume with `--set tokenizer=byte` on a char run went on with the run's char
    tokenizer.json and wrote tokenizer = byte into run.json's settings; it is refused
    before a step, the settings left as they were.  Unchanged settings resume."""
    spec, data = setup
    run = tmp_path / "r"
    _train(spec, data, run, steps=2, checkpoint_every=2, eval_every=2)
    before = json.loads((run / "run.json").read_text())["settings"]
    for change in ({"tokenizer": "byte"}, {"vocab_size": 300}):
        with pytest.raises(UsageError, match=r"its own tokenizer \(char, \d+ ids\); (tokenizer = byte|vocab_size = 300)"
                                             r" cannot change on --resume"):
            _train(spec, data, run, steps=3, resume=True, **change)
        assert json.loads((run / "run.json").read_text())["settings"] == before
    assert _train(spec, data, run, steps=3, resume=True, tokenizer="char").step == 3


def test_resume_with_fewer_steps_than_the_run_took(setup, tmp_path, capsys):
    """`train --resume --steps 1` on a run at step 2 printed the train line with
    '1 steps', exited at step 2, and wrote steps = 1 and another start into
    run.json; it says in one line that the run is past them, exit 0, nothing written."""
    from strata.cli import main

    spec, data = setup
    run = tmp_path / "r"
    _train(spec, data, run, steps=2, checkpoint_every=2, eval_every=2)
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "run.lock"}
    assert main(["train", str(spec), "--data", str(data), "--out", str(run), "--resume",
                 "--steps", "1"]) == 0
    out = capsys.readouterr()
    assert out.out == (f"{run}: the run is already at step 2, past the 1 step asked for; give --steps "
                       "larger than 2 to train further\n") and out.err == "", out
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "run.lock"} == files


@pytest.mark.parametrize("schedule", ["linear(warmup=1)", "cosine(warmup=1)"])
def test_a_schedule_ending_at_lr_0_resumes_and_evaluates(setup, tmp_path, schedule):
    """A linear or cosine schedule to min_lr = 0 (their default) reaches lr 0 at the
    last step; its checkpoint's state.json was read as damaged ('param_groups.0.lr':
    Input should be greater than 0), so `--resume` and `eval --checkpoint best` failed."""
    spec, data = setup
    run = tmp_path / "r"
    _train(spec, data, run, steps=3, checkpoint_every=3, eval_every=3, schedule=schedule)
    state = json.loads((run / "checkpoints/step-00000003/state.json").read_text())
    assert state["param_groups"][0]["lr"] == 0
    assert Run.open(run).evaluate(which="best")["count"] > 0
    assert _train(spec, data, run, steps=4, resume=True, schedule=schedule).step == 4


@pytest.mark.parametrize("was, now", [("sgd(lr=0.1)", "adamw(lr=1e-3)"), ("adamw(lr=1e-3)", "sgd(lr=0.1)")])
def test_resume_with_the_other_optimizer_starts_it_afresh(setup, tmp_path, capsys, was, now):
    """A run trained with sgd resumed with adamw (the spec's optimizer after a run
    started with --set 'optimizer=sgd(...)') loaded SGD's param groups into AdamW:
    internal error KeyError 'betas' at the first step.  The other optimizer starts
    afresh, said in one line."""
    spec, data = setup
    run = tmp_path / "r"
    _train(spec, data, run, steps=2, checkpoint_every=2, eval_every=2, optimizer=was)
    capsys.readouterr()
    assert strata.train(spec, data=str(data), out=run, steps=3, eval_every=3, resume=True,
                        optimizer=now).step == 3
    kinds = [k.split("(")[0] for k in (was, now)]
    assert (f"resume: the checkpoint holds {kinds[0]}'s state and the run now trains with {kinds[1]}; "
            "the optimizer starts afresh") in capsys.readouterr().err


def test_resume_trains_with_the_optimizer_settings_given_now(setup, tmp_path, monkeypatch):
    """`--resume --set 'optimizer=adamw(weight_decay=0.5, betas=(0.8, 0.9))'` wrote the new
    settings into run.json but trained on with the checkpoint's (loading the optimizer
    state replaces its param groups); the state is the checkpoint's, the settings today's."""
    spec, data = setup
    run, seen, step = tmp_path / "r", [], torch.optim.AdamW.step

    def spy(self, *a, **kw):
        seen.append([(g["weight_decay"], tuple(g["betas"])) for g in self.param_groups])
        return step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    _train(spec, data, run, steps=2, checkpoint_every=2, eval_every=2, optimizer="adamw(weight_decay=0.1)")
    assert seen[-1] == [(0.1, (0.9, 0.999)), (0.0, (0.9, 0.999))]
    _train(spec, data, run, steps=3, resume=True, optimizer="adamw(weight_decay=0.5, betas=(0.8, 0.9))")
    assert seen[-1] == [(0.5, (0.8, 0.9)), (0.0, (0.8, 0.9))]
    assert json.loads((run / "run.json").read_text())["settings"]["optimizer"]["weight_decay"] == 0.5
