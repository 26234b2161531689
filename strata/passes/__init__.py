"""IR-level passes: each a frozen dataclass with `name`, its options and
`run(graph) -> graph`, returning a new graph that passes `ir.lint`.

    >>> from strata.compiler import build_text
    >>> g = build_text('''
    ... model m { stack s(ids) { embedding(10, 8); attention(2); lm_head(10) } }
    ... passes { fuse_qkv }''')
    >>> h = apply_passes(g)
    >>> "s.attn.qkv" in h, h.graph["parameters"] == g.graph["parameters"]
    (True, True)

The pipeline, in the order a spec lists its passes:
"""

from __future__ import annotations

import networkx as nx

from strata.compiler import ir
from strata.passes._rewrite import PassError
from strata.passes.distill import Distill
from strata.passes.fuse_mlp import FuseMLP
from strata.passes.fuse_qkv import FuseQKV
from strata.passes.low_rank import LowRank
from strata.passes.prune import Prune
from strata.passes.quantize import Quantize
from strata.errors import Diagnostic, SpecError

__all__ = ["REGISTRY", "PassError", "apply_passes", "make_pass"]

REGISTRY = {
    "fuse_qkv": FuseQKV,    # q, k, v projections -> one qkv matmul + split
    "fuse_mlp": FuseMLP,    # gate, up projections -> one gate_up matmul + split
    "quantize": Quantize,   # mark linears int8 / int4 / fp8
    "prune": Prune,         # mark linears pruned (fraction)
    "low_rank": LowRank,    # W [out, in] -> B [out, r] A [r, in]
    "distill": Distill,     # record the teacher (graph unchanged)
}


def make_pass(name: str, options: dict):
    """A pass object from its registry name and validated options."""
    return REGISTRY[name](**options)


def apply_passes(g: nx.MultiDiGraph, *, lint: bool = True) -> nx.MultiDiGraph:
    """Apply g.graph["passes"] in order; the result records them in
    g.graph["applied"] and has an empty `passes` list."""
    todo = list(g.graph.get("passes", []))
    applied = list(g.graph.get("applied", []))
    for p in todo:
        try:
            g = make_pass(p["name"], p["options"]).run(g)
        except PassError as e:
            raise SpecError([Diagnostic(str(e), p.get("span"))]) from None
        if lint:
            ir.lint(g)
        applied.append({k: v for k, v in p.items() if k != "span"})
    g.graph["passes"] = []
    g.graph["applied"] = applied
    return g
