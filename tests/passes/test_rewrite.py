"""Graph rewriting shared by the passes (strata/passes/_rewrite.py)."""

from __future__ import annotations

from strata.compiler import build_text
from strata.passes import _rewrite, apply_passes

DEEP = """model deep {{ d = 16
  block layer {{ residual {{ layernorm; attention(2, causal=true) }} residual {{ layernorm; mlp(4 * d, act=swiglu) }} }}
  stack decoder(tokens) {{ embedding(50, d) as wte; repeat({n}) layer as h; layernorm; lm_head(tie=wte) }} }}
passes {{ fuse_qkv
 fuse_mlp
 low_rank(4, on="mlp") }}"""


def test_each_pass_reorders_the_graph_once_whatever_the_depth(monkeypatch):
    """A reorder copies the whole graph: one per replaced node made passes
    quadratic in the number of layers (400 layers took 46 s)."""
    calls = []
    real = _rewrite.reorder
    monkeypatch.setattr(_rewrite, "reorder", lambda g, order: calls.append(1) or real(g, order))
    for n in (2, 12):
        calls.clear()
        g = apply_passes(build_text(DEEP.format(n=n)))
        assert len(calls) == 3, (n, len(calls))
        assert f"decoder.h.{n - 1}.attn.qkv" in g and f"decoder.h.{n - 1}.mlp.gate_up.a" in g
        assert list(g.nodes).index("decoder.h.0.attn.qkv") < list(g.nodes).index("decoder.h.0.attn.o")
