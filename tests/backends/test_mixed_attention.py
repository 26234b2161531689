"""Stacks whose self-attentions differ by layer: alternating local / global
attention (Gemma-2, Mistral-style), one mask per (causal, window) in use."""

from __future__ import annotations

import sys

import pytest

from tests.optional import require

torch = require("torch")

from strata.api import compile, generate_source
from strata.compiler import as_graph as build_graph
from tests.backends.helpers import greedy_no_cache

ALT_SPEC = """
model alt {{
  d = 64
  heads = 4
  stack decoder(tokens) {{
    embedding(100, d) as wte
    position(rotary)
    repeat(4, i) {{
      residual {{ rmsnorm; attention(heads, kv_heads=2, causal=true, window={window}, bias=false) }}
      residual {{ rmsnorm; mlp(4*d, act=swiglu, bias=false) }}
    }} as layers
    rmsnorm
    lm_head(tie=wte)
  }}
}}
"""
ALT = ALT_SPEC.format(window="8 if i % 2 == 0 else none")

# one block running a local then a global attention: the block takes both masks
TWO_KINDS_SPEC = """
model two {
  d = 32
  block pair {
    residual { rmsnorm; attention(4, causal=true, window=3, bias=false) as local_attn }
    residual { rmsnorm; attention(4, causal=true, bias=false) as global_attn }
  }
  stack decoder(tokens) {
    embedding(50, d) as wte
    position(rotary)
    repeat(2) pair as h
    rmsnorm
    lm_head(50)
  }
}
"""

# no cache (two stacks), windows of different sizes, an irregular pattern
ENC_DEC_SPEC = """
model ed {
  d = 32
  stack encoder(src) {
    embedding(50, d)
    repeat(2) { residual { layernorm; attention(4) } } as layers
    layernorm
  }
  stack decoder(tgt, memory=encoder) {
    embedding(50, d)
    position(rotary)
    repeat(3, i) {
      residual { layernorm; attention(4, causal=true, window=3 if i == 0 else (5 if i == 1 else none)) }
      residual { layernorm; cross_attention(4, memory) }
    } as layers
    layernorm
    lm_head(50)
  }
}
"""

# ALiBi biases and soft-capped logits, one bias per window; the irregular pattern is a list
ALIBI_SPEC = """
model m {
  d = 32
  stack decoder(tokens) {
    embedding(40, d) as wte
    position(alibi)
    repeat(3, i) {
      residual { rmsnorm; attention(4, kv_heads=2, causal=true, softcap=30.0, window=3 if i != 1 else none) }
      residual { rmsnorm; mlp(48) }
    } as h
    rmsnorm
    lm_head(tie=wte)
  }
}
"""


def sharpen(model):
    for p in model.parameters():  # sharper logits: argmax ties are unlikely
        if p.dim() > 1:
            p.data.mul_(4.0)
    return model


def reference_attention(module, rotary, causal, window):
    """An explicit attention forward: its own boolean mask from the layer's IR attrs,
    ignoring the mask the generated stack passes."""

    def forward(x, rope=None, mask=None, cache=None):
        B, T, _ = x.shape
        q = module.q(x).view(B, T, module.heads, module.head_dim).transpose(1, 2)
        k = module.k(x).view(B, T, module.kv_heads, module.head_dim).transpose(1, 2)
        v = module.v(x).view(B, T, module.kv_heads, module.head_dim).transpose(1, 2)
        if rope is not None:
            q, k = rotary(q, *rope), rotary(k, *rope)
        k = k.repeat_interleave(module.heads // module.kv_heads, dim=1)
        v = v.repeat_interleave(module.heads // module.kv_heads, dim=1)
        i = torch.arange(T)[:, None]
        j = torch.arange(T)[None, :]
        keep = torch.ones(T, T, dtype=torch.bool)
        if causal:
            keep &= j <= i
        if window is not None:  # a band: bidirectional layers see `window` on both sides
            keep &= (i - j).abs() < window
        att = (q @ k.transpose(-2, -1)) / module.head_dim ** 0.5
        att = att.masked_fill(~keep, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, -1)
        return module.o(y)

    return forward


def patch_reference(model, spec):
    """Replace every self-attention's forward by `reference_attention`."""
    g = build_graph(spec)
    rotary = sys.modules[type(model).__module__].__dict__.get("apply_rotary")
    n = 0
    for path, d in g.nodes(data=True):
        if d["op"] == "attention" and not d["attrs"]["cross"]:
            module = model.get_submodule(path.rsplit(".", 1)[0])
            module.forward = reference_attention(module, rotary, d["attrs"]["causal"], d["attrs"]["window"])
            n += 1
    return n


def test_alternating_windows_compile_run_and_share_one_layer_class():
    src = generate_source(ALT)
    assert src.count("class Layers(nn.Module):") == 1
    assert "for layer, layer_mask in zip(self.layers, [local_mask, mask] * 2):" in src
    assert "local_mask = make_mask(T, start_pos, tokens.device, window=8) if start_pos > 0 or T > 8 else None" in src
    assert "mask = make_mask(T, start_pos, tokens.device) if start_pos > 0 and T > 1 else None" in src
    torch.manual_seed(0)
    model = compile(ALT)
    ids = torch.randint(0, 100, (2, 20))
    logits = model(ids)
    assert logits.shape == (2, 20, 100) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("spec,inputs", [
    (ALT, lambda: (torch.randint(0, 100, (2, 20)),)),
    (TWO_KINDS_SPEC, lambda: (torch.randint(0, 50, (2, 11)),)),
    (ENC_DEC_SPEC, lambda: (torch.randint(0, 50, (2, 9)), torch.randint(0, 50, (2, 10)))),
], ids=["alternating", "two_kinds_in_a_block", "encoder_decoder_irregular"])
def test_logits_equal_explicit_per_layer_masks(spec, inputs):
    torch.manual_seed(0)
    model = sharpen(compile(spec).eval())
    args = inputs()
    with torch.no_grad():
        got = model(*args)
        assert patch_reference(model, spec) >= 3
        want = model(*args)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_windowed_layers_matter_only_beyond_the_window():
    torch.manual_seed(0)
    alt = sharpen(compile(ALT).eval())
    full = compile(ALT_SPEC.format(window="none")).eval()
    full.load_state_dict(alt.state_dict())
    with torch.no_grad():
        short = torch.randint(0, 100, (2, 8))
        torch.testing.assert_close(alt(short), full(short), atol=1e-5, rtol=0)
        long = torch.randint(0, 100, (2, 20))
        a, b = alt(long), full(long)
    torch.testing.assert_close(a[:, :8], b[:, :8], atol=1e-5, rtol=0)
    assert (a[:, 8:] - b[:, 8:]).abs().max() > 1e-3


def test_equal_windows_give_the_single_config_path():
    same = ALT_SPEC.format(window="8 if i % 2 == 0 else 8")
    plain = ALT_SPEC.format(window="8")
    assert generate_source(same) == generate_source(plain)
    torch.manual_seed(0)
    a = compile(same).eval()
    torch.manual_seed(0)
    b = compile(plain).eval()
    ids = torch.randint(0, 100, (2, 20))
    with torch.no_grad():
        assert torch.equal(a(ids), b(ids))


@pytest.mark.parametrize("spec", [ALT, TWO_KINDS_SPEC, ALIBI_SPEC],
                         ids=["alternating", "two_kinds_in_a_block", "alibi_softcap"])
def test_kv_cache_greedy_equals_recomputation_past_the_window(spec):
    torch.manual_seed(1)
    model = sharpen(compile(spec).eval())
    ids = torch.randint(0, 40, (2, 5))
    with torch.no_grad():
        want = greedy_no_cache(model, ids, 14)  # 19 positions > window
    assert torch.equal(model.generate(ids, 14), want)


def test_chunked_cache_logits_match_full_forward():
    torch.manual_seed(0)
    model = compile(ALT).eval()
    ids = torch.randint(0, 100, (1, 21))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache()
        parts = [model(ids[:, :6], cache=cache), model(ids[:, 6:15], cache=cache),
                 model(ids[:, 15:16], cache=cache), model(ids[:, 16:], cache=cache)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)


@pytest.mark.slow  # torch.compile (dynamo start-up): a few seconds
def test_torch_compile_fullgraph_with_per_layer_masks():
    import torch._dynamo

    torch._dynamo.reset()
    model = compile(ALT)
    explain = torch._dynamo.explain(model)(torch.randint(0, 100, (2, 20)))
    assert explain.graph_break_count == 0 and explain.graph_count == 1
