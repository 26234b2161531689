"""strata/components/embeddings.py: positions added to the stream (learned with an
offset) and positions that live at the stack (relative position bias)."""

from __future__ import annotations

import pytest

from tests.optional import require

from strata.compiler import build_text
from strata.errors import SpecError

torch = require("torch")
transformers = require("transformers")

import strata.api as api
from strata.backends.torch import runtime as R

RELATIVE = """
model rel {{
  d = 32
  stack s(tokens) {{
    embedding(50, d)
    position(relative, buckets={buckets}, max_distance={distance})
    repeat(2) {{ residual {{ rmsnorm; attention(4, causal={causal}, bias=false, scale=1) }} }} as layers
    lm_head(50)
  }}
}}
"""


def _t5_attention(causal: bool, buckets: int, distance: int):
    from transformers.models.t5.modeling_t5 import T5Attention

    cfg = transformers.T5Config(d_model=32, d_kv=8, num_heads=4, relative_attention_num_buckets=buckets,
                                relative_attention_max_distance=distance, is_decoder=causal)
    return T5Attention(cfg, has_relative_attention_bias=True, layer_idx=0)


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("buckets,distance", [(32, 128), (8, 20), (6, 7)])
def test_relative_bias_equals_t5(causal, buckets, distance):
    """Every bucket and bias of T5's compute_bias, for queries after a cached prefix too."""
    ref = _t5_attention(causal, buckets, distance)
    torch.nn.init.normal_(ref.relative_attention_bias.weight)
    ours = R.RelativePositionBias(4, buckets, distance, bidirectional=not causal)
    ours.weight.data.copy_(ref.relative_attention_bias.weight)
    for T, past in ((200, 0), (3, 150)):
        keep = torch.ones(1, 1, T, past + T, dtype=torch.bool)
        want = ref.compute_bias(T, past + T, past_seen_tokens=past)
        torch.testing.assert_close(ours(keep, past), want, atol=0, rtol=0)


def test_relative_bias_is_one_table_per_stack():
    g = build_text(RELATIVE.format(buckets=32, distance=128, causal="true"))
    node = g.nodes["s.pos"]
    assert node["params"] == {"weight": (32, 4)} and node["attrs"]["bidirectional"] is False
    assert g.graph["parameters"] == 50 * 32 + 32 * 4 + 2 * (32 + 4 * 32 * 32) + 50 * 32
    src = api.generate_source(g)
    assert src.count("RelativePositionBias(4") == 1  # built at the stack, not per layer
    assert "mask = self.pos(make_mask(T, start_pos, tokens.device), start_pos)" in src


def test_relative_bias_rejects_layers_that_disagree():
    text = """model m { stack s(tokens) { embedding(50, 32); position(relative)
        residual { attention(4) }; residual { attention(8) } } }"""
    with pytest.raises(SpecError) as e:
        build_text(text)
    assert "one table shared by its self-attentions" in e.value.diagnostics[0].message
    with pytest.raises(SpecError) as e:
        build_text("model m { stack s(tokens) { embedding(50, 32); position(relative, buckets=32, "
                   "max_distance=10); residual { attention(4) } } }")
    assert "max_distance (10) must exceed buckets // 2 (16)" in e.value.diagnostics[0].message


def test_relative_bias_cached_generation_equals_recomputation():
    torch.manual_seed(0)
    model = api.compile(RELATIVE.format(buckets=8, distance=12, causal="true")).eval()
    ids = torch.randint(0, 50, (2, 5))
    got = model.generate(ids, 20)
    want = ids
    with torch.no_grad():
        for _ in range(20):
            want = torch.cat([want, model(want)[:, -1:].argmax(-1)], 1)
    assert torch.equal(got, want)


def test_learned_offset_equals_opt():
    """OPT's table has ctx + 2 rows; position p reads row p + 2."""
    from transformers.models.opt.modeling_opt import OPTLearnedPositionalEmbedding

    spec = """model m { ctx = 16
      stack s(tokens) { embedding(50, 8) as embed; position(learned, ctx, offset=2) as positions } }"""
    g = build_text(spec)
    assert g.nodes["s.positions"]["params"] == {"weight": (18, 8)}
    model = api.compile(g).eval()
    src = model.strata_source
    assert "nn.Embedding(config.ctx + 2, 8)" in src and "self.positions(positions + 2)" in src
    ref = OPTLearnedPositionalEmbedding(16, 8)
    ref.weight.data.copy_(model.s.positions.weight)
    ids = torch.randint(0, 50, (1, 16))
    with torch.no_grad():
        want = model.s.embed(ids) + ref(torch.ones(1, 16, dtype=torch.long))
        torch.testing.assert_close(model(ids), want, atol=1e-6, rtol=0)


def test_offset_is_for_learned_positions_only():
    with pytest.raises(SpecError) as e:
        build_text("model m { stack s(tokens) { embedding(50, 8); position(sinusoidal, 16, offset=2) } }")
    assert e.value.diagnostics[0].message == "'offset' is for learned positions, not position(sinusoidal)"
