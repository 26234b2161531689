"""strata/compiler/positions.py: where a model's positions end, per stack."""

from __future__ import annotations

from strata.compiler import build_text
from strata.compiler.positions import PositionLimit, position_limits


def test_learned_and_sinusoidal_positions_end_rotary_does_not():
    g = build_text("""model m {
  stack encoder(src) { embedding(10, 8) as e; position(learned, 16, offset=2) as wpe; layernorm }
  stack decoder(tgt, memory = encoder) { embedding(10, 8) as e; position(sinusoidal, 32)
    residual { cross_attention(2, memory) }; lm_head(tie=e) }
}""")
    assert position_limits(g) == [PositionLimit("encoder.wpe", "encoder", "learned", 16),
                                  PositionLimit("decoder.pos", "decoder", "sinusoidal", 32)]
    rope = build_text("model r { stack s(ids) { embedding(10, 8) as e; position(rotary)\n"
                      "  residual { attention(2, causal=true) }; lm_head(tie=e) } }")
    assert position_limits(rope) == []
