"""The text surface, construct by construct, with positions."""

from __future__ import annotations

import pytest

from strata.dsl import ast as A
from strata.dsl.parser import parse
from strata.errors import SpecError


def model(body: str) -> A.ModelDef:
    return parse(f"model m {{\n{body}\n}}\n", "m.arch").models[0]


def expr(text: str):
    return model(f"x = {text}").vars[0].value


def test_variables_and_arithmetic_precedence():
    e = expr("1 + 2 * 3 ** 2 // 4 % 5 - 6 / 7")
    assert isinstance(e, A.BinOp) and e.op == "-"
    assert expr("-2 ** 2") == A.UnaryOp(op="-", operand=A.BinOp(op="**", left=A.Num(value=2), right=A.Num(value=2)))
    assert expr("2 ** 3 ** 2") == A.BinOp(op="**", left=A.Num(value=2),
                                          right=A.BinOp(op="**", left=A.Num(value=3), right=A.Num(value=2)))
    assert expr("(1 + 2) * 3").op == "*"


def test_numbers_strings_constants_tuples():
    assert expr("50_257") == A.Num(value=50257)
    assert expr("1e-3") == A.Num(value=0.001) and expr("1e-3").text == "1e-3"
    assert expr('"a\\"b"') == A.Str(value='a"b') and expr("'x'") == A.Str(value="x")
    assert [expr(c).value for c in ("true", "false", "none")] == [True, False, None]
    assert expr("(0.9, 0.99)") == A.Tuple(items=[A.Num(value=0.9), A.Num(value=0.99)])
    assert expr("(1,)") == A.Tuple(items=[A.Num(value=1)])


def test_calls_conditions_comparisons_dotted_names():
    assert expr("min(a, 4)") == A.Call(func="min", args=[A.Name(id="a"), A.Num(value=4)])
    assert expr("adamw(lr=1)").kwargs[0].name == "lr"
    c = expr("4096 if i % 2 == 0 and not last else none")
    assert isinstance(c, A.Cond) and c.test.op == "and"
    assert expr("encoder.embed") == A.Name(id="encoder.embed")


def test_block_stack_statements():
    m = model("""
  block layer(window = none, k) {
    residual { layernorm; attention(heads, causal=true) as attn }
    parallel { mlp(4*d); seq { rmsnorm; linear(d) } }
    branch { pooler } as pooled
    x = 3
  }
  stack decoder(tgt, memory = encoder) {
    embedding(vocab, d) as wte
    repeat(depth) layer as h
    repeat(2, i) { layernorm; dropout(0.1) } as extra
  }""")
    b = m.blocks[0]
    assert [p.name for p in b.params] == ["window", "k"] and b.params[1].default is None
    kinds = [s.kind for s in b.body]
    assert kinds == ["residual", "parallel", "branch", "assign"]
    assert b.body[0].body[1].alias == "attn"
    assert b.body[1].body[1].kind == "seq"
    st = m.stacks[0]
    assert [(i.name, i.source) for i in st.inputs] == [("tgt", None), ("memory", "encoder")]
    r = st.body[1]
    assert (r.kind, r.alias, r.body[0].name, r.index) == ("repeat", "h", "layer", None)
    assert st.body[2].index == "i" and len(st.body[2].body) == 2


def test_top_level_sections():
    spec = parse('import "a.arch"\nfrom "b.arch" import x, y\nblock z { layernorm }\n'
                 "model m extends n { d = 1 }\npasses { fuse_qkv; quantize(int8_dynamic, on=\"*.mlp\") }\n"
                 "train { batch = 4 }\n", "t.arch")
    assert [(i.path, i.names) for i in spec.imports] == [("a.arch", None), ("b.arch", ["x", "y"])]
    assert spec.models[0].extends == "n" and spec.blocks[0].name == "z"
    assert [u.name for u in spec.passes.items] == ["fuse_qkv", "quantize"]
    assert spec.train.items[0].name == "batch"


def test_semicolons_and_newlines_are_interchangeable():
    a = model("d = 1; e = 2;")
    b = model("d = 1\ne = 2")
    assert a == b


def test_positions_are_one_based():
    m = parse("model m {\n  d = 768\n  stack s(t) {\n    embedding(10, d) as wte\n  }\n}\n", "p.arch").models[0]
    assert (m.span.line, m.span.col) == (1, 1)
    assert (m.vars[0].span.line, m.vars[0].span.col) == (2, 3)
    use = m.stacks[0].body[0]
    assert (use.span.line, use.span.col, use.args[1].span.col) == (4, 5, 19)


def test_comments_attach_to_the_next_statement():
    m = parse("# the model\nmodel m {\n  # width\n  # of the stream\n  d = 768  # trailing\n  e = 1\n}\n").models[0]
    assert m.comment == "the model"
    assert m.vars[0].comment == "width\nof the stream\ntrailing"
    assert m.vars[1].comment is None


def test_equality_ignores_positions():
    assert parse("model m { d = 1 }", "a") == parse("\n\nmodel   m {\n d=1\n}", "b")


@pytest.mark.parametrize("text,where", [
    ("model m { d = }", (1, 15)),
    ("model m { stack s(t) { mlp(1,, 2) } }", (1, 30)),
    ("model m { stack s(t) { mlp(a=1, 2) } }", (1, 33)),
    ("model m { stack s(t) { mlp(a=1, a=2) } }", (1, 33)),
    ("passes { a } passes { b }", (1, 14)),
])
def test_syntax_errors_are_located(text, where):
    with pytest.raises(SpecError) as e:
        parse(text, "s.arch")
    d = e.value.diagnostics[0]
    assert (d.span.line, d.span.col) == where, str(e.value)
    assert str(e.value).startswith(f"s.arch:{where[0]}:{where[1]}: error: ")


@pytest.mark.parametrize("text,where,word", [
    ("model m { stack s(t) { embedding(10, 8) as block } }", (1, 44), "block"),
    ("model m { stack s(t) { repeat(2, model) { layernorm } } }", (1, 34), "model"),
    ("model m { none = 3 }", (1, 11), "none"),
    ("model m { stack s(t, from = e) { layernorm } }", (1, 22), "from"),
    ("block train(d) { layernorm }", (1, 7), "train"),
])
def test_keywords_are_never_names(text, where, word):
    """The text form refuses a keyword where it defines a name, as the YAML form does
    (so `strata convert` never writes YAML that does not load)."""
    with pytest.raises(SpecError) as e:
        parse(text, "k.arch")
    d = e.value.diagnostics[0]
    assert (d.span.line, d.span.col) == where
    assert d.message.startswith(f"'{word}' is a keyword and cannot be a")
    assert d.hint == f"choose another name, e.g. {word}_"


def test_a_name_like_a_keyword_converts_both_ways():
    from strata.dsl.yaml_loader import parse_yaml
    from strata.dsl.yaml_writer import to_yaml

    ok = parse("model m { stack s(t) { layernorm as block_; repeat(2, model_) { layernorm } as as_ } }")
    assert parse_yaml(to_yaml(ok), "k.yaml") == ok
