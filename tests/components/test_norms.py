"""strata/components/norms.py: RMSNorm with Gemma's (1 + w) scale."""

from __future__ import annotations

from tests.optional import require

torch = require("torch")
transformers = require("transformers")

import strata.api as api
from strata.compiler import build_text

SPEC = """model m {
  stack s(tokens) { embedding(50, 16); rmsnorm(eps=1e-6, unit_offset=true) as norm; layernorm as ln } }"""


def test_unit_offset_equals_gemma2_rmsnorm():
    from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm

    g = build_text(SPEC)
    assert g.nodes["s.norm"]["attrs"]["unit_offset"] is True
    model = api.compile(g).eval()
    ref = Gemma2RMSNorm(16, eps=1e-6)
    torch.nn.init.normal_(ref.weight)
    model.s.norm.weight.data.copy_(ref.weight)
    x = torch.randn(2, 5, 16)
    for dtype in (torch.float32, torch.bfloat16):
        torch.testing.assert_close(model.s.norm.to(dtype)(x.to(dtype)), ref.to(dtype)(x.to(dtype)),
                                   atol=0, rtol=0)


def test_unit_offset_weights_start_at_zero():
    """init_weights leaves the scale at 1 + 0; other norm scales at 1."""
    model = api.compile(SPEC)
    assert torch.equal(model.s.norm.weight, torch.zeros(16))
    assert torch.equal(model.s.ln.weight, torch.ones(16))
    assert 'zeros=(".norm.weight",)' in model.strata_source
