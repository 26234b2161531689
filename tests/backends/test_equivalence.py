"""Numeric equivalence of compiled specs with Hugging Face and torch.nn.Transformer."""

from __future__ import annotations

import math

import pytest

from tests.optional import require

torch = require("torch")
transformers = require("transformers")

from strata.api import compile
from strata.backends.torch.weights_file import load_state
from tests.backends.helpers import GPT2_SPEC, LLAMA_SPEC, hf_state_in_strata_names

ATOL = 1e-4


def test_gpt2_matches_hf():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=97, n_positions=32, n_embd=64, n_layer=2, n_head=4,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = GPT2LMHeadModel(cfg).eval()
    model = compile(GPT2_SPEC.format(vocab=97, ctx=32, d=64, heads=4, depth=2)).eval()
    load_state(model, hf_state_in_strata_names(hf))
    ids = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        want = hf(ids).logits
        got = model(ids)
    assert got.shape == (2, 20, 97)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def _llama_pair(kv_heads=2, window=None):
    torch.manual_seed(0)
    kw = {"vocab_size": 101, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": kv_heads, "rms_norm_eps": 1e-5,
          "rope_theta": 10000.0, "tie_word_embeddings": False, "max_position_embeddings": 128}
    if window is None:
        from transformers import LlamaConfig, LlamaForCausalLM
        hf = LlamaForCausalLM(LlamaConfig(**kw, attn_implementation="eager"))
    else:
        from transformers import MistralConfig, MistralForCausalLM
        hf = MistralForCausalLM(MistralConfig(**kw, sliding_window=window, attn_implementation="eager"))
    spec = LLAMA_SPEC.format(vocab=101, d=64, heads=4, kv_heads=kv_heads, depth=2, hidden=96,
                             base=10000, window=f", window={window}" if window else "")
    model = compile(spec).eval()
    load_state(model, hf_state_in_strata_names(hf))
    return hf.eval(), model


@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_llama_matches_hf(kv_heads):
    hf, model = _llama_pair(kv_heads)
    ids = torch.randint(0, 101, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, atol=ATOL, rtol=0)


def test_mistral_sliding_window_matches_hf():
    hf, model = _llama_pair(2, window=5)
    ids = torch.randint(0, 101, (2, 24))
    with torch.no_grad():
        got, want = model(ids), hf(ids).logits
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    # the window matters: without it the logits differ
    full = compile(LLAMA_SPEC.format(vocab=101, d=64, heads=4, kv_heads=2, depth=2, hidden=96,
                                     base=10000, window="")).eval()
    load_state(full, model.state_dict())
    with torch.no_grad():
        assert (full(ids) - want).abs().max() > 1e-3


TRANSFORMER_SPEC = """
model transformer_test {
  vocab = 50
  ctx   = 64
  d     = 32
  heads = 4
  ff    = 64
  depth = 2
  block encoder_layer {
    residual { attention(heads) }
    layernorm as self_attn_norm
    residual { mlp(ff, act=relu) }
    layernorm as ff_norm
  }
  block decoder_layer {
    residual { attention(heads, causal=true) }
    layernorm as self_attn_norm
    residual { cross_attention(heads, memory) }
    layernorm as cross_attn_norm
    residual { mlp(ff, act=relu) }
    layernorm as ff_norm
  }
  stack encoder(src) {
    embedding(vocab, d, scale=sqrt(d)) as embed
    position(sinusoidal, ctx)
    repeat(depth) encoder_layer as layers
    layernorm as norm
  }
  stack decoder(tgt, memory = encoder) {
    embedding(vocab, d, scale=sqrt(d), tie=encoder.embed) as embed
    position(sinusoidal, ctx)
    repeat(depth) decoder_layer as layers
    layernorm as norm
    lm_head(tie=encoder.embed)
  }
}
"""


def _sinusoid(T, d):
    pe = torch.zeros(T, d)
    pos = torch.arange(T, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe


def _map_mha(sd, src, dst, out):
    for name, w, b in zip("qkv", sd[src + "in_proj_weight"].chunk(3), sd[src + "in_proj_bias"].chunk(3)):
        out[f"{dst}.{name}.weight"], out[f"{dst}.{name}.bias"] = w, b
    out[f"{dst}.o.weight"], out[f"{dst}.o.bias"] = sd[src + "out_proj.weight"], sd[src + "out_proj.bias"]


def test_transformer_matches_torch_nn_transformer():
    torch.manual_seed(0)
    ref = torch.nn.Transformer(d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                               dim_feedforward=64, dropout=0.0, batch_first=True, norm_first=False).eval()
    model = compile(TRANSFORMER_SPEC).eval()
    sd, out = ref.state_dict(), {"encoder.embed.weight": model.encoder.embed.weight.detach().clone()}
    for side, norms in (("encoder", ("self_attn_norm", "ff_norm")),
                        ("decoder", ("self_attn_norm", "cross_attn_norm", "ff_norm"))):
        for k in ("weight", "bias"):
            out[f"{side}.norm.{k}"] = sd[f"{side}.norm.{k}"]
        for i in range(2):
            s, d = f"{side}.layers.{i}.", f"{side}.layers.{i}."
            _map_mha(sd, s + "self_attn.", d + "attn", out)
            if side == "decoder":
                _map_mha(sd, s + "multihead_attn.", d + "cross_attn", out)
            for j, n in enumerate(norms, 1):
                for k in ("weight", "bias"):
                    out[f"{d}{n}.{k}"] = sd[f"{s}norm{j}.{k}"]
            for a, b in (("linear1", "mlp.up"), ("linear2", "mlp.down")):
                for k in ("weight", "bias"):
                    out[f"{d}{b}.{k}"] = sd[f"{s}{a}.{k}"]
    load_state(model, out)
    src, tgt = torch.randint(0, 50, (2, 11)), torch.randint(0, 50, (2, 7))
    E = out["encoder.embed.weight"]
    with torch.no_grad():
        s = E[src] * math.sqrt(32) + _sinusoid(11, 32)
        t = E[tgt] * math.sqrt(32) + _sinusoid(7, 32)
        mask = torch.nn.Transformer.generate_square_subsequent_mask(7)
        want = ref(s, t, tgt_mask=mask, tgt_is_causal=True) @ E.t()
        got = model(src, tgt)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
