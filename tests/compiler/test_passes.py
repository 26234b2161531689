"""IR passes: each result passes ir.lint, parameters change as they should, the
input graph is left untouched, and apply_passes runs a spec's list in order."""

from __future__ import annotations

from math import prod

import pytest
from pydantic import Field

from strata.components.component_base import Options
from strata.compiler import build_text
from strata.compiler.cost import weight_bytes
from strata.compiler.ir import IRError, lint, operands
from strata.compiler.ir_copy import copy_graph
from strata.passes import Pass, apply_passes, make_pass, register, unregister
from strata.errors import SpecError
from tests.render.specs import ROOT, graph

GQA = '''
model m { d = 64
  block layer {
    residual { rmsnorm; attention(8, kv_heads=2, causal=true, bias=false) }
    residual { rmsnorm; mlp(160, act=swiglu, bias=false) }
  }
  stack decoder(tokens) { embedding(100, d) as wte; repeat(2) layer as h; rmsnorm; lm_head(tie=wte) }
}
'''


@pytest.fixture(scope="module")
def g():
    return build_text(GQA)


def _linears(g):
    return {n: d for n, d in g.nodes(data=True) if d["op"] == "linear"}


def test_fuse_qkv(g):
    h = make_pass("fuse_qkv", {}).run(g)
    lint(h)
    assert h.graph["parameters"] == g.graph["parameters"]
    assert "decoder.h.0.attn.q" not in h and "decoder.h.0.attn.q" in g  # input untouched
    qkv = h.nodes["decoder.h.0.attn.qkv"]
    assert qkv["params"]["weight"] == (64 + 16 + 16, 64)
    split = h.nodes["decoder.h.0.attn.qkv_split"]
    assert split["op"] == "split" and split["attrs"]["sizes"] == [64, 16, 16]
    ins = operands(h, "decoder.h.0.attn.core")
    assert [u for u, _ in ins] == ["decoder.h.0.attn.qkv_split"] * 3
    assert [e["shape"][-1] for _, e in ins] == [64, 16, 16]
    assert [e["part"] for _, e in ins] == [0, 1, 2]


def test_fuse_qkv_cross_attention_fuses_kv():
    h = make_pass("fuse_qkv", {}).run(graph("transformer_base"))
    lint(h)
    assert "decoder.layers.0.cross_attn.kv" in h and "decoder.layers.0.cross_attn.q" in h
    assert "encoder.layers.0.attn.qkv" in h


def test_fuse_mlp(g):
    h = make_pass("fuse_mlp", {}).run(g)
    lint(h)
    assert h.graph["parameters"] == g.graph["parameters"]
    assert h.nodes["decoder.h.1.mlp.gate_up"]["params"]["weight"] == (320, 64)
    assert [u for u, _ in operands(h, "decoder.h.1.mlp.mul")] == ["decoder.h.1.mlp.act",
                                                                  "decoder.h.1.mlp.gate_up_split"]


def test_fuse_mlp_leaves_plain_mlps():
    h = make_pass("fuse_mlp", {}).run(graph("gpt2"))
    assert sorted(h.nodes) == sorted(graph("gpt2").nodes)


@pytest.mark.parametrize("scheme, label", [("int8_dynamic", "int8"), ("int4_weight", "int4"),
                                           ("fp8", "fp8")])
def test_quantize(g, scheme, label):
    groups = {"group_size": 32} if scheme == "int4_weight" else {}  # int8 / fp8 have no groups: refused
    h = make_pass("quantize", {"scheme": scheme, "on": "mlp", **groups}).run(g)
    lint(h)
    marked = {n for n, d in _linears(h).items() if d["attrs"].get("quant") == label}
    assert marked == {f"decoder.h.{i}.mlp.{r}" for i in range(2) for r in ("gate", "up", "down")}
    assert h.graph["parameters"] == g.graph["parameters"]
    assert weight_bytes(h) < weight_bytes(g) == g.graph["parameters"] * 4


def test_quantize_skips_tied_head(g):
    h = make_pass("quantize", {"scheme": "int8_weight"}).run(g)
    assert "quant" not in h.nodes["decoder.lm_head"]["attrs"]


def test_prune(g):
    h = make_pass("prune", {"amount": 0.5, "on": "attention"}).run(g)
    lint(h)
    a = h.nodes["decoder.h.0.attn.o"]["attrs"]
    assert a["density"] == 0.5 and a["prune_method"] == "magnitude"
    w = sum(prod(d["params"]["weight"]) for n, d in _linears(h).items() if ".attn." in n)
    assert h.graph["nonzero_parameters"] == g.graph["parameters"] - w // 2


def test_low_rank(g):
    r = 8
    h = make_pass("low_rank", {"rank": r, "on": "decoder.h.*.mlp.down"}).run(g)
    lint(h)
    out, d_in = 64, 160
    assert h.graph["parameters"] == g.graph["parameters"] + 2 * (r * (d_in + out) - d_in * out)
    assert h.nodes["decoder.h.0.mlp.down.a"]["params"]["weight"] == (r, d_in)
    assert h.nodes["decoder.h.0.mlp.down.b"]["params"]["weight"] == (out, r)
    assert "decoder.h.0.mlp.down" not in h
    assert [u for u, _ in operands(h, "decoder.h.0.add_2")][1] == "decoder.h.0.mlp.down.b"


def test_low_rank_output_node_and_bias():
    g0 = graph("llama2_7b")
    h = make_pass("low_rank", {"rank": 16, "on": "decoder.lm_head"}).run(g0)
    lint(h)
    assert h.graph["outputs"]["output"] == "decoder.lm_head.b"
    assert h.graph["parameters"] == g0.graph["parameters"] - 32000 * 4096 + 16 * (32000 + 4096)


def test_low_rank_too_large_rank_is_an_error(g):
    with pytest.raises(Exception, match="no selected linear layer"):
        make_pass("low_rank", {"rank": 64, "on": "decoder.h.*.attn.k"}).run(g)


def test_distill_records_teacher():
    h = make_pass("distill", {"teacher": "gpt2.arch", "temperature": 2.0, "alpha": 0.5,
                              "weights": None}).run(graph("tiny_shakespeare"))
    lint(h)
    assert h.graph["distill"]["teacher_name"] == "gpt2"
    assert h.graph["distill"]["teacher_parameters"] == 124_439_808


def test_apply_passes_in_order():
    text = GQA + '\npasses { fuse_qkv; fuse_mlp; quantize(int8_dynamic); low_rank(4, on="mlp") }'
    g = build_text(text)
    assert [p["name"] for p in g.graph["passes"]] == ["fuse_qkv", "fuse_mlp", "quantize", "low_rank"]
    h = apply_passes(g)
    lint(h)
    assert h.graph["passes"] == [] and len(h.graph["applied"]) == 4
    assert "decoder.h.0.mlp.gate_up.a" in h and "decoder.h.0.mlp.gate_up.b" in h
    assert h.nodes["decoder.h.0.attn.qkv"]["attrs"]["quant"] == "int8"
    assert apply_passes(h).graph["applied"] == h.graph["applied"]  # nothing left to apply


def test_pass_error_is_a_spec_error():
    g = build_text(GQA + '\npasses { low_rank(1000) }', "x.arch")
    with pytest.raises(SpecError, match="x.arch:.*low_rank"):
        apply_passes(g)


def test_seed_spec_passes():
    from strata.compiler import build_file

    g = build_file(ROOT / "specs" / "transformer_seed.arch")
    h = apply_passes(g)
    lint(h)
    assert h.graph["distill"]["teacher_parameters"] == 63_084_544
    assert g.graph["parameters"] < h.graph["distill"]["teacher_parameters"] / 4


class _BreakOptions(Options):
    """What a pass outside strata (a plugin) might get wrong."""

    how: str = Field("attr", description="attr: an undeclared attribute on decoder.h.0.attn.o; "
                                         "edge: decoder.h.0.attn.q loses its operand")


class _Break(Pass):
    """A pass with a bug: its output breaks an IR invariant."""

    name = "break_ir"
    options = _BreakOptions

    def run(self, graph, ctx=None):
        g = copy_graph(graph)
        if self.o.how == "attr":
            g.nodes["decoder.h.0.attn.o"].attrs["bogus"] = 1
        else:
            g.remove_edges_from(list(g.in_edges("decoder.h.0.attn.q")))
        return self.done(g, {})


@pytest.fixture
def broken():
    register(_Break)
    yield _Break
    unregister(_Break)


def test_the_passes_lint_once_where_nothing_is_wrong(g, monkeypatch):
    """A lint after every pass was a third of apply_passes' time (docs/benchmarks.md, Passes)."""
    import strata.compiler.ir as ir

    calls = []
    monkeypatch.setattr(ir, "lint", lambda h: calls.append(h) or lint(h))
    h = apply_passes(build_text(GQA + '\npasses { fuse_qkv; fuse_mlp; quantize(int8_dynamic) }'))
    assert calls == [h]


@pytest.mark.parametrize("how", ["attr", "edge"])
def test_a_pass_that_breaks_the_ir_is_named_though_later_ones_ran(broken, how):
    """attr: fuse_qkv copies the bad attribute along and the lint at the end finds
    it; edge: fuse_qkv fails on the node without an operand.  Either way the error
    names break_ir, the pass whose output first broke an invariant, and its line."""
    from strata.compiler.ir_types import IRTypeError

    g = build_text(GQA + f'\npasses {{ break_ir(how={how}); fuse_qkv }}', "x.arch")
    with pytest.raises((IRError, IRTypeError), match=r"^after pass break_ir(\(how=\"edge\"\))? \(x.arch:10\): "
                                                      r"node 'decoder.h.0.attn.(o|q)'"):
        apply_passes(g)


def test_a_pass_after_a_quantize_looks_its_claims_up_by_hash(monkeypatch):
    """Each linear an earlier quantize holds was looked up in the later pass's
    claims as a list: held x claimed string compares (quantize(on="attention")
    then quantize(on="mlp") on GPT-2 at 1,000 layers: 4,000 x 2,000, 0.3 s profiled)."""
    from strata.passes.quantize import Quantize

    looked = []

    class Counted(list):
        def __contains__(self, x):
            looked.append(x)
            return super().__contains__(x)

    real = Quantize.claims
    monkeypatch.setattr(Quantize, "claims", lambda self, record: Counted(real(self, record)))
    h = apply_passes(build_text(GQA + '\npasses { quantize(int8_dynamic, on="attention")\n'
                                      'quantize(int8_weight, on="mlp") }'))
    assert [a["name"] for a in h.graph.applied] == ["quantize", "quantize"]
    assert looked == []


@pytest.mark.parametrize("now", [b"\xff\xfe not utf-8", None])
def test_a_pass_error_reads_a_spec_changed_since_the_build_without_a_traceback(tmp_path, now):
    """The spec is read again to show the pass's line: a file that is no longer
    UTF-8 since the build gave a traceback (UnicodeDecodeError); a directory
    (an OSError) was already left out.  The error comes without the line."""
    from strata.compiler import build_file

    spec = tmp_path / "x.arch"
    spec.write_text(GQA + '\npasses { low_rank(1000) }')
    g = build_file(spec)
    spec.unlink()
    if now is None:
        spec.mkdir()
    else:
        spec.write_bytes(now)
    with pytest.raises(SpecError, match="low_rank") as e:
        apply_passes(g)
    assert e.value.sources == {}


def test_a_selector_may_name_what_a_pass_before_a_weight_choosing_one_makes():
    """The check finds s.attn.qkv by running the passes before quantize as a check:
    low_rank(energy=) chooses from the weights and ends that run quietly, and
    fuse_qkv's qkv is there (it used to raise inside, and the selector 'matched no module')."""
    text = ("model m { stack s(ids) { embedding(10, 32); attention(2); mlp(64); lm_head(10) } }\n"
            'passes { fuse_qkv; low_rank(energy=0.9, on="mlp"); quantize(int8_dynamic, on="s.attn.qkv") }')
    assert [e["name"] for e in build_text(text).graph["passes"]] == ["fuse_qkv", "low_rank", "quantize"]
