"""The loop: metrics a person can read, schedules, weight decay on matrices only,
gradient accumulation, and a NaN that stops the run keeping the last good checkpoint."""

from __future__ import annotations

import json

from tests.optional import require

torch = require("torch")

import pytest

import strata
from strata.cli import main
from strata.train.optim import lr_at, make_optimizer
from tests.train.helpers import GPT, metrics, text, write


def test_metrics_lines(tmp_path):
    spec, data = write(tmp_path / "g.arch", GPT), write(tmp_path / "a.txt", text())
    run = strata.train(spec, data=str(data), out=tmp_path / "r", steps=12, eval_every=5,
                       progress=False)
    m = metrics(run.path)
    steps = [r for r in m if "train_loss" in r]
    vals = [r for r in m if "val_loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 13))
    assert set(steps[0]) >= {"step", "train_loss", "lr", "tokens_per_s", "time", "grad_norm"}
    assert [r["step"] for r in vals] == [5, 10, 12]          # periodic, and one at the end
    assert all(abs(r["val_ppl"] - 2.718281828 ** r["val_loss"]) < 1e-6 * r["val_ppl"] for r in vals)
    assert steps[0]["lr"] == pytest.approx(3e-3 / 6)          # warmup 5: (step + 1) / (warmup + 1)
    assert run.step == 12 and run.val_loss == vals[-1]["val_loss"]
    info = json.loads((run.path / "run.json").read_text())
    assert info["settings"]["steps"] == 12 and info["tokenizer"]["type"] == "char"


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from strata.train import objectives

    spec, data = write(tmp_path / "g.arch", GPT), write(tmp_path / "a.txt", text())
    real, calls = objectives.Loss.terms, []

    def poisoned(self, out, b):
        calls.append(1)
        t = real(self, out, b)
        return {k: v * float("nan") for k, v in t.items()} if len(calls) > 13 else t

    monkeypatch.setattr(objectives.Loss, "terms", poisoned)
    code = main(["train", str(spec), "--data", str(data), "--out", str(tmp_path / "r"), "-q",
                 "--steps", "30", "--checkpoint-every", "5", "--eval-every", "100"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "step 14: the training loss is nan; stopped. The last good checkpoint, step 10" in err
    assert "--resume" in err and "Traceback" not in err
    assert json.loads((tmp_path / "r" / "latest.json").read_text())["step"] == 10
    last = metrics(tmp_path / "r")[-1]
    assert last["step"] == 14 and last["train_loss"] is None and last["error"] == "non-finite loss"


def test_schedules():
    cos = {"type": "cosine", "warmup": 10, "min_lr": 0.1}
    assert lr_at(9, 100, cos, 1.0) == pytest.approx(10 / 11)
    assert lr_at(10, 100, cos, 1.0) == pytest.approx(1.0)
    assert lr_at(99, 100, cos, 1.0) == pytest.approx(0.1)
    lin = {"type": "linear", "warmup": 0, "min_lr": 0.0}
    assert lr_at(0, 11, lin, 1.0) == 1.0 and lr_at(5, 11, lin, 1.0) == pytest.approx(0.5)
    assert lr_at(50, 100, {"type": "constant", "warmup": 0}, 0.3) == 0.3


def test_weight_decay_only_on_matrices():
    net = strata.compile(GPT)
    opt = make_optimizer(list(net.named_parameters()), {"type": "adamw", "lr": 1e-3, "betas": (0.9, 0.99),
                                                        "eps": 1e-8, "weight_decay": 0.1}, "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in net.parameters())  # the tied head counted once


def test_accumulation_divides_by_the_whole_global_batch(tmp_path):
    """batch 8 x 2 micro-steps: the gradient is the mean over all 16 rows."""
    from strata.train.objectives.causal_lm import LMWindows
    from strata.train.distributed import Dist
    from strata.train.objectives import choose_objective
    from strata.train.loop import Loop
    from strata.train.objectives import Loss

    torch.manual_seed(0)
    net = strata.compile(GPT)
    ref = strata.compile(GPT)
    ref.load_state_dict(net.state_dict())
    data = torch.randint(0, 128, (4000,)).numpy()
    sampler = LMWindows(data, data, context=16, batch=8, seed=0, eval_steps=1)
    cfg = {"steps": 1, "accumulate": 2, "grad_clip": None, "dtype": "float32",
           "schedule": {"type": "constant", "warmup": 0}, "optimizer": {"lr": 0.1}}
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = Loss(choose_objective(net.strata_graph), net)
    loop = Loop(model=net, params=list(net.parameters()), loss=loss, eval_loss=loss, sampler=sampler,
                opt=opt, cfg=cfg, dist=Dist(), device="cpu", metrics=None, progress=None,
                save=lambda *a: None)
    loop.step(0)
    both = [sampler.train_batch(0, m) for m in range(2)]
    x = torch.cat([torch.from_numpy(b["tokens"]) for b in both])
    y = torch.cat([torch.from_numpy(b["labels"]) for b in both])
    torch.nn.functional.cross_entropy(ref(x).flatten(0, 1), y.flatten()).backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    for (name, a), b in zip(net.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_perplexity_is_the_masked_lms_beside_next_sentence_prediction(tmp_path):
    """BERT pretraining's validation loss is the masked-LM loss plus the next-sentence
    loss; val_ppl and `strata eval`'s perplexity were exp of that sum (e^0.69 times the
    masked LM's).  They are exp of the masked-LM term."""
    import math

    from tests.train.helpers import BERT_PRETRAIN

    data = write(tmp_path / "a.txt", text())
    run = strata.train(write(tmp_path / "b.arch", BERT_PRETRAIN), data=str(data), out=tmp_path / "r",
                       steps=2, eval_every=2, eval_steps=2, progress=False)
    val = [r for r in metrics(run.path) if "val_loss" in r][-1]
    assert val["val_nsp_loss"] > 0.1 and val["val_loss"] == pytest.approx(val["val_mlm_loss"] + val["val_nsp_loss"])
    assert val["val_ppl"] == pytest.approx(math.exp(val["val_mlm_loss"]))
    r = run.evaluate()
    assert r["perplexity"] == pytest.approx(math.exp(r["mlm_loss"]))
