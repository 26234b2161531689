"""strata.compiler.repeat_copy: a repeat's instances copied from the first give the
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
    "a shape mistake": (GPT2.replace("mlp(4 * d, act=gelu_tanh)", "mlp(4 * d, act=gelu_tanh); linear(3)"), True),
    "too many layers": (GPT2.replace("depth = 12", "depth = 9000"), True),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_folding_keeps_mistakes_and_limits(name, monkeypatch):
    text, copies = MUTATIONS[name]
    assert (text == GPT2) == (name == "plain")
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


def test_a_cache_takes_unchanged_layers_from_the_last_build():
    """The language server's incremental check: after an edit that leaves the
    layers as they were, no layer is made again; after one inside the block,
    every copy is made anew.  The graphs equal those built without a cache."""
    from strata.compiler.repeat_copy import FoldCache

    deep = GPT2.replace("depth = 12", "depth = 200")
    cache = FoldCache()
    first = analyze_text(deep, "deep.arch", cache=cache)
    assert (first.graph.folded, first.graph.reused) == (198, 0)
    cache_nodes = dict(first.graph.nodes)
    edits = {"a line after the model": (deep + "\n# note\n", 198),
             "the head": (deep.replace("lm_head(tie=wte)", "lm_head()"), 198),
             "inside the block": (deep.replace("4 * d", "3 * d"), 0),
             "inside the block again": (deep.replace("4 * d", "2 * d"), 0),
             "a line above the block": (deep.replace("model gpt2 {", "model gpt2 {\n"), 0)}
    for name, (text, reused) in edits.items():
        assert text != deep
        again = analyze_text(text, "deep.arch", cache=cache)
        plain = analyze_text(text, "deep.arch")
        assert (again.graph.folded, again.graph.reused) == (198, reused), name
        n5 = again.graph.nodes["decoder.h.5.ln_1"] if "decoder.h.5.ln_1" in again.graph.nodes else None
        if name.startswith("inside the block"):  # the norms are taken again, the MLP made anew
            assert n5 is not None and n5 is cache_nodes["decoder.h.5.ln_1"], name
        cache_nodes = dict(again.graph.nodes)
        assert list(again.graph.nodes.items()) == list(plain.graph.nodes.items()), name
        assert again.graph.edges == plain.graph.edges and again.graph.graph == plain.graph.graph, name
        assert again.diagnostics == plain.diagnostics, name
