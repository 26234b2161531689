"""The IR's typed dicts: fields read as attributes, copies keep their type, and
lint refuses a field of the wrong type or an attribute no op declares."""

from __future__ import annotations

import pytest

from strata.compiler import build_file, build_text, ir
from strata.compiler.ir_types import ATTRS, EdgeData, GraphData, IRTypeError, NodeData
from strata.passes import apply_passes, make_pass  # noqa: F401 - the registry

SPECS = ["specs/gpt2.arch", "specs/t5_small.arch", "specs/mixtral_8x7b.arch", "specs/bert_base.arch"]


@pytest.mark.parametrize("spec", SPECS)
def test_every_dict_of_a_built_graph_is_typed(spec):
    g = build_file(spec)
    assert isinstance(g.graph, GraphData)
    assert all(isinstance(d, NodeData) for _, d in g.nodes(data=True))
    assert all(isinstance(e, EdgeData) for _, _, e in g.edges(data=True))
    n = next(iter(g.nodes))
    assert g.nodes[n].op == g.nodes[n]["op"] and g.graph.name == g.graph["name"]
    ir.lint(g)


def test_folded_copies_and_graph_copies_stay_typed():
    text = open("specs/gpt2.arch").read().replace("depth = 12", "depth = 40")
    staged = build_text(text, networkx=False)
    assert staged.folded == 38
    assert all(type(d) is NodeData for d in staged.nodes.values())
    assert all(type(e[2]) is EdgeData for e in staged.edges)
    g = ir.to_networkx(staged)
    h = g.copy()
    assert type(h) is type(g) and all(isinstance(d, NodeData) for _, d in h.nodes(data=True))
    ir.lint(h)


def test_passes_keep_the_types():
    g = build_file("specs/gpt2.arch")
    g.graph.passes = [{"name": "fuse_qkv", "options": make_pass("fuse_qkv", {}).o.model_dump()}]
    h = apply_passes(g)  # lint runs after the pass
    assert isinstance(h.graph, GraphData) and h.graph.applied[0]["name"] == "fuse_qkv"
    assert all(isinstance(d, NodeData) for _, d in h.nodes(data=True))


def test_lint_refuses_a_field_of_the_wrong_type():
    g = build_file("specs/tiny_shakespeare.arch")
    n = next(n for n, d in g.nodes(data=True) if d.op == "linear")
    g.nodes[n].params = [(4, 4)]
    with pytest.raises(IRTypeError, match=rf"node {n!r}: params is list, expected dict"):
        ir.lint(g)


def test_lint_refuses_an_undeclared_attribute():
    g = build_file("specs/tiny_shakespeare.arch")
    n = next(n for n, d in g.nodes(data=True) if d.op == "norm")
    g.nodes[n].attrs["epsilon"] = 1e-5  # a typo of eps
    with pytest.raises(IRTypeError, match="attribute 'epsilon' is not one a 'norm' node has"):
        ir.lint(g)


def test_optional_fields_read_as_their_default():
    g = build_file("specs/tiny_shakespeare.arch")
    assert "applied" not in g.graph and g.graph.applied == ()
    assert g.graph.distill is None
    with pytest.raises(AttributeError):
        NodeData().op


def test_every_op_declares_its_attributes():
    assert set(ATTRS) == set(ir.OPS)
