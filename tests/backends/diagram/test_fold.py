"""Folding repeats (strata/backends/diagram/fold.py): which instance is drawn
for each node, how many it stands for, and which edges folding removes."""

from __future__ import annotations

from strata.backends.diagram.fold import Fold
from tests.render.specs import graph, variants_graph


def test_uniform_repeat_folds_onto_the_first_instance():
    fold = Fold(graph("gpt2"), unfold=False)
    assert fold("decoder.h.11.attn.q") == "decoder.h.0.attn.q"
    assert fold("decoder.wte") == "decoder.wte"
    assert fold.count["decoder.h.0"] == 12 and fold.uniform["decoder.h"]
    assert fold.first["decoder.h"] == "decoder.h.0"


def test_unfold_draws_every_instance():
    fold = Fold(graph("gpt2"), unfold=True)
    assert fold("decoder.h.11.attn.q") == "decoder.h.11.attn.q"
    assert all(fold.count[f"decoder.h.{i}"] == 1 for i in range(12))


def test_variants_fold_onto_their_own_first_instance():
    fold = Fold(variants_graph(), unfold=False)  # h: windows 8, 1000, 8, 1000
    assert not fold.uniform["decoder.h"]
    assert fold("decoder.h.2.attn.core") == "decoder.h.0.attn.core"
    assert fold("decoder.h.3.attn.core") == "decoder.h.1.attn.core"
    assert fold.members["decoder.h.1"] == ["decoder.h.1", "decoder.h.3"]


def test_layer_to_layer_edges_are_crossings():
    g = graph("gpt2")
    fold = Fold(g, unfold=False)
    chain = [(u, v) for u, v in g.edges() if u.startswith("decoder.h.0.") and v.startswith("decoder.h.1.")]
    assert chain and all(fold.crosses(u, v) for u, v in chain)
    inside = [(u, v) for u, v in g.edges() if u.startswith("decoder.h.0.") and v.startswith("decoder.h.0.")]
    assert inside and not any(fold.crosses(u, v) for u, v in inside)
    into = [(u, v) for u, v in g.edges() if not u.startswith("decoder.h.") and v.startswith("decoder.h.0.")]
    assert into and not any(fold.crosses(u, v) for u, v in into)
    # unfolded, the chain is drawn: it runs forward from one drawn instance to the next
    assert not any(Fold(g, unfold=True).crosses(u, v) for u, v in chain)
