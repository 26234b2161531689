"""Calling convention, KV cache, every spec compiling, torch.compile, MoE."""

from __future__ import annotations

import glob
import inspect

import pytest
from tests.optional import require

torch = require("torch")

from strata.api import compile, generate_source
from strata.backends.torch.model_tensors import tied_names
from strata.compiler import as_graph as build_graph
from strata.compiler import ir
from tests.backends.helpers import LLAMA_SPEC, TINY_SPEC, greedy_no_cache

SPECS = sorted(glob.glob("specs/*.arch"))
SMALL = {"specs/tiny_shakespeare.arch"}


@pytest.mark.parametrize("path", SPECS)
def test_every_spec_compiles_with_ir_names(path):
    from strata.passes import apply_passes

    g = apply_passes(build_graph(path))  # the spec's own passes (tiny_shakespeare fuses q, k, v)
    model = compile(path, device=None if path in SMALL else "meta")
    tied = tied_names(model)
    have = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in tied}
    assert have == ir.state_dict_shapes(g)
    assert sum(p.numel() for p in model.parameters()) == g.graph["parameters"]


def test_tiny_shakespeare_forward_backward():
    model = compile("specs/tiny_shakespeare.arch")
    ids = torch.randint(0, 65, (3, 64))
    logits = model(ids)
    assert logits.shape == (3, 64, 65)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.decoder.lm_head.weight is model.decoder.wte.weight


SMALL_VARIANTS = {
    "bert": """model b { d = 32
      block layer { residual { attention(4, dropout=0.1); dropout(0.1) } layernorm as attention_norm
                    residual { mlp(64) } layernorm as output_norm }
      stack encoder(tokens) { embedding(40, d) as word_embeddings; position(learned, 32) as position_embeddings
        token_types(2) as token_type_embeddings; layernorm(eps=1e-12) as embeddings_norm; dropout(0.1)
        repeat(2) layer as layer; branch { pooler } as pooled; mlm_head(tie=word_embeddings) } }""",
    "alibi_softcap_qknorm_moe": """model m { d = 32
      block b { residual { rmsnorm; attention(4, kv_heads=2, causal=true, qk_norm=true, softcap=30.0) }
                residual { rmsnorm; moe(48, 4, 2, shared=1) } }
      stack decoder(tokens) { embedding(40, d) as wte; position(alibi); repeat(2) b as h; rmsnorm
        lm_head(tie=wte, softcap=15.0) } }""",
    "partial_rotary_parallel": """model p { d = 32
      block b { residual { layernorm; parallel { attention(4, causal=true); mlp(64, act=gelu_tanh) } } }
      stack decoder(tokens) { embedding(40, d); position(rotary, base=500, fraction=0.5)
        repeat(3) b as h; layernorm; lm_head(40, bias=true) } }""",
}


@pytest.mark.parametrize("name", sorted(SMALL_VARIANTS))
def test_small_variants_forward_backward(name):
    torch.manual_seed(0)
    model = compile(SMALL_VARIANTS[name])
    ids = torch.randint(0, 40, (2, 12))
    out = model(ids)
    assert out.shape == (2, 12, 40) and torch.isfinite(out).all()
    out.float().pow(2).mean().backward()


def test_heads_linear_activation_and_nsp():
    model = compile("""model c { d = 32
      stack encoder(tokens) { embedding(40, d); attention(4); linear(d); activation(gelu_tanh)
        branch { pooler; nsp_head } as nsp; classifier(3) } }""")
    out = model(torch.randint(0, 40, (2, 7)), return_dict=True)
    assert out["output"].shape == (2, 7, 3) and out["nsp"].shape == (2, 2)


def test_bert_convention_and_branch_outputs():
    model = compile(SMALL_VARIANTS["bert"]).eval()
    ids = torch.randint(0, 40, (2, 10))
    types = torch.randint(0, 2, (2, 10))
    keep = torch.ones(2, 10, dtype=torch.long)
    keep[1, 6:] = 0
    out = model(ids, token_type_ids=types, attention_mask=keep, return_dict=True)
    assert out["output"].shape == (2, 10, 40) and out["pooled"].shape == (2, 32)
    assert torch.equal(model(ids), model(ids, token_type_ids=torch.zeros_like(ids)))
    # padding: the kept positions do not depend on what the padded ones hold
    ids2 = ids.clone()
    ids2[1, 6:] = 3
    a = model(ids, attention_mask=keep)[1, :6]
    b = model(ids2, attention_mask=keep)[1, :6]
    torch.testing.assert_close(a, b)


def test_encoder_decoder_convention():
    from tests.backends.test_equivalence import TRANSFORMER_SPEC

    model = compile(TRANSFORMER_SPEC)
    assert model(torch.randint(0, 50, (2, 9)), torch.randint(0, 50, (2, 5))).shape == (2, 5, 50)


@pytest.mark.parametrize("spec", [
    TINY_SPEC,
    LLAMA_SPEC.format(vocab=50, d=32, heads=4, kv_heads=2, depth=2, hidden=48, base=10000, window=""),
    LLAMA_SPEC.format(vocab=50, d=32, heads=4, kv_heads=2, depth=2, hidden=48, base=10000,
                      window=", window=4"),
    SMALL_VARIANTS["alibi_softcap_qknorm_moe"],
    SMALL_VARIANTS["partial_rotary_parallel"],
], ids=["learned", "rotary_gqa", "sliding_window", "alibi_softcap", "partial_rotary"])
def test_kv_cache_greedy_equals_recomputation(spec):
    torch.manual_seed(1)
    model = compile(spec).eval()
    for p in model.parameters():  # sharper logits: argmax ties are unlikely
        p.data.mul_(4.0) if p.dim() > 1 else None
    ids = torch.randint(0, 32, (2, 5))
    with torch.no_grad():
        want = greedy_no_cache(model, ids, 12)
    got = model.generate(ids, 12)
    assert torch.equal(got, want)


def test_cache_logits_match_full_forward():
    model = compile(LLAMA_SPEC.format(vocab=50, d=32, heads=4, kv_heads=2, depth=2, hidden=48,
                                      base=10000, window=", window=3")).eval()
    ids = torch.randint(0, 50, (1, 10))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache()
        parts = [model(ids[:, :4], cache=cache), model(ids[:, 4:7], cache=cache),
                 model(ids[:, 7:], cache=cache)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)


def test_seed_gives_identical_weights_and_gpt2_init():
    torch.manual_seed(0)
    a = compile("specs/tiny_shakespeare.arch")
    torch.manual_seed(0)
    b = compile("specs/tiny_shakespeare.arch")
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k
    sd = a.state_dict()
    assert torch.all(sd["decoder.h.0.ln_1.weight"] == 1) and torch.all(sd["decoder.h.0.attn.qkv.bias"] == 0)
    assert abs(sd["decoder.wte.weight"].std().item() - 0.02) < 0.003
    assert abs(sd["decoder.h.0.mlp.down.weight"].std().item() - 0.02 / 8 ** 0.5) < 0.002


def test_source_is_inspectable():
    model = compile(TINY_SPEC)
    src = inspect.getsource(type(model))
    assert "def forward" in src and src in model.strata_source
    assert inspect.getsource(type(model.decoder.h[0])).startswith("class H(nn.Module):")


def test_moe_matches_naive_routing():
    torch.manual_seed(0)
    model = compile(SMALL_VARIANTS["alibi_softcap_qknorm_moe"])
    moe = model.decoder.h[0].moe
    x = torch.randn(2, 5, 32)
    y = moe(x)
    assert y.shape == x.shape
    flat = x.reshape(-1, 32)
    ref = torch.zeros_like(flat)
    for i, t in enumerate(flat):
        p = torch.softmax(moe.router(t), -1)
        w, e = p.topk(2)
        w = w / w.sum()
        for wi, ei in zip(w, e):
            ref[i] += wi * moe.experts[int(ei)](t)
        ref[i] += moe.shared[0](t)
    torch.testing.assert_close(y.reshape(-1, 32), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # torch.compile (dynamo start-up): a few seconds
def test_torch_compile_fullgraph_no_graph_breaks():
    import torch._dynamo

    torch._dynamo.reset()
    model = compile(TINY_SPEC)
    ids = torch.randint(0, 32, (2, 16))
    explain = torch._dynamo.explain(model)(ids)
    assert explain.graph_break_count == 0 and explain.graph_count == 1
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(ids)
    torch.testing.assert_close(out, model(ids))
    out.sum().backward()


def test_device_and_dtype():
    model = compile(TINY_SPEC, dtype=torch.bfloat16)
    assert model.decoder.wte.weight.dtype == torch.bfloat16
    assert model(torch.randint(0, 32, (1, 8))).dtype == torch.bfloat16
    meta = compile("specs/llama2_70b.arch", device="meta")
    assert meta.decoder.embed.weight.is_meta


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_forward_backward_and_compile():
    model = compile("specs/tiny_shakespeare.arch", device="cuda", dtype=torch.bfloat16)
    ids = torch.randint(0, 65, (4, 64), device="cuda")
    model(ids).float().mean().backward()
    compiled = torch.compile(model, fullgraph=True)
    assert compiled(ids).shape == (4, 64, 65)


def test_generate_source_api_and_passes():
    src = generate_source("specs/gpt2.arch")
    assert 150 <= len(src.splitlines()) <= 350
    fused = compile(TINY_SPEC, passes=["fuse_qkv"])
    assert "decoder.h.0.attn.qkv.weight" in fused.state_dict()
    assert fused(torch.randint(0, 32, (1, 4))).shape == (1, 4, 32)


def test_fused_passes_compute_the_same_function():
    spec = LLAMA_SPEC.format(vocab=50, d=32, heads=4, kv_heads=2, depth=2, hidden=48, base=10000,
                             window="")
    plain = compile(spec).eval()
    fused = compile(spec, passes=["fuse_qkv", "fuse_mlp"]).eval()
    sd = plain.state_dict()
    mapped = {}
    for k, v in sd.items():
        if ".attn.q." in k:
            mapped[k.replace(".q.", ".qkv.")] = torch.cat(
                [v, sd[k.replace(".q.", ".k.")], sd[k.replace(".q.", ".v.")]])
        elif ".mlp.gate." in k:
            mapped[k.replace(".gate.", ".gate_up.")] = torch.cat([v, sd[k.replace(".gate.", ".up.")]])
        elif not any(s in k for s in (".attn.k.", ".attn.v.", ".mlp.up.")):
            mapped[k] = v
    fused.load_state_dict(mapped)
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(fused(ids), plain(ids), atol=1e-5, rtol=0)
    low = compile(spec, passes=[{"name": "low_rank", "options": {"rank": 4, "on": "decoder.lm_head"}}])
    assert low.decoder.lm_head.a.weight.shape == (4, 32)
    assert low(ids).shape == (2, 9, 50)
