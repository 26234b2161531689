"""The generated Config: the spec's variables, build(**changes), derived values."""

from __future__ import annotations

import pytest
from tests.optional import require

torch = require("torch")

from strata.api import compile, generate_source
from strata.backends.torch.loader import load_source

SPEC = """
model small {{
  vocab = {vocab}
  ctx   = 32
  d     = {d}
  heads = {heads}
  hd    = d // heads
  depth = {depth}
  block layer {{
    residual {{ layernorm; attention(heads, head_dim=hd, causal=true); dropout(0.1) }}
    residual {{ layernorm; mlp(4 * d, act=gelu) }}
  }}
  stack decoder(tokens) {{
    embedding(vocab, d) as wte
    position(learned, ctx) as wpe
    repeat(depth) layer as h
    layernorm as ln_f
    lm_head(tie=wte)
  }}
}}
"""


def shapes(model) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_changes_build_the_spec_with_other_values():
    module = load_source(generate_source(SPEC.format(vocab=50, d=32, heads=4, depth=2)))
    changed = module.build(d=48, heads=6, depth=3, vocab=70)
    want = compile(SPEC.format(vocab=70, d=48, heads=6, depth=3))
    assert shapes(changed) == shapes(want)
    assert changed.decoder.lm_head.weight is changed.decoder.wte.weight
    assert changed(torch.randint(0, 70, (2, 5))).shape == (2, 5, 70)


def test_config_object_and_derived_property():
    src = generate_source(SPEC.format(vocab=50, d=32, heads=4, depth=2))
    assert "    @property\n    def hd(self):  # d // heads\n        return self.d // self.heads" in src
    module = load_source(src)
    config = module.Config(d=64, heads=8)
    assert config.hd == 8
    model = module.build(config)
    assert model.config is not config and model.config.d == 64  # build copies, never mutates
    assert model.decoder.h[0].attn.head_dim == 8
    with pytest.raises(TypeError):
        module.build(hd=3)  # derived values follow the variables they are made of


def test_default_build_equals_compile():
    spec = SPEC.format(vocab=50, d=32, heads=4, depth=2)
    torch.manual_seed(0)
    a = load_source(generate_source(spec)).build()
    torch.manual_seed(0)
    b = compile(spec)
    for (k, v), (k2, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and torch.equal(v, w)


def test_values_without_a_spec_expression_stay_numbers():
    src = generate_source("""
    model m {
      d = 16
      block b(w) { mlp(w) }
      stack s(tokens) { embedding(10, d); repeat(2, i) b(w=8 * (i + 1)) as layers; lm_head(10) }
    }""")
    assert "MLP(config.d, 8)" in src and "MLP(config.d, 16)" in src  # per-layer sizes
    assert "nn.ModuleList([B(config), B2(config)])" in src
    assert load_source(src).build()(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, 10)
