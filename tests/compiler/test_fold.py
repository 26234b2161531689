"""strata.compiler.fold: a repeat's instances copied from the first give the
same graph, node for node and in the same order, and the same mistakes, as
elaborating each one; and copying happens where the instances agree."""

from __future__ import annotations

from pathlib import Path

import pytest

import strata.compiler.elaborate as elaborate_module
from strata.compiler.build import analyze_text

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(p for p in (ROOT / "specs").iterdir() if p.suffix in (".arch", ".yaml"))
GPT2 = (ROOT / "specs" / "gpt2.arch").read_text()


def _both(text: str, file: str, monkeypatch):
    folded = analyze_text(text, file)
    with monkeypatch.context() as m:  # a body that always reads its index: every instance elaborated
        m.setattr(elaborate_module, "reads", lambda *a: True)
        full = analyze_text(text, file)
    return folded, full


def _same(a, b) -> None:
    assert [(d.message, d.span, d.hint) for d in a.diagnostics] == [(d.message, d.span, d.hint)
                                                                      for d in b.diagnostics]
    if a.graph is None or b.graph is None:
        assert a.graph is b.graph
        return
    assert list(a.graph.nodes.items()) == list(b.graph.nodes.items())
    assert a.graph.edges == b.graph.edges
    assert a.graph.graph == b.graph.graph
    assert list(a.graph.graph["components"]) == list(b.graph.graph["components"])


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_folded_graph_equals_the_elaborated_one(spec, monkeypatch):
    folded, full = _both(spec.read_text(), str(spec), monkeypatch)
    _same(folded, full)
    assert full.graph.folded == 0


MUTATIONS = {
    "plain": (GPT2, True),
    "index read by the block": (GPT2.replace("block layer {", "block layer {\n    w = index * 2"), False),
    "index passed as an argument": (GPT2.replace("repeat(depth) layer as h", "repeat(depth, i) layer as h")
                                    .replace("block layer {", "block layer(k = 0) {"), True),
    "a mistake inside the block": (GPT2.replace("act=gelu_tanh", "act=gelu_tan"), True),
    "a shape mistake": (GPT2.replace("mlp(4*d, act=gelu_tanh)", "mlp(4*d, act=gelu_tanh); linear(3)"), True),
    "too many layers": (GPT2.replace("depth = 12", "depth = 9000"), True),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_folding_keeps_mistakes_and_limits(name, monkeypatch):
    text, copies = MUTATIONS[name]
    folded, full = _both(text, "g.arch", monkeypatch)
    _same(folded, full)
    assert (folded.graph.folded > 0) == copies


def test_a_deep_spec_elaborates_two_layers_and_copies_the_rest():
    a = analyze_text(GPT2.replace("depth = 12", "depth = 2000"), "deep.arch")
    assert a.diagnostics == [] and a.graph.folded == 1998
    assert a.graph.graph["repeats"][0]["instances"][-1] == "decoder.h.1999"
    # each copy has its own mutable data, as an elaborated layer would
    n0, n5 = a.graph.nodes["decoder.h.0.attn.q"], a.graph.nodes["decoder.h.5.attn.q"]
    assert n0["attrs"] == n5["attrs"] and n0["attrs"] is not n5["attrs"] and n0["params"] is not n5["params"]
