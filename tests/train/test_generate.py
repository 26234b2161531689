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


def test_a_prompt_longer_than_the_positions_is_printed_whole(run):
    prompt = "the cat sat on the mat and the dog sat on the log"  # 49 characters; ctx is 32
    out = run.generate(prompt, tokens=10, temperature=0.0)
    assert out.startswith(prompt) and len(out) == len(prompt) + 10
    assert out[len(prompt):] == run.generate(prompt[-32:], tokens=10, temperature=0.0)[32:]  # read: the last 32


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


def test_eval_with_max_batches_tokenizes_only_what_it_reads(run, monkeypatch):
    """`strata eval RUN --data BIG --max-batches 1` tokenized all of BIG (a 300 MB
    file: 26 s and 5 GB to score one batch); it reads as far as its batches do,
    with the same figures as the whole file gives them."""
    big = write(run.path.parent / "big.txt", (text() + "\n") * 200)  # ~3 MB, many lines
    whole = run.evaluate(str(big), max_batches=2)
    monkeypatch.setattr("strata.train.data.CHUNK", 1 << 14)  # pieces of 16 KB, not 4 MB
    tok = type(run.tokenizer)
    seen = []
    encode = tok.encode
    monkeypatch.setattr(tok, "encode", lambda self, t: seen.append(len(t)) or encode(self, t))
    part = run.evaluate(str(big), max_batches=2)
    assert part["loss"] == whole["loss"] and part["count"] == whole["count"] == 2 * 8 * 16
    assert sum(seen) < big.stat().st_size // 10


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


def test_characters_the_tokenizer_never_saw_name_the_input(run, tmp_path, capsys):
    """`eval --data` and `generate --prompt` in characters the run's char tokenizer has
    no id for said only 'the text has characters the tokenizer never saw': not
    which text, nor what to give instead."""
    n = run.tokenizer.vocab_size
    other = write(tmp_path / "other.txt", "Zebra! " * 100)
    assert main(["eval", str(run.path), "--data", str(other)]) == 2
    assert capsys.readouterr().err == (
        f"strata: error: {other} has characters the tokenizer never saw: '!' 'Z' (a char tokenizer of "
        f"{n} ids, one per character of the text it was fitted on): give --data text in the characters "
        "the model trained on\n")
    assert main(["generate", str(run.path), "--prompt", "Zebra!"]) == 2
    assert capsys.readouterr().err == (
        f"strata: error: the prompt has characters the tokenizer never saw: '!' 'Z' (a char tokenizer of "
        f"{n} ids, one per character of the text it was fitted on): write the prompt in the characters "
        "the model trained on\n")
    data = write(tmp_path / "a.txt", text())
    bert = strata.train(write(tmp_path / "b.arch", BERT_PRETRAIN), data=str(data), out=tmp_path / "b",
                        steps=2, progress=False)
    assert main(["generate", str(bert.path)]) == 2
    assert "a model of the mlm objective does not generate text" in capsys.readouterr().err


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


def test_sampling_at_a_small_temperature_never_makes_nan():
    """Logits / temperature once overflowed to inf, and softmax(inf - inf) made NaN
    (torch.multinomial's RuntimeError): every sampler shifts the logits to a
    maximum of 0 first, which leaves softmax unchanged."""
    from strata.backends.torch.runtime import generate
    from strata.backends.torch.speculative import probabilities
    from strata.train.generate import pick

    logits = torch.tensor([[3e37, 0.0, -3e37], [0.0, 2e37, 1e37]])
    for top_k in (None, 2):
        assert pick(logits, 1e-6, top_k).view(-1).tolist() == [0, 1]
        torch.testing.assert_close(probabilities(logits, 1e-6, top_k),
                                   torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    model = strata.compile("model m { stack s(tokens) { embedding(16, 8) as e; residual { attention(2, "
                           "causal=true) }; layernorm as ln; lm_head(tie=e) } }")
    with torch.no_grad():
        model.s.ln.weight.fill_(1e37)  # logits of about 1e37: / 1e-6 is past float32's largest
    torch.manual_seed(0)
    out = generate(model, torch.tensor([[3, 4]]), 4, temperature=1e-6, top_k=3)
    assert out.shape == (1, 6)


def test_generate_refuses_a_tiny_temperature_and_weights_that_are_not_finite(run, tmp_path, capsys):
    """A temperature under 1e-6 (1e-300 is 0 in float32: 0 / 0) and NaN weights (every
    probability NaN) are one-line errors, not the sampler's RuntimeError."""
    from safetensors.torch import load_file, save_file

    assert main(["generate", str(run.path), "--temperature", "1e-300", "--tokens", "2", "-q"]) == 2
    assert "--temperature should be 0 (greedy) or at least 1e-06; got 1e-300" in capsys.readouterr().err
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run.path, bad)
    w = load_file(bad / "model.safetensors")
    name = sorted(w)[0]
    w[name] = torch.full_like(w[name], float("nan"))
    save_file(w, bad / "model.safetensors")
    assert main(["generate", str(bad), "--tokens", "2", "--temperature", "0.8", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"strata: error: {bad}: ") and "hold NaN or infinity" in err
    assert "did its training diverge?" in err and len(err.strip().splitlines()) == 1


def test_a_quantized_compress_output_generates(run, tmp_path, capsys):
    """The finite-weights check reads plain float parameters only (a quantized
    kernel's packed weights are not tensors it can test)."""
    out = tmp_path / "q"
    assert main(["compress", str(run.path), "--pass", "quantize(int8_dynamic)", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["generate", str(out), "--tokens", "3", "--temperature", "0", "-q"]) == 0
    assert len(capsys.readouterr().out) >= 4  # the prompt (a newline) and 3 tokens


def test_a_kv_cache_that_cannot_fit_is_refused_before_it_is_allocated(tmp_path, capsys):
    """A model without a position limit preallocates keys and values for every new
    token: --tokens 10**8 once asked the allocator for 25 GB a tensor (an internal
    error, or the machine's memory)."""
    spec = write(tmp_path / "r.arch", "model r { stack s(tokens) { embedding(128, 64) as wte; residual { rmsnorm; "
                 "attention(4, causal=true) }; position(rotary); lm_head(tie=wte) } }\n")
    data = write(tmp_path / "a.txt", text())
    run = strata.train(spec, data=str(data), out=tmp_path / "run", steps=1, batch=2, context=8, progress=False)
    capsys.readouterr()
    assert main(["generate", str(run.path), "--tokens", str(10 ** 12), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("strata: error: --tokens 1,000,000,000,000: the KV cache of ") and "generate fewer" in err
    assert main(["generate", str(run.path), "--tokens", "3", "-q"]) == 0


def test_tokens_past_the_positions_are_bounded_before_they_are_spent(run, capsys):
    """A model with learned positions caches at most ctx positions and goes on past them
    by re-reading the last ctx tokens: --tokens 10**18 on it ran without end, holding
    every token written (and copying all of them at each token).  The ids it would
    hold are refused first; past the positions each token costs one window, not the
    whole text so far."""
    assert main(["generate", str(run.path), "--tokens", str(10 ** 18), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("strata: error: --tokens 1,000,000,000,000,000,000: the KV cache of ")
    assert "1,000,000,000,000,000,001 token ids needs" in err and "generate fewer tokens" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(strata.errors.UsageError, match="token ids needs"):
        run.generate("the ", tokens=10 ** 18)
    # past ctx (32) without the cache: each step reads the last 32 tokens, as before
    model, prompt = run.model, torch.tensor([run.tokenizer.encode("the cat sat").tolist()])
    got = generate_ids(model, prompt, 40, temperature=0.0, ctx=32, cache=False)
    want = prompt
    for _ in range(40):
        want = torch.cat([want, model(want[:, -32:])[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(got, want)


def test_an_empty_prompt_is_refused_for_every_objective_that_generates(run, tmp_path, capsys):
    """A causal LM refused an empty prompt (nothing to continue); an encoder-decoder
    translated the source `[EOS]` alone, which training never shows it (an example's
    source may not be empty).  Both refuse it, in one line, before generating."""
    from tests.train.helpers import SEQ2SEQ

    s2s = strata.train(write(tmp_path / "s.arch", SEQ2SEQ), out=tmp_path / "s", steps=1, progress=False)
    for r in (run, s2s):
        assert main(["generate", str(r.path), "--prompt", "", "-q"]) == 2
        err = capsys.readouterr().err
        assert err == "strata: error: the prompt is empty after tokenizing; give at least one character\n"
        with pytest.raises(strata.errors.UsageError, match="the prompt is empty"):
            r.generate("", tokens=3)
    assert len(s2s.generate("the cat", tokens=3, temperature=0)) <= 3  # a source to translate: fine
