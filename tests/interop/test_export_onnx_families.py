"""`strata export --to onnx` beyond learned positions: rotary with grouped keys
(Llama-like), a sliding window shorter than the prompt, ALiBi, T5's relative
bias, and an encoder (BERT-style, its classifier's output).  Each decoder's
logits match strata's within 1e-4 without the cache (model.onnx) and with it
(decoder_with_past.onnx, step by step); encoder-decoders are refused."""

from __future__ import annotations

import numpy as np
import pytest

from strata import api
from strata.cli import main
from tests.optional import require
from tests.train.helpers import BERT_CLASSIFY, SEQ2SEQ, write

torch = require("torch")
require("onnxruntime")
require("onnxscript")

pytestmark = pytest.mark.slow  # each export traces the model twice (5-20 s on 2 busy cores)

DECODER = """\
model m {
  vocab = 50
  d     = 32
  heads = 4
  block layer {
    residual { rmsnorm; attention(heads, kv_heads=KV, causal=true WINDOW) }
    residual { rmsnorm; mlp(2 * d, act=swiglu) }
  }
  stack decoder(tokens) {
    embedding(vocab, d) as wte
    position(POSITION)
    repeat(2) layer as h
    rmsnorm as ln_f
    lm_head(tie=wte)
  }
}
"""


def _decoder(position: str, kv: int = 4, window: str = "") -> str:
    return DECODER.replace("KV", str(kv)).replace("POSITION", position).replace(" WINDOW", window)


# (rotary with grouped keys and a window: Llama / Mistral's attention in one)
DECODERS = {"rotary_gqa_window": _decoder("rotary", kv=2, window=", window=5"),
            "alibi": _decoder("alibi"), "relative": _decoder("relative")}


def _export(tmp_path, text: str):
    spec = write(tmp_path / "m.arch", text)
    torch.manual_seed(0)
    net = api.compile(spec).eval()
    api.save_weights(net, tmp_path / "w.safetensors")
    return net, api.export(spec, tmp_path / "onnx", to="onnx", weights=tmp_path / "w.safetensors")


@pytest.mark.parametrize("name", list(DECODERS))
def test_decoder_with_and_without_cache(name, tmp_path):
    from strata.train.onnx_runtime import OnnxModel

    net, out = _export(tmp_path, DECODERS[name])
    ort = OnnxModel(out)
    ids = torch.randint(0, 50, (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = net(ids).numpy()
    logits, _ = ort.forward(ids.numpy())  # no cache: 11 positions (past the window)
    np.testing.assert_allclose(logits, want, atol=1e-4, rtol=0)
    logits, past = ort.forward(ids[:, :3].numpy())  # a short prompt (within the window), then step by step
    np.testing.assert_allclose(logits, want[:, :3], atol=1e-4, rtol=0)
    for i in range(3, 11):
        step, past = ort.decode(ids[:, i:i + 1].numpy(), past)
        np.testing.assert_allclose(step[:, 0], want[:, i], atol=1e-4, rtol=0)
    assert past[0].shape[2] == 11


def test_encoder(tmp_path):
    from strata.train.onnx_runtime import OnnxModel

    net, out = _export(tmp_path, BERT_CLASSIFY)
    ort = OnnxModel(out)
    assert ort.step is None and not ort.info["causal"]
    ids = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = net(ids).numpy()
    got = ort.prefill.run(None, {"input_ids": ids.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_generate_on_an_encoder_says_it_does_not_generate(tmp_path, capsys):
    """`generate --runtime onnx` on a classifier's export (with its run's tokenizer)
    said 'tokenizer.json: 16 ids; the model's vocabulary holds 3 (is this the
    export's own tokenizer?)', comparing the tokenizer with the classes."""
    from strata.train.tokenizer import CharTokenizer

    _, out = _export(tmp_path, BERT_CLASSIFY)
    (out / "tokenizer.json").write_text(CharTokenizer.fit(["the quick brown fox"], [], 128).dumps())
    capsys.readouterr()  # the exporter's warnings
    assert main(["generate", str(out), "--runtime", "onnx", "--prompt", "the", "--temperature", "0"]) == 2
    assert capsys.readouterr().err == (f"strata: error: {out}: the exported model has no LM head; "
                                       "it does not generate\n")


def test_encoder_decoder_is_refused(tmp_path, capsys):
    spec = write(tmp_path / "s.arch", SEQ2SEQ)
    api.save_weights(api.compile(spec), tmp_path / "w.safetensors")
    code = main(["export", str(spec), "--weights", str(tmp_path / "w.safetensors"), "--to", "onnx",
                 "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1 and "2 inputs (src, tgt)" in err
    assert not (tmp_path / "o").exists()


def test_the_context_is_the_positions_whatever_the_variables_name(tmp_path, capsys):
    """The export read the positions' length from a variable named `ctx`: with
    `position(learned, maxlen)` onnx.json said no context, and `generate --runtime onnx`
    past the 16 rows of its table ended in an internal error (IndexError)."""
    import json

    from strata.train.tokenizer import CharTokenizer

    spec = _decoder("learned, maxlen").replace("heads = 4", "heads = 4\n  maxlen = 16")
    _, out = _export(tmp_path, spec)
    assert json.loads((out / "onnx.json").read_text())["context"] == 16
    (out / "tokenizer.json").write_text(CharTokenizer.fit(["the quick brown fox"], [], 50).dumps())
    capsys.readouterr()  # the exporter's warnings
    assert main(["generate", str(out), "--runtime", "onnx", "--prompt", "the", "--tokens", "20",
                 "--temperature", "0"]) == 2
    assert capsys.readouterr().err == "strata: error: 3 prompt + 20 new tokens is more than the model's 16 positions\n"
    assert main(["generate", str(out), "--runtime", "onnx", "--prompt", "the", "--tokens", "13",
                 "--temperature", "0"]) == 0
