"""The canonical .arch text: layout, minimal parentheses, comments, and `strata fmt`."""

from __future__ import annotations

import pytest

from strata.cli import main
from strata.dsl import ast as A
from strata.dsl.formatter import format_expr, format_spec
from strata.dsl.parser import parse
from strata.dsl.yaml_nodes import parse_expression

MESSY = """\
passes{fuse_qkv;quantize(int8_dynamic,on="decoder.h.*.mlp.*")}
train{batch=12 optimizer=adamw(lr=1e-3,betas=(0.9,0.99))}
# GPT-2 small
model gpt2{vocab=50257 ctx=1024 d=768
  block layer{residual{layernorm();attention(12,causal=true)}
    residual{layernorm;mlp(4*d,act=gelu_tanh,bias=false,dropout=0.1,hidden_dropout_prob_for_a_long_line=true)}}
  stack decoder(tokens){embedding(vocab,d)as wte
    repeat(12)layer as h
    repeat(2,i){layer(window=128 if i%2==0 else none)}
    # the head
    lm_head(tie=wte)}}
import "blocks.arch"
"""

CANONICAL = """\
import "blocks.arch"

# GPT-2 small
model gpt2 {
  vocab = 50257
  ctx   = 1024
  d     = 768

  block layer {
    residual { layernorm; attention(12, causal=true) }
    residual {
      layernorm
      mlp(4 * d, act=gelu_tanh, bias=false, dropout=0.1, hidden_dropout_prob_for_a_long_line=true)
    }
  }

  stack decoder(tokens) {
    embedding(vocab, d) as wte
    repeat(12) layer as h
    repeat(2, i) layer(window=128 if i % 2 == 0 else none)
    # the head
    lm_head(tie=wte)
  }
}

passes {
  fuse_qkv
  quantize(int8_dynamic, on="decoder.h.*.mlp.*")
}

train {
  batch     = 12
  optimizer = adamw(lr=1e-3, betas=(0.9, 0.99))
}
"""


def test_golden_layout():
    assert format_spec(parse(MESSY)) == CANONICAL
    assert format_spec(parse(CANONICAL)) == CANONICAL


def test_small_forms():
    src = ("block b(w=none, k) { residual { layernorm } branch { pooler } as p seq {} "
           "repeat(n) { x = 1 } repeat(n) { layer as l } as h parallel { a; seq { b; c } } "
           "residual { # why\n layernorm } }\n"
           "model m { stack s(t, memory=enc) {} }\n"
           "from \"x.arch\" import a, b\n")
    assert format_spec(parse(src)) == (
        'from "x.arch" import a, b\n\n'
        "block b(w = none, k) {\n"
        "  residual { layernorm }\n"
        "  branch { pooler } as p\n"
        "  seq {}\n"
        "  repeat(n) { x = 1 }\n"
        "  repeat(n) { layer as l } as h\n"
        "  parallel {\n"
        "    a\n"
        "    seq { b; c }\n"
        "  }\n"
        "  residual {\n"
        "    # why\n"
        "    layernorm\n"
        "  }\n"
        "}\n\n"
        "model m {\n"
        "  stack s(t, memory = enc) {}\n"
        "}\n")
    assert format_spec(A.SpecFile()) == ""


@pytest.mark.parametrize("src, expected", [
    ("(a + b) * c", "(a + b) * c"),
    ("a + (b * c)", "a + b * c"),
    ("-2 ** 2", "-2 ** 2"),
    ("(-2) ** 2", "(-2) ** 2"),
    ("2 ** -1", "2 ** -1"),
    ("a - (b - c)", "a - (b - c)"),
    ("(a - b) - c", "a - b - c"),
    ("2 ** 3 ** 2", "2 ** 3 ** 2"),
    ("(2 ** 3) ** 2", "(2 ** 3) ** 2"),
    ("a // (b * c) % d", "a // (b * c) % d"),
    ("(a < b) == c", "(a < b) == c"),
    ("not (a and b) or c", "not (a and b) or c"),
    ("not a == b", "not a == b"),
    ("-(a + b)", "-(a + b)"),
    ("- -a", "--a"),
    ("a if b else c if d else e", "a if b else c if d else e"),
    ("(a if b else c) if d else e", "(a if b else c) if d else e"),
    ("a if (b if c else d) else e", "a if (b if c else d) else e"),
    ("(a if b else c) + 1", "(a if b else c) + 1"),
    ("f(a if b else c, k=(1,))", "f(a if b else c, k=(1,))"),
    ("(x,)", "(x,)"),
    ("(1, (2, 3), 'q')", '(1, (2, 3), "q")'),
    ("1e-3 + 1_000 + .5", "1e-3 + 1_000 + .5"),
    ("'say \"hi\"\\n'", '"say \\"hi\\"\\n"'),
    ("encoder.embed", "encoder.embed"),
])
def test_minimal_parentheses(src, expected):
    e = parse_expression(src)
    assert format_expr(e) == expected
    assert parse_expression(expected) == e


def test_numbers_without_spelling_reparse_to_the_same_value():
    for v in (1e-05, 0.1, 1e16, 3.0, 123456789012345678901234567890, 5e-324):
        text = format_expr(A.Num(value=v))
        assert parse_expression(text).value == v


def test_comments_are_kept_above_their_statement():
    spec = parse("model m {\n  # one\n  #\n  #  two\n  d = 1\n}\n")
    assert spec.models[0].vars[0].comment == "one\n\n two"
    text = format_spec(spec)
    assert text == "model m {\n  # one\n  #\n  #  two\n  d = 1\n}\n"
    assert parse(text) == spec


# ------------------------------------------------------------------ strata fmt

def test_fmt_check_and_rewrite(tmp_path, capsys):
    f = tmp_path / "m.arch"
    f.write_text(MESSY)
    assert main(["fmt", "--check", str(f)]) == 1
    assert f"would reformat {f}" in capsys.readouterr().out
    assert f.read_text() == MESSY
    assert main(["fmt", str(f)]) == 0
    assert f.read_text() == CANONICAL
    assert main(["fmt", "--check", str(f)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["m.arch"]  # no temp files left


def test_fmt_yaml(tmp_path, capsys):
    f = tmp_path / "m.yaml"
    f.write_text("models:\n  m: {vars: {d:   768}}\n")
    assert main(["fmt", "--check", str(f)]) == 1
    assert main(["fmt", str(f)]) == 0
    assert f.read_text() == "models:\n  m:\n    vars: {d: 768}\n"
    assert main(["fmt", "--check", str(f)]) == 0
    # YAML comments would be dropped: refuse
    f.write_text("models:\n  m: {vars: {d:   768}}  # keep me\n")
    assert main(["fmt", str(f)]) == 1
    assert "fmt would drop this comment" in capsys.readouterr().err


def test_fmt_refuses_to_drop_a_comment_after_the_last_statement(tmp_path, capsys):
    f = tmp_path / "m.arch"
    f.write_text("model m { d=1 }\n# the end\n")
    assert main(["fmt", str(f)]) == 1
    assert f.read_text() == "model m { d=1 }\n# the end\n"
    assert capsys.readouterr().err.startswith(f"{f}:2:1: error: fmt would drop this comment")
    f.write_text("model m { d=1 # a trailing comment moves above its statement\n e=2 }\n")
    assert main(["fmt", str(f)]) == 0
    assert f.read_text() == "model m {\n  # a trailing comment moves above its statement\n  d = 1\n  e = 2\n}\n"
    f.write_text("model m {\n  d = 1  # on the last statement's line\n}\n")
    assert main(["fmt", str(f)]) == 0
    assert f.read_text() == "model m {\n  # on the last statement's line\n  d = 1\n}\n"


def test_fmt_never_rewrites_a_file_with_errors(tmp_path, capsys):
    f = tmp_path / "bad.arch"
    f.write_text("model m { d = }\n")
    assert main(["fmt", str(f)]) == 1
    assert f.read_text() == "model m { d = }\n"
    assert capsys.readouterr().err.startswith(f"{f}:1:15: error:")
