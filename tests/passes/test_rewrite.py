"""Graph rewriting shared by the passes (strata/passes/_rewrite.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from strata.compiler import build_text
from strata.compiler.ir_copy import copy_graph
from strata.compiler.ir_types import ir_graph_class
from strata.passes import _rewrite, apply_passes

ROOT = Path(__file__).resolve().parents[2]

DEEP = """model deep {{ d = 16
  block layer {{ residual {{ layernorm; attention(2, causal=true) }} residual {{ layernorm; mlp(4 * d, act=swiglu) }} }}
  stack decoder(tokens) {{ embedding(50, d) as wte; repeat({n}) layer as h; layernorm; lm_head(tie=wte) }} }}
passes {{ fuse_qkv
 fuse_mlp
 low_rank(4, on="mlp") }}"""


def test_each_pass_reorders_the_graph_once_whatever_the_depth(monkeypatch):
    """A reorder walks the whole graph (it copied it, before): one per replaced
    node made passes quadratic in the number of layers (400 layers took 46 s)."""
    calls = []
    real = _rewrite.reorder
    monkeypatch.setattr(_rewrite, "reorder", lambda g, order: calls.append(1) or real(g, order))
    for n in (2, 12):
        calls.clear()
        g = apply_passes(build_text(DEEP.format(n=n)))
        assert len(calls) == 3, (n, len(calls))
        assert f"decoder.h.{n - 1}.attn.qkv" in g and f"decoder.h.{n - 1}.mlp.gate_up.a" in g
        assert list(g.nodes).index("decoder.h.0.attn.qkv") < list(g.nodes).index("decoder.h.0.attn.o")


def _copying_reorder(g, order):
    """The reorder before it moved the pass's own graph: a copy, rebuilt node by
    node and edge by edge (the reference the one in place must equal)."""
    h = g.__class__()
    h.graph.update(g.graph)
    for n in order:
        h.add_node(n, **g.nodes[n])
    for u, v, d in g.edges(data=True):
        h.add_edge(u, v, **d)
    return h


def _state(g) -> tuple:
    """Nodes and their data, edges with keys and data, predecessors' and
    successors' orders, the graph's data: everything in its orders."""
    return (list(g.nodes(data=True)), list(g.edges(keys=True, data=True)), dict(g.graph),
            {n: list(g.pred[n]) for n in g}, {n: list(g.succ[n]) for n in g})


def test_a_reorder_moves_the_graph_it_is_given_and_copies_nothing():
    """The pass made its own copy (copy_graph) before; a second copy per pass
    was 8-11 % of apply_passes (docs/benchmarks.md, Passes)."""
    g = copy_graph(build_text(DEEP.format(n=2)))
    data = {n: g.nodes[n] for n in g}
    order = list(g.nodes)[::-1]
    h = _rewrite.reorder(g, order)
    assert h is g and list(h.nodes) == order
    assert all(h.nodes[n] is data[n] for n in h)


def test_a_reorder_keys_and_orders_as_a_rebuilt_graph_does():
    """Predecessors in their sources' order before the move, parallel edges keyed
    from 0 again after one was removed, as rebuilding the graph gave."""
    g = ir_graph_class()()
    for n in "abc":
        g.add_node(n, op="input")
    g.add_edge("b", "c", port=0)
    g.add_edge("a", "c", port=1)
    g.add_edge("a", "b", port=0)
    g.add_edge("a", "b", port=1)
    g.remove_edge("a", "b", key=0)
    want = _state(_copying_reorder(g, ["c", "b", "a"]))
    h = _rewrite.reorder(g, ["c", "b", "a"])
    assert _state(h) == want
    assert list(h.pred["c"]) == ["a", "b"] and list(h.succ["a"]["b"]) == [0]
    assert h._succ["a"]["c"] is h._pred["c"]["a"]


@pytest.mark.parametrize("spec", ["gpt2.arch", "llama2_70b.arch", "t5_small.arch", None])
def test_the_passes_give_the_graph_the_copying_reorder_gave(spec, monkeypatch):
    passes = "passes { fuse_qkv; fuse_mlp; low_rank(4, on=\"mlp\") }\n"
    if spec is None:
        g = build_text(DEEP.format(n=3))
    else:
        text = (ROOT / "specs" / spec).read_text()
        if "fuse_mlp" not in text and "swiglu" not in text:
            passes = "passes { fuse_qkv; low_rank(4, on=\"mlp\") }\n"
        g = build_text(text + passes, str(ROOT / "specs" / spec))
    now = _state(apply_passes(g))
    monkeypatch.setattr(_rewrite, "reorder", _copying_reorder)
    assert now == _state(apply_passes(g))
