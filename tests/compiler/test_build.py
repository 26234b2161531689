"""The builder, construct by construct: names, wiring, shapes, scopes, repeats."""

from __future__ import annotations

from strata.compiler import build_text, select
from strata.compiler.ir import format_table, lint, operands, repeat_groups


def build(body: str, head: str = "d = 16\n  heads = 4") -> object:
    g = build_text(f"model m {{\n  {head}\n  stack s(tokens) {{\n    embedding(50, d) as emb\n{body}\n  }}\n}}\n")
    lint(g)
    return g


def srcs(g, node):
    return [u for u, _ in operands(g, node)]


def test_pre_norm_residual_wiring():
    g = build("residual { layernorm; attention(heads) }")
    assert srcs(g, "s.ln") == ["s.emb"]
    assert srcs(g, "s.add_1") == ["s.emb", "s.attn.o"]


def test_post_norm_is_norm_after_residual():
    g = build("residual { attention(heads) }\n layernorm")
    assert srcs(g, "s.ln") == ["s.add_1"]


def test_parallel_residual_sums_branches():
    g = build("residual { layernorm; parallel { attention(heads); mlp(4*d) } }")
    assert srcs(g, "s.attn.q") == ["s.ln"] and srcs(g, "s.mlp.up") == ["s.ln"]
    assert srcs(g, "s.add_1") == ["s.attn.o", "s.mlp.down"]
    assert srcs(g, "s.add_2") == ["s.emb", "s.add_1"]


def test_seq_groups_a_branch():
    g = build("parallel { seq { layernorm; attention(heads) }; seq { layernorm; mlp(2*d) } }")
    assert srcs(g, "s.ln_1") == ["s.emb"] and srcs(g, "s.ln_2") == ["s.emb"]
    assert srcs(g, "s.add_1") == ["s.attn.o", "s.mlp.down"]


def test_default_names_are_numbered_only_when_repeated():
    g = build("layernorm\n mlp(d)\n layernorm")
    assert {"s.ln_1", "s.ln_2", "s.mlp.up"} <= set(g.nodes)


def test_branch_adds_an_output_and_keeps_the_stream():
    g = build("branch { pooler; classifier(3) } as cls\n lm_head(tie=emb)")
    assert g.graph["outputs"] == {"output": "s.lm_head", "cls": "s.classifier"}
    assert srcs(g, "s.lm_head") == ["s.emb"]
    assert g.nodes["s.classifier"]["params"]["weight"] == (3, 16)


def test_repeat_index_makes_layers_differ():
    g = build("repeat(4, i) { attention(heads, causal=true, window=8 if i % 2 == 0 else none) } as h")
    wins = [g.nodes[f"s.h.{i}.attn.core"]["attrs"]["window"] for i in range(4)]
    assert wins == [8, None, 8, None]
    (grp,) = repeat_groups(g)
    assert not grp["uniform"] and grp["variants"] == [["s.h.0", "s.h.2"], ["s.h.1", "s.h.3"]]


def test_block_parameters_and_defaults():
    head = "d = 16\n  heads = 4\n  block layer(hidden = 2*d, act = gelu) { residual { mlp(hidden, act=act) } }"
    g = build("layer(act=relu) as a\n layer(64) as b", head)
    assert g.nodes["s.a.mlp.up"]["params"]["weight"] == (32, 16)
    assert g.nodes["s.a.mlp.act"]["attrs"]["fn"] == "relu"
    assert g.nodes["s.b.mlp.up"]["params"]["weight"] == (64, 16)
    assert g.graph["scopes"]["s.a"] == {"kind": "block", "block": "layer", "parent": "s"}


def test_uniform_repeat_of_a_block():
    head = "d = 16\n  heads = 4\n  block layer { residual { layernorm; attention(heads) } }"
    g = build("repeat(3) layer as h", head)
    (grp,) = repeat_groups(g)
    assert grp["uniform"] and grp["count"] == 3 and grp["instances"] == ["s.h.0", "s.h.1", "s.h.2"]


def test_gqa_shapes_and_rotary():
    g = build("position(rotary, base=500000, fraction=0.5)\n attention(8, kv_heads=2, head_dim=4, bias=false)")
    assert g.nodes["s.attn.k"]["params"] == {"weight": (8, 16)}
    assert g.nodes["s.attn.core"]["attrs"]["rope"] == {"base": 500000.0, "dims": 2}


def test_gated_mlp_and_moe():
    g = build("mlp(32, act=swiglu, bias=false)\n moe(8, experts=4, top_k=2, shared=1)")
    assert srcs(g, "s.mlp.mul") == ["s.mlp.act", "s.mlp.up"]
    p = g.nodes["s.moe"]["params"]
    assert p["router.weight"] == (4, 16) and p["shared.0.down.weight"] == (16, 8)
    assert len(p) == 1 + 5 * 3


def test_qk_norm_and_softcap():
    g = build("attention(heads, qk_norm=true, softcap=50.0)")
    assert srcs(g, "s.attn.core") == ["s.attn.q_norm", "s.attn.k_norm", "s.attn.v"]
    assert g.nodes["s.attn.q_norm"]["params"] == {"weight": (4,)}


def test_bert_heads():
    g = build("token_types(2)\n layernorm\n branch { pooler; nsp_head } as nsp\n mlm_head(tie=emb)")
    assert g.nodes["s.mlm_head.decoder"]["tied"] == {"weight": "s.emb.weight"}
    assert g.nodes["s.mlm_head.decoder"]["params"] == {"bias": (50,)}
    assert "s.token_type_ids" in g and g.nodes["s.token_type_ids"]["op"] == "input"


def test_extends_overrides_values():
    g = build_text("""
model base { d = 8
  stack s(t) { embedding(10, d) as e; lm_head(tie=e) } }
model big extends base { d = 32 }
""")
    assert g.graph["name"] == "big" and g.graph["parameters"] == 320


def test_choose_model_by_name():
    text = "model a { stack s(t) { embedding(10, 4) } }\nmodel b { stack s(t) { embedding(10, 8) } }"
    assert build_text(text).graph["name"] == "b"
    assert build_text(text, model="a").graph["parameters"] == 40


def test_imports_blocks_from_another_file(tmp_path):
    (tmp_path / "lib.arch").write_text("block layer { residual { layernorm; mlp(4*d) } }\n")
    (tmp_path / "m.arch").write_text('from "lib.arch" import layer\n'
                                     "model m { d = 8\n stack s(t) { embedding(10, d); repeat(2) layer as h } }\n")
    from strata.compiler import build_file

    g = build_file(tmp_path / "m.arch")
    assert "s.h.1.mlp.down" in g


def test_an_imported_model_brings_its_base_and_blocks(tmp_path):
    """`extends` is looked up in the file that writes it: importing gpt2_medium brings
    gpt2 and the file's blocks along, even when the importer has its own gpt2."""
    (tmp_path / "base.arch").write_text(
        "block layer { residual { layernorm; mlp(4*d) } }\n"
        "model gpt2 { vocab = 50\n d = 16\n depth = 2\n"
        " stack decoder(tokens) { embedding(vocab, d) as wte; repeat(depth) layer as h; lm_head(tie=wte) } }\n"
        "model gpt2_medium extends gpt2 { d = 32 }\n")
    (tmp_path / "m.arch").write_text('from "base.arch" import gpt2_medium\n'
                                     "model gpt2 { d = 1 }\n"
                                     "model mine extends gpt2_medium { depth = 1 }\n")
    from strata.compiler import build_file

    g = build_file(tmp_path / "m.arch")
    assert g.graph["name"] == "mine" and g.graph["vars"]["d"] == 32
    assert g.graph["parameters"] == 50 * 32 + 2 * 32 + 32 * 128 + 128 + 128 * 32 + 32
    assert build_file(tmp_path / "m.arch", model="gpt2_medium").graph["vars"]["depth"] == 2


def test_pass_selectors():
    g = build("repeat(2) { residual { layernorm; attention(heads) }; residual { mlp(2*d) } } as h")
    assert select(g, "attention") == ["s.h.0.attn", "s.h.1.attn"]
    assert select(g, "s.h.*.mlp") == ["s.h.0.mlp", "s.h.1.mlp"]
    assert select(g, "s.h.1.*") and not select(g, "nothing.*")


def test_ir_table_lists_nodes_in_spec_order():
    g = build("layernorm\n lm_head(tie=emb)")
    lines = format_table(g).splitlines()
    assert lines[2].startswith("s.tokens") and lines[3].startswith("s.emb")
    assert "s.lm_head" in lines[5] and "weight->s.emb.weight" in lines[5]


def test_the_word_none_where_an_option_lists_it():
    """`position(none)` and `pooler(act=none)`: the constant none is also the word."""
    g = build_text("model m { stack s(t) { embedding(10, 8); position(none); pooler(act=none) } }")
    assert g.graph["components"]["s.pos"]["options"]["kind"] == "none"
    assert g.graph["components"]["s.pooler"]["options"]["act"] == "none"
    g = build_text("model m { stack s(t) { embedding(10, 8); attention(2, window=none) } }")
    assert g.nodes["s.attn.core"]["attrs"]["window"] is None
