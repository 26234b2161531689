"""`strata export --to hf` of specs that are no transformers family: a Hugging
Face repository with custom code (the generated module wrapped as a
PreTrainedModel).  transformers loads it with trust_remote_code=True, its
outputs are strata's and generate() picks strata's greedy tokens; a run folder
brings its tokenizer along."""

from __future__ import annotations

import json

import pytest

import strata
from strata import api
from strata.cli import main
from tests.optional import require
from tests.train.helpers import BERT_CLASSIFY, GPT, text, write

torch = require("torch")
transformers = require("transformers")

# Nothing a family has: a parallel block, ALiBi, qk-norm, and a pass (fused q, k, v).
CUSTOM = """\
model custom {
  vocab = 50
  d     = 32
  heads = 4
  block layer {
    residual {
      layernorm
      parallel { attention(heads, causal=true, qk_norm=true); mlp(4 * d, act=gelu) }
    }
  }
  stack decoder(tokens) {
    embedding(vocab, d) as wte
    position(alibi)
    repeat(2) layer as h
    layernorm as ln_f
    lm_head(tie=wte)
  }
}
passes { fuse_qkv }
"""


def _export(tmp_path, spec_text, name):
    spec = write(tmp_path / f"{name}.arch", spec_text)
    torch.manual_seed(0)
    net = api.compile(spec).eval()
    api.save_weights(net, tmp_path / f"{name}.safetensors")
    out = api.export(spec, tmp_path / f"{name}-hf", weights=tmp_path / f"{name}.safetensors")
    return net, out


def test_custom_causal_lm(tmp_path):
    net, out = _export(tmp_path, CUSTOM, "custom")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "strata" and config["strata_variables"]["d"] == 32
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_strata.StrataForCausalLM"
    assert "strata" not in (out / "strata_model.py").read_text().split('"""', 2)[2].split("import")[0]
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, net(ids), atol=1e-5, rtol=0)
        want = net.generate(ids[:1], 8)
    assert hf.generate(ids[:1], max_new_tokens=8, do_sample=False).tolist() == want.tolist()


# Rotary positions, grouped keys / values and a sliding window (shorter than the
# generated sequence): what a cache must get right besides ALiBi.
ROTARY_WINDOW = """\
model rw {
  vocab = 50
  d     = 32
  heads = 4
  block layer {
    residual { rmsnorm; attention(heads, kv_heads=2, causal=true, window=5) }
    residual { rmsnorm; mlp(2 * d, act=swiglu) }
  }
  stack decoder(tokens) {
    embedding(vocab, d) as wte
    position(rotary)
    repeat(2) layer as h
    rmsnorm as ln_f
    lm_head(tie=wte)
  }
}
"""


@pytest.mark.parametrize("spec", [CUSTOM, ROTARY_WINDOW], ids=["alibi_parallel", "rotary_window"])
def test_custom_generate_keeps_a_cache(tmp_path, spec):
    """generate() feeds the generated module one new token per step (a DynamicCache
    holds the rest) and picks the tokens it picks without a cache, for a batch."""
    net, out = _export(tmp_path, spec, "custom")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    seen = []
    hf.model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(4))
    cached = hf.generate(ids, max_new_tokens=10, do_sample=False)
    assert seen == [7] + [1] * 9
    seen.clear()
    full = hf.generate(ids, max_new_tokens=10, do_sample=False, use_cache=False)
    assert seen == list(range(7, 17)) and cached.tolist() == full.tolist()
    with torch.no_grad():
        assert cached.tolist() == net.generate(ids, 10).tolist()
    with torch.no_grad():  # the cache's last step is the whole sequence's last position
        step = hf(cached[:, -1:], cache=transformers.DynamicCache())  # (an empty cache: position 0)
        assert step.cache.get_seq_length() == 1


def test_custom_classifier(tmp_path):
    net, out = _export(tmp_path, BERT_CLASSIFY, "cls")
    assert "AutoModel" in json.loads((out / "config.json").read_text())["auto_map"]
    hf = transformers.AutoModel.from_pretrained(out, trust_remote_code=True).eval()
    ids = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids)["output"], net(ids), atol=1e-5, rtol=0)


def test_run_folder_with_tokenizer(tmp_path, capsys):
    data = write(tmp_path / "d.txt", text(400))
    run = strata.train(write(tmp_path / "g.arch", GPT), data=str(data), out=tmp_path / "run", steps=2,
                       progress=False)
    assert main(["export", str(run.path), "-o", str(tmp_path / "hf")]) == 0
    assert "trust_remote_code" in capsys.readouterr().out
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf", trust_remote_code=True)  # as docs say
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", trust_remote_code=True).eval()
    prompt = "the cat sat"
    ids = tok(prompt, return_tensors="pt").input_ids
    assert ids[0].tolist() == run.tokenizer.encode(prompt).tolist()
    want = run.generate(prompt, tokens=6, temperature=0)
    got = tok.decode(hf.generate(ids, max_new_tokens=6, do_sample=False)[0])
    assert got == prompt + want or got == want


def test_a_run_folder_is_no_output(tmp_path, capsys):
    """`export RUN_A -o RUN_B` (and `compress ... -o RUN_B --overwrite`) replaced
    RUN_B's model.safetensors and tokenizer.json with another model's: the run
    no longer evaluated.  A run folder is refused as an output, untouched."""
    data = write(tmp_path / "d.txt", text(400))
    spec = write(tmp_path / "g.arch", GPT)
    a = strata.train(spec, data=str(data), out=tmp_path / "a", steps=1, progress=False)
    b = strata.train(spec, data=str(data), out=tmp_path / "b", steps=1, progress=False, seed=1)
    before = {p.name: p.read_bytes() for p in b.path.iterdir() if p.is_file()}
    for argv in (["export", str(a.path), "-o", str(b.path)],
                 ["export", str(a.path), "--to", "onnx", "-o", str(b.path)],
                 ["compress", str(a.path), "--pass", "quantize(int8_dynamic)", "-o", str(b.path),
                  "--overwrite"]):
        capsys.readouterr()
        assert main(argv) == 2
        assert "holds a training run (run.json)" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in b.path.iterdir() if p.is_file()} == before


def test_mismatched_weights_are_refused(tmp_path, capsys):
    _, _ = _export(tmp_path, CUSTOM, "custom")
    other = write(tmp_path / "other.arch", CUSTOM.replace("d     = 32", "d     = 64"))
    out = tmp_path / "o"
    code = main(["export", str(other), "--weights", str(tmp_path / "custom.safetensors"), "-o", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "do not fit the spec" in err
    assert not out.exists() and not list(tmp_path.glob(".o.*"))


def test_quantized_spec_is_refused(tmp_path, capsys):
    spec = write(tmp_path / "q.arch", CUSTOM.replace("passes { fuse_qkv }", 'passes { quantize(int8_dynamic, on="mlp") }'))
    torch.manual_seed(0)
    api.save_weights(api.compile(spec, quantize=False), tmp_path / "w.safetensors")
    code = main(["export", str(spec), "--weights", str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1 and "quantize" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("target", ["onnx2"])
def test_unknown_target(tmp_path, capsys, target):
    with pytest.raises(SystemExit):
        main(["export", "x", "--to", target, "-o", str(tmp_path / "o")])


def test_compress_output_exports(tmp_path):
    """A float compress output (pruned) goes out like any spec and loads."""
    net, _ = _export(tmp_path, CUSTOM, "custom")
    api.compress(tmp_path / "custom.arch", tmp_path / "c", weights=tmp_path / "custom.safetensors",
                 passes=['prune(0.5, on="mlp")'])
    out = api.export(tmp_path / "c", tmp_path / "c-hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    ref = api.compile(tmp_path / "c").eval()
    ids = torch.randint(0, 50, (1, 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ref(ids), atol=1e-5, rtol=0)


def test_same_folder_name_loads_its_own_model(tmp_path):
    """Two exports in folders of one name, loaded in one process: each its own model
    (transformers keys a remote class by its config class's file hash)."""
    ids = torch.randint(0, 50, (1, 6), generator=torch.Generator().manual_seed(5))
    for i, spec in enumerate((CUSTOM, ROTARY_WINDOW)):
        (tmp_path / str(i)).mkdir()
        net, out = _export(tmp_path / str(i), spec, "same")
        hf = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
        with torch.no_grad():
            torch.testing.assert_close(hf(ids).logits, net(ids), atol=1e-5, rtol=0)


def test_the_docs_custom_code_example_trusts_it_everywhere():
    """docs/interop.md's custom-code example loaded the model with
    trust_remote_code=True and showed no tokenizer; AutoTokenizer reads
    config.json's auto_map too (without the flag transformers asks at a prompt)."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "interop.md").read_text()
    block = doc.split("goes out as a Hugging Face repository with custom code:", 1)[1].split("```python\n")[1]
    block = block.split("```", 1)[0]
    calls = [line for line in block.splitlines() if ".from_pretrained(" in line]
    assert any("AutoTokenizer.from_pretrained(" in line for line in calls), block
    assert all("trust_remote_code=True" in line for line in calls), block
