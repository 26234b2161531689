"""Box and cluster text (strata/backends/diagram/labels.py): component titles
from their registrations, counts, cutting, pass marks, totals under a scope."""

from __future__ import annotations

import typing

import pytest

from strata.backends.diagram.labels import (
    MAX_LINE,
    Totals,
    annotations,
    component_detail,
    component_title,
    cut,
    human_count,
)
from strata.compiler import build_text
from strata.components import COMPONENTS
from strata.passes import apply_passes
from tests.render.specs import graph


@pytest.mark.parametrize("n, text", [(124_439_808, "124.4M"), (7_087_872, "7.1M"), (512, "512"),
                                     (6_738_415_616, "6.7B"), (1536, "1.5K"), (0, "0")])
def test_human_count(n, text):
    assert human_count(n) == text


@pytest.mark.parametrize("kind", sorted(COMPONENTS))
def test_every_component_kind_has_a_title(kind):
    options = {"kind": "rotary", "heads": 2, "act": "gelu", "hidden": 8, "experts": 2, "top_k": 1,
               "p": 0.1, "fn": "relu"}
    assert component_title({"kind": kind, "options": options}).strip()


def test_every_position_kind_has_a_title():
    kinds = typing.get_args(COMPONENTS["position"].options.model_fields["kind"].annotation)
    for kind in kinds:
        assert component_title({"kind": "position", "options": {"kind": kind}}) != kind


@pytest.mark.parametrize("kind, options, title, detail", [
    ("attention", {"heads": 8, "causal": True}, "Masked Self-Attention", "8 heads"),
    ("attention", {"heads": 64, "kv_heads": 8, "window": 4096}, "Self-Attention",
     "64 heads, 8 kv (GQA), window 4096"),
    ("cross_attention", {"heads": 8, "kv_heads": None}, "Encoder-Decoder Attention", "8 heads"),
    ("mlp", {"act": "swiglu", "hidden": 11008}, "Feed Forward", "SwiGLU, hidden 11008"),
    ("moe", {"experts": 8, "top_k": 2}, "Mixture of Experts", "8 experts, top-2"),
    ("position", {"kind": "rotary"}, "Rotary Positions", None),
    ("dropout", {"p": 0.1}, "Dropout", "p=0.1"),
    ("lm_head", {}, "LM Head", None),
    ("not_a_kind", {}, "not_a_kind", None),  # a kind without a row still draws
])
def test_component_title_and_detail(kind, options, title, detail):
    c = {"kind": kind, "options": options}
    assert component_title(c) == title and component_detail(c) == detail


def test_cut_keeps_lines_short_and_single():
    assert cut("a\n b\tc") == "a b c"
    long = cut("x" * 100)
    assert len(long) == MAX_LINE and long.endswith("…")


def test_annotations_of_passes_once_each():
    g = apply_passes(build_text('''
    model m { d = 64
      stack s(ids) { embedding(100, d); attention(4, causal=true); mlp(256, act=swiglu) as mlp
                     lm_head(100) }
    }
    passes { fuse_qkv; quantize(int4_weight, on="mlp", group_size=64); prune(0.25, on="s.lm_head") }'''))
    assert annotations(g, [n for n in g.nodes if n.startswith("s.mlp.")]) == ["int4"]
    assert annotations(g, [n for n in g.nodes if n.startswith("s.attn.")]) == ["fused q+k+v"]
    assert annotations(g, ["s.lm_head"]) == ["pruned 25%"]


def test_totals_under_a_path():
    g = graph("gpt2")
    t = Totals(g)
    assert t.params("decoder") == g.graph["parameters"]
    assert t.params("decoder.h") == 12 * 7_087_872
    assert t.params("decoder.h.3") == 7_087_872
    assert t.params("decoder.h.3", inclusive=False) == 7_087_872
    assert t.params("decoder.wte") == 0  # a component, not a scope: not counted
    assert t.parts("decoder.h.0") == ["decoder.h.0.attn", "decoder.h.0.mlp"]
    assert t.parts("decoder.h.0.attn") == []
