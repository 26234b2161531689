"""The renderer-independent layout (strata/backends/diagram/layout.py): levels,
folding, labels, annotations, the encoder-decoder and seed pictures, and
linear work in the number of layers."""

from __future__ import annotations

import pytest

from strata.backends.diagram.layout import Box, Cluster, Layout, describe
from strata.compiler import build_text
from strata.passes import apply_passes
from tests.render.specs import LEVELS, graph, variants_graph


def _labels(d):
    return ["\n".join(b.lines) for b in d.boxes]


def _box(d, key):
    return next(b for b in d.boxes if b.key == key)


def test_model_level_folds_the_repeat_with_parameters():
    d = describe(graph("gpt2"), "model")
    h = _box(d, "decoder.h")
    assert h.lines[0] == "layer × 12"
    assert "7.1M per layer · 85.1M total" in h.lines
    assert d.title == "gpt2 · 124.4M parameters"
    assert [e.role for e in d.arrows].count("tied") == 1


def test_encoder_decoder_shows_both_stacks_and_the_memory_edge():
    d = describe(graph("transformer_base"), "model")
    assert [c.key for c in d.clusters] == ["encoder", "decoder"]
    mem = [e for e in d.arrows if e.role == "memory"]
    assert len(mem) == 1
    ids = {n.id: n.key for n in d.boxes}
    assert ids[mem[0].src] == "encoder.norm" and ids[mem[0].dst] == "decoder.layers"
    assert mem[0].label == "memory [B, S, 512]"


def test_block_level_components_residuals_and_folding():
    d = describe(graph("transformer_base"), "block")
    text = "\n".join(_labels(d))
    for title in ("Self-Attention", "Masked Self-Attention", "Encoder-Decoder Attention",
                  "Feed Forward", "LayerNorm", "⊕"):
        assert title in text
    assert not any(".layers.1." in n.key for n in d.boxes)  # one instance drawn
    rep = next(c for c in d.clusters if c.key == "decoder.layers")
    assert rep.lines[0] == "layers: decoder_layer × 6"
    residual = [e for e in d.arrows if e.role == "residual"]
    assert len(residual) == 2 + 3  # encoder layer: 2 skips, decoder layer: 3
    # the cross-attention reads the encoder once, from the drawn instance
    assert sum(e.role == "memory" for e in d.arrows) == 1


def test_op_level_every_op_and_unfold():
    g = graph("llama2_7b")
    folded = describe(g, "op")
    keys = {n.key for n in folded.boxes}
    assert {"decoder.layers.0.attn.q", "decoder.layers.0.attn.core", "decoder.layers.0.mlp.mul"} <= keys
    assert not any(k.startswith("decoder.layers.1.") for k in keys)
    unfolded = describe(g, "op", unfold=True)
    assert sum(k.key.startswith("decoder.layers.31.") for k in unfolded.boxes) > 5
    assert any(c.key == "decoder.layers.31" for c in unfolded.clusters)
    assert "rotary positions" in folded.clusters[0].lines[1]
    assert "32 heads" in "\n".join(_labels(describe(g, "block")))


def test_gqa_detail():
    text = "\n".join(_labels(describe(graph("llama2_70b"), "block")))
    assert "64 heads, 8 kv (GQA)" in text and "SwiGLU, hidden 28672" in text


def test_deterministic_ids():
    a, b = describe(graph("bert_base"), "op"), describe(graph("bert_base"), "op")
    assert [(n.id, n.key) for n in a.boxes] == [(n.id, n.key) for n in b.boxes]
    assert [n.id for n in a.boxes] == [f"n{i}" for i in range(len(a.boxes))]


def test_bert_branch_output():
    d = describe(graph("bert_base"), "model")
    assert "Output: pooled" in _labels(d)


def test_seed_picture():
    g = apply_passes(graph("transformer_seed"))
    d = describe(g, "model")
    text = "\n".join(_labels(d))
    assert "Self-Attention → Feed Forward" in text
    assert "Masked Self-Attention →\nEncoder-Decoder Attention → Feed Forward" in text
    assert "Teacher: transformer_base\n63.1M parameters" in text
    assert "int8" in text
    assert d.title == "transformer_seed · 15.0M parameters · student of transformer_base (4.2× smaller)"
    assert _labels(d).count("Input sequence\nsrc") == 1 and "Output sequence" in _labels(d)
    assert any(e.role == "distill" for e in d.arrows)


def test_pass_annotations():
    g = build_text('''
    model m { d = 64
      stack s(ids) { embedding(100, d); attention(4, causal=true); mlp(256, act=swiglu) as mlp
                     lm_head(100) }
    }
    passes { fuse_qkv; fuse_mlp; quantize(int4_weight, on="mlp", group_size=64); prune(0.25, on="attention")
             low_rank(8, on="s.lm_head") }''')
    text = "\n".join(_labels(describe(apply_passes(g), "block")))
    assert "fused q+k+v" in text and "fused gate+up" in text and "int4" in text
    assert "pruned 25%" in text and "low-rank r=8" in text


def test_bad_level():
    with pytest.raises(ValueError, match="level must be one of"):
        describe(graph("gpt2"), "layer")


def _connected(d) -> bool:
    """Every box lies on a path from an input to an output (data edges only)."""
    import networkx as nx

    h = nx.DiGraph()
    h.add_nodes_from(n.id for n in d.boxes if n.kind != "teacher")
    h.add_edges_from((e.src, e.dst) for e in d.arrows if e.role in ("data", "residual", "memory"))
    ins = [n.id for n in d.boxes if n.lines[0] == "Input sequence"]
    outs = [n.id for n in d.boxes if n.key.startswith("<output:")]
    reach = set(ins).union(*(nx.descendants(h, i) for i in ins))
    back = set(outs).union(*(nx.ancestors(h, o) for o in outs))
    return nx.is_directed_acyclic_graph(h) and reach == back == set(h.nodes)


@pytest.mark.parametrize("unfold", [False, True])
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", ["gpt2", "transformer_base", "bert_base", "variants"])
def test_every_box_is_on_the_data_path(name, level, unfold):
    g = variants_graph() if name == "variants" else graph(name)
    assert _connected(describe(g, level, unfold=unfold))


def test_variants_are_drawn_once_each():
    d = describe(variants_graph(), "block")
    labels = [c.lines for c in d.clusters]
    assert ["h.0 × 2", "instances 0, 2"] in labels and ["h.1 × 2", "instances 1, 3"] in labels
    text = "\n".join(_labels(d))
    assert "window 8" in text and "window 1000" in text
    assert ["tail: tail × 2", "1.1K per layer · 2.2K total"] in labels


def test_unfold_draws_every_instance():
    d = describe(graph("gpt2"), "model", unfold=True)
    assert [n.lines[0] for n in d.boxes if n.kind == "block"] == [f"h.{i}: layer" for i in range(12)]


def test_tree_nests_clusters_and_boxes_in_order():
    d = Layout("t", "op", boxes=[Box("n0", "a", ["a"], "io"), Box("n1", "b", ["b"], "io", cluster="c1"),
                                 Box("n2", "c", ["c"], "io", cluster="c0")],
               clusters=[Cluster("c0", "s", ["s"]), Cluster("c1", "s.h", ["h"], parent="c0")])
    tree = d.tree()
    assert [c.id for c in tree[None][0]] == ["c0"] and [b.id for b in tree[None][1]] == ["n0"]
    assert [c.id for c in tree["c0"][0]] == ["c1"] and [b.id for b in tree["c0"][1]] == ["n2"]
    assert tree["c1"] == ([], [d.boxes[1]])


DEEP = '''
model deep {{
  block layer {{ residual {{ layernorm; attention(2, causal=true) }} residual {{ layernorm; mlp(16) }} }}
  stack decoder(tokens) {{ embedding(16, 8) as wte; repeat({n}) layer as h; lm_head(tie=wte) }}
}}
'''


@pytest.mark.parametrize("level", LEVELS)
def test_deep_model_unfolded_draws_every_layer_once(level):
    # the work is linear in the layers (benchmarks/diagram.py --layers 2000 times it)
    g = build_text(DEEP.format(n=300))
    d = describe(g, level, unfold=True)
    layer_boxes = {b.key.split(".")[2] for b in d.boxes if b.key.startswith("decoder.h.")}
    assert layer_boxes == {str(i) for i in range(300)}
    assert len({b.id for b in d.boxes}) == len(d.boxes)
    folded = describe(g, level)
    assert not any(b.key.startswith("decoder.h.1") for b in folded.boxes)
    assert _connected(d) and _connected(folded)
