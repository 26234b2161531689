"""strata.compiler.ir_copy: the copy each pass rewrites shares no container with
the graph it was given, so no shipped pass changes its input, even where the
input's layers share their data with an earlier build's (the language server's
FoldCache); and it is the same graph as a deep copy, orders included."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from strata.compiler import build_text, ir
from strata.compiler.build import analyze_text
from strata.compiler.ir_copy import copy_graph
from strata.compiler.repeat_copy import FoldCache
from strata.passes import REGISTRY, make_pass
from strata.passes.pass_base import PassContext

ROOT = Path(__file__).resolve().parents[2]

# Gated MLPs (fuse_mlp), attention with GQA (fuse_qkv), widths int4's groups divide,
# a tied head (quantize's int8 copy of it), 4 layers: instances 2 and 3 are copies.
SPEC = """model m {
  d = 64
  block layer {
    residual { rmsnorm; attention(4, kv_heads=2, causal=true) }
    residual { rmsnorm; mlp(128, act=swiglu) }
  }
  stack decoder(tokens) { embedding(96, d) as wte; repeat(4) layer as h; rmsnorm; lm_head(tie=wte) }
}
"""

# Every shipped pass, with options it runs with from the graph alone (a check's).
RUNS = {
    "fuse_qkv": [{}],
    "fuse_mlp": [{}],
    "quantize": [{"scheme": "int8_dynamic"}, {"scheme": "int4_weight", "group_size": 32, "on": "mlp"},
                 {"scheme": "int8_dynamic", "on": "lm_head"}],
    "prune": [{"amount": 0.5}, {"amount": 0.5, "method": "structured"}, {"amount": 0.5, "method": "2:4"}],
    "low_rank": [{"rank": 8, "on": "mlp"}],
    "lora": [{"rank": 4}],
    "distill": [{"teacher": "m"}],
}
CASES = [(name, o) for name, runs in RUNS.items() for o in runs]


def test_every_shipped_pass_is_tried():
    assert set(RUNS) == set(REGISTRY)


def _state(g) -> tuple:
    """Everything a pass could change, deep-copied: data, orders of nodes, of
    successors and of predecessors, edge keys."""
    return copy.deepcopy((list(g.nodes(data=True)), list(g.edges(keys=True, data=True)), dict(g.graph),
                          {n: list(g.pred[n]) for n in g}))


def _graphs(text: str):
    """(a graph built alone; the LSP's pair: the last build's graph and this
    build's, whose copied layers are the last build's node data)."""
    alone = build_text(text)
    cache = FoldCache()
    last = analyze_text(text, "m.arch", cache=cache).graph
    now = analyze_text(text + "\n", "m.arch", cache=cache).graph
    assert now.reused == 2 and now.nodes["decoder.h.3.mlp.up"] is last.nodes["decoder.h.3.mlp.up"]
    return alone, ir.to_networkx(last), ir.to_networkx(now)


@pytest.mark.parametrize(("name", "options"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_a_pass_leaves_its_input_as_it_was(name, options):
    """A shallow copy (networkx's g.copy()) fails this: quantize, prune, lora
    and low_rank change attrs / params dicts in place, fuse_qkv a component's
    facts, prune(structured) its options."""
    alone, last, now = _graphs(SPEC)
    for g, also in ((alone, None), (now, last)):
        before, before_also = _state(g), _state(also) if also is not None else None
        h = make_pass(name, options).run(g, PassContext(checking=True))
        assert h is not g and h.graph.applied[-1]["name"] == name
        assert _state(g) == before, f"{name}({options}) changed its input"
        if also is not None:
            assert _state(also) == before_also, f"{name}({options}) changed the last build's graph"


def test_the_passes_in_a_row_leave_the_input_as_it_was():
    """Each pass gets the one before's output: one chain over every kind."""
    from strata.passes import apply_passes

    text = SPEC + 'passes { fuse_qkv; fuse_mlp; prune(0.5, method=structured); low_rank(8, on="mlp")\n' \
                  ' quantize(int8_dynamic, on="attention"); lora(4, on="mlp") }\n'
    alone, last, now = _graphs(text)
    for g in (alone, now, last):
        before = _state(g)
        after = apply_passes(g)
        assert [a["name"] for a in after.graph.applied] == ["fuse_qkv", "fuse_mlp", "prune", "low_rank",
                                                           "quantize", "lora"]
        assert _state(g) == before, "apply_passes changed its input"  # it wrote spec_params on it
        assert after.graph.spec_params == ir.state_dict_shapes(g)  # the result still records them


def test_a_check_that_stops_at_a_pass_needing_weights_leaves_the_input_as_it_was():
    """A check stops quietly at a pass that chooses from the weights: the graph it
    was given kept its passes (they were cleared on it when the first pass stopped)."""
    from strata.passes import apply_passes, refusals

    g = build_text(SPEC + 'passes { low_rank(energy=0.9); fuse_qkv }\n')
    before = _state(g)
    assert apply_passes(g, ctx=PassContext(checking=True)) is not None
    assert refusals(g) == []
    assert _state(g) == before and [e["name"] for e in g.graph.passes] == ["low_rank", "fuse_qkv"]


@pytest.mark.parametrize("spec", ["gpt2.arch", "llama2_70b.arch", "t5_small.arch"])
def test_the_copy_is_the_graph_a_deep_copy_makes(spec):
    path = ROOT / "specs" / spec
    if not path.exists():
        pytest.skip(f"no {spec}")
    from strata.compiler import build_file

    g = build_file(path)
    h, deep = copy_graph(g), copy.deepcopy(g)
    assert type(h) is type(g)
    assert _state(h) == _state(deep)
    assert all(type(h.nodes[n]) is type(g.nodes[n]) for n in g)
    assert all(type(d) is type(e) for (*_, d), (*_, e) in zip(h.edges(keys=True, data=True),
                                                               g.edges(keys=True, data=True)))
    assert type(h.graph) is type(g.graph)
    # an edge's key dict is one object from either end, as networkx keeps it
    u, v = next(iter(h.edges()))
    assert h._succ[u][v] is h._pred[v][u]
    h.add_edge(u, v)
    assert h.number_of_edges(u, v) == g.number_of_edges(u, v) + 1 and len(h.pred[v][u]) == len(h.succ[u][v])
