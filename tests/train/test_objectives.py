"""Every objective learns: the loss falls on a short run.  The objective is read
from the model's heads; the distillation loss is zero when teacher = student."""

from __future__ import annotations

import pytest

from tests.optional import require

torch = require("torch")

import strata
from strata.compiler import build_text
from strata.errors import SpecError, UsageError
from strata.train.objectives import choose_objective
from tests.train.helpers import (
    BERT_CLASSIFY,
    BERT_PRETRAIN,
    GPT,
    SEQ2SEQ,
    labels_jsonl,
    metrics,
    pairs_jsonl,
    text,
    write,
)


def _falls(run, term="train_loss", frac=0.8):
    m = [r[term] for r in metrics(run.path) if term in r]
    first, last = sum(m[:3]) / 3, sum(m[-3:]) / 3
    assert last < frac * first, (first, last)


def test_causal_lm_loss_falls(tmp_path):
    require("matplotlib")  # loss.png
    data = write(tmp_path / "a.txt", text())
    run = strata.train(write(tmp_path / "g.arch", GPT), data=str(data), out=tmp_path / "r",
                       progress=False)
    assert run.info["objective"]["name"] == "causal_lm"
    _falls(run)
    vals = [r["val_loss"] for r in metrics(run.path) if "val_loss" in r]
    assert len(vals) == 3 and vals[-1] < vals[0]
    assert (run.path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_masked_lm_with_next_sentence_loss_falls(tmp_path):
    data = write(tmp_path / "a.txt", text())
    run = strata.train(write(tmp_path / "b.arch", BERT_PRETRAIN), data=str(data), out=tmp_path / "r",
                       progress=False)
    assert run.info["objective"] == {"name": "mlm", "output": "output", "nsp": "nsp", "classes": None}
    rec = metrics(run.path)
    assert {"mlm_loss", "nsp_loss"} <= set(rec[0]) and {"val_mlm_loss", "val_nsp_loss"} <= set(rec[-1])
    _falls(run, "mlm_loss")


def test_seq2seq_loss_falls_and_generates(tmp_path):
    data = pairs_jsonl(tmp_path / "pairs.jsonl")
    run = strata.train(write(tmp_path / "s.arch", SEQ2SEQ), data=str(data), out=tmp_path / "r",
                       progress=False)
    assert run.info["objective"]["name"] == "seq2seq"
    _falls(run, frac=0.7)
    out = run.generate("the cat", tokens=10, temperature=0)
    assert isinstance(out, str) and len(out) <= 10


@pytest.mark.slow
def test_classification_fine_tunes_from_pretrained_weights(tmp_path):
    data = write(tmp_path / "a.txt", text())
    pre = strata.train(write(tmp_path / "b.arch", BERT_PRETRAIN), data=str(data), out=tmp_path / "pre",
                       steps=5, progress=False)
    cls = labels_jsonl(tmp_path / "cls.jsonl")
    run = strata.train(write(tmp_path / "c.arch", BERT_CLASSIFY), data=str(cls), out=tmp_path / "r",
                       init=str(pre.path), freeze="encoder.word_embeddings", steps=40,
                       progress=False)
    assert run.info["objective"]["name"] == "classify" and run.info["frozen"] == 1
    # the pretrained embedding was loaded and stayed frozen; the pretraining tokenizer was reused
    pre_w = pre.load_model().encoder.word_embeddings.weight
    assert torch.equal(run.model.encoder.word_embeddings.weight, pre_w)
    assert (run.path / "tokenizer.json").read_text() == (pre.path / "tokenizer.json").read_text()
    _falls(run)
    res = run.evaluate()
    assert res["accuracy"] > 0.5 and res["count"] == 30


@pytest.mark.slow
def test_distillation_loss_falls(tmp_path):
    data = write(tmp_path / "a.txt", text())
    teacher = strata.train(write(tmp_path / "teacher.arch", GPT), data=str(data), out=tmp_path / "t",
                           steps=20, progress=False)
    student = GPT.replace("tiny_gpt", "student").replace("repeat(2)", "repeat(1)").replace(
        "passes { fuse_qkv }", f'passes {{ distill("teacher.arch", weights="{teacher.path}", alpha=0.7) }}')
    run = strata.train(write(tmp_path / "student.arch", student), data=str(data), out=tmp_path / "s",
                       progress=False)
    rec = metrics(run.path)
    assert "distill_loss" in rec[0] and "lm_loss" in rec[0]
    _falls(run, "distill_loss", frac=0.5)


def test_distillation_loss_is_zero_for_identical_teacher_and_student(tmp_path):
    from strata.train.objectives.distillation import DistillLoss
    from strata.train.objectives import Loss

    torch.manual_seed(0)
    net = strata.compile(GPT)
    obj = choose_objective(net.strata_graph)
    teacher = strata.compile(GPT)
    teacher.load_state_dict(net.state_dict())
    teacher.eval()
    loss = DistillLoss(Loss(obj, net), teacher, Loss(obj, teacher), temperature=2.0, alpha=1.0)
    ids = torch.randint(0, 128, (3, 16))
    b = {"tokens": ids, "labels": torch.roll(ids, -1, 1)}
    terms = loss.terms(loss.forward(net, b), b)
    assert terms["distill"].item() == 0.0 and terms["lm"].item() == 0.0
    other = DistillLoss(Loss(obj, net), strata.compile(GPT).eval(), Loss(obj, teacher), 2.0, 0.5)
    assert other.terms(other.forward(net, b), b)["distill"].item() > 0


def test_distillation_without_teacher_weights_is_a_located_error(tmp_path):
    write(tmp_path / "teacher.arch", GPT)
    student = GPT.replace("tiny_gpt", "student").replace("passes { fuse_qkv }",
                                                         'passes { distill("teacher.arch") }')
    with pytest.raises(SpecError) as e:
        strata.train(write(tmp_path / "s.arch", student), data=str(write(tmp_path / "a.txt", text())),
                     out=tmp_path / "r", progress=False)
    assert "s.arch:15:10: error" in str(e.value) and "has no weights" in str(e.value)


@pytest.mark.parametrize("spec,want", [(GPT, "causal_lm"), (BERT_PRETRAIN, "mlm"),
                                       (SEQ2SEQ, "seq2seq"), (BERT_CLASSIFY, "classify")])
def test_objective_from_heads(spec, want):
    assert choose_objective(build_text(spec)).name == want


def test_objective_override_and_errors():
    g = build_text(BERT_PRETRAIN)
    with pytest.raises(UsageError, match="needs a head this model lacks"):
        choose_objective(g, "causal_lm")
    with pytest.raises(UsageError, match="no head to train"):
        choose_objective(build_text("model m { stack s(t) { embedding(10, 8); attention(2) } }"))
    with pytest.raises(SpecError) as e:  # an lm_head on bidirectional attention would cheat
        choose_objective(build_text("model m { stack s(t) { embedding(10, 8) as e\n attention(2)\n"
                                    " lm_head(tie=e) } }"))
    assert "<string>:2:2" in str(e.value) and "not causal" in str(e.value)
