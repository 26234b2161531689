"""strata/backends/torch/runtime.py: the helpers generated files carry, tested as code."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from tests.optional import require

torch = require("torch")

from strata.api import compile, generate_source
from strata.backends.torch import runtime as R
from strata.backends.torch.runtime_source import ORDER, source


def test_generated_files_carry_runtime_source_verbatim():
    src = generate_source("specs/tiny_shakespeare.arch")
    for name in ("KVCache", "make_mask", "init_weights", "generate"):
        assert source(name) in src, name
    from strata.backends.torch import runtime_passes as RP
    from strata.passes import qparams as QP

    defined = {n for m in (R, RP, QP) for n, v in vars(m).items()
               if callable(v) and getattr(v, "__module__", None) == m.__name__}
    assert set(ORDER) == defined  # every definition can be copied, in a known place


def test_kv_cache_appends_per_layer_in_call_order():
    cache = R.KVCache()
    assert cache.start() == 0
    k0, v0 = torch.ones(1, 2, 3, 4), torch.zeros(1, 2, 3, 4)
    cache.update(k0, v0)
    cache.update(2 * k0, v0)
    assert cache.start() == 3
    k, v = cache.update(torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1, 4))
    assert k.shape == (1, 2, 4, 4) and torch.equal(k[:, :, 3], torch.ones(1, 2, 4))
    k, _ = cache.update(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))
    assert torch.equal(k[:, :, :3], 2 * k0)  # the second layer's own keys


def test_static_kv_cache_writes_in_place_and_crops():
    cache = R.KVCache(max_len=6)
    assert cache.start() == 0
    k0 = torch.arange(24.0).view(1, 2, 3, 4)
    k, v = cache.update(k0, -k0)
    buffer = cache.layers[0][0]
    assert buffer.shape == (1, 2, 6, 4) and torch.equal(k, k0) and torch.equal(v, -k0)
    assert cache.start() == 3
    k, _ = cache.update(torch.ones(1, 2, 2, 4), torch.ones(1, 2, 2, 4))
    assert k.shape == (1, 2, 5, 4) and k.data_ptr() == buffer.data_ptr()  # a view of the one buffer
    assert torch.equal(k[:, :, :3], k0) and torch.equal(k[:, :, 3:], torch.ones(1, 2, 2, 4))
    cache.crop(4)  # the last position rejected: the next token is written over it
    assert cache.start() == 4
    k, _ = cache.update(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))
    assert k.shape == (1, 2, 5, 4) and torch.equal(k[:, :, 4], torch.zeros(1, 2, 4))
    growing = R.KVCache()
    growing.start()
    growing.update(k0, k0)
    growing.crop(1)
    growing.start()
    k, _ = growing.update(k0[:, :, :1], k0[:, :, :1])
    assert torch.equal(k, torch.cat([k0[:, :, :1], k0[:, :, :1]], dim=2))


def test_static_and_growing_caches_decode_alike():
    torch.manual_seed(0)
    model = compile("specs/tiny_shakespeare.arch").eval()
    ids = torch.randint(0, 65, (2, 5))
    assert torch.equal(R.generate(model, ids, 8), R.generate(model, ids, 8, static=False))
    torch.manual_seed(3)
    a = R.generate(model, ids, 6, temperature=1.0, top_k=8)
    torch.manual_seed(3)
    assert torch.equal(a, R.generate(model, ids, 6, temperature=1.0, top_k=8, static=False))


def _head(model):
    """The model's LM head module."""
    return next(model.get_submodule(n) for n, d in model.strata_graph.nodes(data=True)
                if d["attrs"].get("role") == "lm_head")


@pytest.mark.parametrize("spec", ["specs/tiny_shakespeare.arch", "examples/seed/teacher.arch"])
def test_a_generating_model_reads_the_prompt_for_its_last_logits_only(spec):
    """logits_to_keep=k (as HF's): the LM head reads the last k positions (0: all);
    generate reads the prompt with k=1, so the head runs on one position there."""
    torch.manual_seed(0)
    model = compile(spec).eval()
    ids = torch.randint(0, 65, (2, 7))  # vocabularies 65 and 128
    first = (torch.randint(0, 65, (2, 5)),) if "teacher" in spec else ()  # an encoder-decoder's source
    with torch.no_grad():
        full = model(*first, ids)
        assert torch.equal(model(*first, ids, logits_to_keep=0), full)
        for k in (1, 3):
            assert torch.allclose(model(*first, ids, logits_to_keep=k), full[:, -k:], atol=1e-6)
    seen = []
    hook = _head(model).register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    try:
        out = R.generate(model, ids, 3, src=first[0] if first else None)
    finally:
        hook.remove()
    assert seen == [1, 1, 1]  # the prompt's read, then two one-token steps
    assert torch.equal(out, R.generate(model, ids, 3, src=first[0] if first else None, static=False))


TINY = """
model tiny {
  d = 8
  block layer { residual { layernorm; attention(2, causal=true) } residual { layernorm; mlp(2 * d) } }
  stack decoder(tokens) {
    embedding(11, d) as wte
    position(learned, 32) as wpe
    repeat(1) layer as h
    lm_head(tie=wte)
  }
}
"""


@pytest.mark.slow
def test_compiled_step_compiles_once():
    """torch.compile on the one-token step: one graph, no recompiling per token, for a
    longer generation, or another prompt length (the sizes are symbolic)."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = compile(TINY).eval()
    ids = torch.randint(0, 11, (1, 3))
    counters.clear()
    assert torch.equal(model.generate(ids, 4, compile=True), model.generate(ids, 4))
    assert counters["stats"]["unique_graphs"] == 1
    counters.clear()
    longer = torch.randint(0, 11, (1, 5))
    assert torch.equal(model.generate(longer, 12, compile=True), model.generate(longer, 12))
    assert counters["stats"]["unique_graphs"] == 0 and not counters["recompiles"]
    assert "compiled_step" not in dict(model.named_modules())  # not a submodule: the state dict is the model's


def test_decoding_on_a_cpu_stores_linear_weights_column_major_in_place(tmp_path):
    """generate() restrides each float linear weight (strides (1, out)): the same
    Parameters (tied ones stay one), values and state dict; the tokens equal
    recomputing the whole sequence; the model still saves, reloads and trains, on
    the tokens it generated too."""
    from strata.api import save_weights

    torch.manual_seed(0)
    model = compile(TINY).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = dict(model.named_parameters())
    ids = torch.randint(0, 11, (2, 3))
    with torch.no_grad():
        want = ids
        for _ in range(5):
            want = torch.cat([want, model(want)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(model.generate(ids, 5), want)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.stride() == (1, m.weight.shape[0]) for m in linears)
    assert model.decoder.lm_head.weight is model.decoder.wte.weight  # still tied
    assert dict(model.named_parameters()) == params
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    save_weights(model, tmp_path / "w.safetensors")  # strata's saver writes contiguous copies
    again = compile(TINY, weights=tmp_path / "w.safetensors").eval()
    assert all(torch.equal(v, before[k]) for k, v in again.state_dict().items())
    strides = [m.weight.stride() for m in linears]
    assert torch.equal(model.generate(ids, 5), want)  # a second call restrides nothing
    assert [m.weight.stride() for m in linears] == strides
    out = model.generate(ids, 5)  # decoded in inference mode, returned as an ordinary tensor
    assert not out.is_inference() and not any(p.is_inference() for p in model.parameters())
    model.train()  # training takes the layout (and the generated tokens): a step runs and moves the weights
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    torch.nn.functional.cross_entropy(model(out).flatten(0, 1), out.flatten()).backward()
    opt.step()
    assert not torch.equal(model.decoder.lm_head.weight, before["decoder.lm_head.weight"])


def test_make_mask_causal_window_and_padding():
    m = R.make_mask(3, 2, "cpu")  # queries at 2, 3, 4 of 5 keys
    assert m.shape == (1, 1, 3, 5)
    assert m[0, 0].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    w = R.make_mask(4, 0, "cpu", window=2)[0, 0]
    assert w.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    pad = torch.tensor([[1, 1, 0]])
    p = R.make_mask(3, 0, "cpu", causal=False, padding=pad)
    assert p.shape == (1, 1, 3, 3) and p[0, 0, :, 2].tolist() == [False] * 3


def test_rotary_matches_the_complex_rotation():
    dims, T = 8, 5
    cos, sin = R.RotaryEmbedding(dims)(torch.arange(T))
    x = torch.randn(1, 2, T, dims)
    got = R.apply_rotary(x, cos, sin)
    half = dims // 2
    z = torch.complex(x[..., :half], x[..., half:])
    theta = torch.arange(T)[:, None] * (1.0 / 10000 ** (torch.arange(0, dims, 2) / dims))[None]
    want = z * torch.polar(torch.ones_like(theta), theta)
    torch.testing.assert_close(got, torch.cat([want.real, want.imag], -1), atol=1e-5, rtol=1e-5)
    part = R.apply_rotary(torch.randn(1, 1, T, 12), cos, sin)  # partial rotary keeps the rest
    assert part.shape == (1, 1, T, 12)


def test_sinusoidal_positions_and_alibi_slopes():
    pe = R.SinusoidalPositions(6)(torch.arange(3), torch.float32)
    assert pe.shape == (3, 6)
    torch.testing.assert_close(pe[2, 0], torch.tensor(math.sin(2.0)))
    torch.testing.assert_close(pe[2, 3], torch.tensor(math.cos(2 / 10000 ** (2 / 6))))
    assert R.ALiBi.get_slopes(8) == [2 ** -(i + 1) for i in range(8)]  # Press et al., 8 heads
    assert len(R.ALiBi.get_slopes(6)) == 6
    bias = R.ALiBi(2)(R.make_mask(3, 0, "cpu"), 0, torch.float32)
    assert bias.shape == (1, 2, 3, 3) and bias[0, 0, 2, 0] == -2 * 2 ** -4 and bias[0, 0, 0, 1] == -math.inf


def test_rms_norm_and_softcapped_attention():
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(R.RMSNorm(8)(x), x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt())
    q, k, v = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    big = R.softcapped_attention(q, k, v, None, True, 1 / math.sqrt(8), 1e9, 0.0)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(big, want, atol=1e-5, rtol=1e-4)  # a huge cap changes nothing


def test_init_weights_scales_residual_projections():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.LayerNorm(256))
    model.add_module("o", torch.nn.Linear(256, 256))
    R.init_weights(model, residual=("o.weight",), layers=8)
    assert torch.all(model[0].bias == 0) and torch.all(model[1].weight == 1)
    assert abs(model[0].weight.std().item() - 0.02) < 0.002
    assert abs(model.o.weight.std().item() - 0.02 / math.sqrt(16)) < 0.0005


def test_generate_with_cache_equals_recomputation():
    torch.manual_seed(0)
    model = compile("specs/tiny_shakespeare.arch").eval()
    ids = torch.randint(0, 65, (2, 5))
    out = R.generate(model, ids, 6)
    full = ids
    for _ in range(6):
        full = torch.cat([full, model(full)[:, -1:].argmax(-1)], 1)
    assert torch.equal(out, full)
    torch.manual_seed(1)
    sampled = R.generate(model, ids, 4, temperature=0.8, top_k=5)
    assert sampled.shape == (2, 9) and torch.equal(sampled[:, :5], ids)


def test_a_tiny_temperature_samples_the_greedy_tokens():
    """softmax(logits / T) for T -> 0 is the argmax: logits / 1e-44 overflowed to inf
    and inf - inf made the probabilities nan (multinomial raised)."""
    torch.manual_seed(0)
    model = compile("specs/tiny_shakespeare.arch").eval()
    ids = torch.randint(0, 65, (2, 5))
    assert torch.equal(model.generate(ids, 6, temperature=1e-44), model.generate(ids, 6))
    assert torch.equal(model.generate(ids, 6, temperature=1e-44, top_k=3), model.generate(ids, 6))


@pytest.mark.parametrize("args,kw", [((torch.zeros(1, 0, dtype=torch.long), 3), {}),
                                     ((torch.zeros(1, 4, dtype=torch.long), -1), {}),
                                     ((torch.zeros(1, 4, dtype=torch.long), 3), {"temperature": 1.0, "top_k": 0}),
                                     ((torch.zeros(1, 4, dtype=torch.long), 3), {"temperature": -1.0})])
def test_generate_refuses_what_it_cannot_do_by_name(args, kw):
    """An empty prompt, a negative count, top_k=0 or a negative temperature: a ValueError naming
    the arguments, not an IndexError from inside the sampling (or a prompt token silently dropped)."""
    model = compile("specs/tiny_shakespeare.arch").eval()
    with pytest.raises(ValueError, match="max_new_tokens >= 0"):
        model.generate(*args, **kw)


LEARNED = ("model m {{ vocab = 50  ctx = 8  d = 16\n"
           "  stack decoder(tokens) {{ embedding(vocab, d) as wte; position(learned, ctx{off}) as wpe\n"
           "    residual {{ layernorm; attention(2, causal=true) }}; layernorm; lm_head(tie=wte) }} }}\n")


@pytest.mark.parametrize("offset", ["", ", offset=2"])
def test_generate_past_learned_positions_is_a_value_error_with_the_limit(offset):
    """model.generate asked to read past its learned position table raised a bare
    IndexError ('index out of range in self') from the embedding; it says what it
    would read and the limit.  Every token but the last new one is read, so 8
    positions take a 3-token prompt and 6 new tokens."""
    model = compile(LEARNED.format(off=offset)).eval()
    ids = torch.tensor([[1, 2, 3]])
    assert model.generate(ids, 6).shape == (1, 9)
    assert model.generate(torch.ones(1, 8, dtype=torch.long), 1).shape == (1, 9)
    with pytest.raises(ValueError, match=r"would read 9 tokens \(all but the last new one\); the model's "
                                         r"learned positions hold 8, so it can read at most 8"):
        model.generate(ids, 7)
    with pytest.raises(ValueError, match="would read 9 tokens"):
        model.generate(torch.ones(1, 9, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="hold 4"):  # the limit follows the config the model was built with
        model.__class__(replace(model.config, ctx=4)).generate(ids, 3)


def test_an_encoders_learned_positions_bound_the_source():
    text = (LEARNED.format(off="").replace("stack decoder(tokens)", "stack encoder(src)")
            .replace("; layernorm; lm_head(tie=wte) } }", "; layernorm } }").replace("causal=true", "")
            .rstrip().removesuffix("}")
            + "  stack decoder(tgt, memory = encoder) { embedding(vocab, d) as wte; position(learned, 2 * ctx)\n"
              "    residual { layernorm; attention(2, causal=true) }; residual { cross_attention(2, memory) }\n"
              "    layernorm; lm_head(tie=wte) } }\n")
    model = compile(text).eval()
    tgt = torch.tensor([[1]])
    assert model.generate(torch.ones(1, 8, dtype=torch.long), tgt, 16).shape == (1, 17)
    with pytest.raises(ValueError, match="would read 9 source tokens; the model's learned positions hold 8"):
        model.generate(torch.ones(1, 9, dtype=torch.long), tgt, 2)
    with pytest.raises(ValueError, match="would read 17 tokens .* hold 16"):
        model.generate(torch.ones(1, 8, dtype=torch.long), tgt, 17)
