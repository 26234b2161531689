"""Generation: the KV-cached path gives the tokens of full recomputation;
generating past the model's positions keeps going; runs generate and evaluate
from the command line."""

from __future__ import annotations

import json

from tests.optional import require

torch = require("torch")

import pytest

import strata
from strata.cli import main
from strata.train.generate import generate_ids
from tests.train.helpers import BERT_PRETRAIN, GPT, text, write


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    spec, data = write(tmp / "g.arch", GPT), write(tmp / "a.txt", text())
    return strata.train(spec, data=str(data), out=tmp / "r", steps=40, progress=False)


def test_cache_and_no_cache_agree(run):
    model = run.model
    prompt = torch.tensor([run.tokenizer.encode("the cat sat").tolist()] * 2)
    a = generate_ids(model, prompt, 15, temperature=0.0, cache=True)
    b = generate_ids(model, prompt, 15, temperature=0.0, cache=False)
    assert torch.equal(a, b) and a.shape == (2, 11 + 15)
    torch.manual_seed(7)
    c = generate_ids(model, prompt, 15, temperature=1.0, top_k=5, cache=True)
    torch.manual_seed(7)
    d = generate_ids(model, prompt, 15, temperature=1.0, top_k=5, cache=False)
    assert torch.equal(c, d)


def test_generation_past_the_models_positions(run):
    out = run.generate("the ", tokens=60, temperature=0.0)  # ctx is 32
    assert out.startswith("the ") and len(out) == 64
    assert run.generate("the ", tokens=20, seed=3) == run.generate("the ", tokens=20, seed=3)


def test_cli_generate_and_eval(run, capsys):
    assert main(["generate", str(run.path), "--prompt", "the cat", "--tokens", "12", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the cat") and len(out.rstrip("\n")) >= 19
    assert main(["eval", str(run.path)]) == 0
    line = capsys.readouterr().out
    assert "(validation split): loss" in line and "perplexity" in line
    other = write(run.path.parent / "other.txt", text(500, seed=5))
    assert main(["eval", str(run.path), "--data", str(other), "--json"]) == 0
    assert '"perplexity"' in capsys.readouterr().out


def test_eval_matches_a_direct_computation(run):
    import torch.nn.functional as F

    res = run.evaluate()
    ids = torch.from_numpy(run.tokenizer.encode(text()).astype("int64"))
    val = ids[len(ids) - int(len(ids) * 0.1):]
    n = (len(val) - 1) // 16
    x = val[: n * 16].view(n, 16)
    y = val[1: n * 16 + 1].view(n, 16)
    with torch.no_grad():
        want = F.cross_entropy(run.model(x).flatten(0, 1), y.flatten()).item()
    assert res["count"] == n * 16 and abs(res["loss"] - want) < 1e-5


def test_generate_errors(run, tmp_path, capsys):
    assert main(["generate", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["generate", str(run.path), "--prompt", "Zebra!"]) == 2
    assert "never saw: '!' 'Z'" in capsys.readouterr().err
    data = write(tmp_path / "a.txt", text())
    bert = strata.train(write(tmp_path / "b.arch", BERT_PRETRAIN), data=str(data), out=tmp_path / "b",
                        steps=2, progress=False)
    assert main(["generate", str(bert.path)]) == 2
    assert "a mlm model does not generate text" in capsys.readouterr().err


def test_damaged_run_json(run, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run.path, bad)
    info = json.loads((bad / "run.json").read_text())
    info["settings"]["batch"] = -1
    (bad / "run.json").write_text(json.dumps(info))
    assert main(["eval", str(bad)]) == 2
    assert "run.json: damaged: 'settings.batch': Input should be greater than 0" in capsys.readouterr().err
    (bad / "run.json").write_text('{"format": "strata-run", "version": 1, "objective": []}')
    assert main(["generate", str(bad)]) == 2
    assert "run.json: damaged: 'name': Field required" in capsys.readouterr().err


def test_seq2seq_padding_does_not_change_a_row(tmp_path):
    """A source padded inside a batch gives the logits it gives alone (the mask reaches the model)."""
    from strata.train.dataset import Examples
    from strata.train.objectives import Loss, Seq2Seq, choose_objective
    from strata.train.objectives.seq2seq import Seq2SeqBatches
    from strata.train.tokenizer import CharTokenizer
    from tests.train.helpers import SEQ2SEQ

    import numpy as np

    tok = CharTokenizer(list("abcdef"), list(Seq2Seq.specials))
    src = [tok.encode("abc"), tok.encode("abcdefabcdef")]
    tgt = [tok.encode("cba"), tok.encode("fed")]
    flat = lambda parts: (np.concatenate(parts), np.cumsum([0] + [len(p) for p in parts]))  # noqa: E731
    ex = Examples({"source": flat(src), "target": flat(tgt)}, None, np.arange(2), np.arange(2))
    s = Seq2SeqBatches(ex, context=16, batch=2, seed=0, eval_steps=1, tok=tok)
    torch.manual_seed(0)
    net = strata.compile(SEQ2SEQ).eval()
    loss = Loss(choose_objective(net.strata_graph), net)
    both = {k: torch.from_numpy(v) for k, v in s.eval_batch(0).items()}
    alone = {k: torch.from_numpy(v) for k, v in s.make(np.array([0])).items()}
    assert both["src"].shape[1] > alone["src"].shape[1]  # row 0 is padded in the pair
    with torch.no_grad():
        torch.testing.assert_close(loss.forward(net, both)["output"][:1], loss.forward(net, alone)["output"])


@pytest.mark.slow
def test_cli_generate_compiled(run, capsys):
    """--compile: the same greedy text, and the compilation's time said apart."""
    args = ["generate", str(run.path), "--prompt", "the cat", "--tokens", "12", "--temperature", "0"]
    assert main(args) == 0
    want = capsys.readouterr().out
    assert main(args + ["--compile"]) == 0
    out = capsys.readouterr()
    assert out.out == want and "compiling the decoding step took" in out.err and "tokens/s" in out.err
