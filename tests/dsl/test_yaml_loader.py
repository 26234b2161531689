"""The YAML surface: every construct, positions, and located errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.dsl import ast as A
from strata.dsl import load_text
from strata.dsl.parser import parse
from strata.dsl.yaml_loader import parse_yaml
from strata.errors import SpecError

GPT = """\
imports:
  - blocks.arch
  - {from: common.arch, import: [layer, mlp_block]}
blocks:
  layer:
    comment: pre-norm
    params: {window: none, depth: null}
    body:
      - {let: {w: 256 if i % 2 == 0 else none}}
      - {residual: [layernorm, {attention: heads, causal: true, window: w}]}
      - {parallel: [{seq: [a, b]}, c]}
      - {branch: [pooler], as: pooled}
models:
  gpt2:
    extends: base
    vars: {vocab: 50257, d: 768, hidden: 4*d, p: {value: 0.1, comment: dropout}}
    stacks:
      decoder:
        inputs: [tgt, {memory: encoder}]
        body:
          - {embedding: [vocab, d], as: wte}
          - {dropout: p}
          - {repeat: depth, index: i, body: layer, as: h}
          - layernorm
          - attention(heads, causal=true) as attn
          - {lm_head: null, tie: wte, comment: "logits\\nover the vocab"}
passes:
  - fuse_qkv
  - {quantize: int8_dynamic, on: "decoder.h.*.mlp.*"}
train:
  batch: 12
  betas: [0.9, 0.99]
  optimizer: adamw(lr=1e-3, betas=(0.9, 0.99))
"""

SAME_AS_TEXT = """\
import "blocks.arch"
from "common.arch" import layer, mlp_block
# pre-norm
block layer(window = none, depth) {
  w = 256 if i % 2 == 0 else none
  residual { layernorm; attention(heads, causal=true, window=w) }
  parallel { seq { a; b }; c }
  branch { pooler } as pooled
}
model gpt2 extends base {
  vocab = 50257; d = 768; hidden = 4*d
  # dropout
  p = 0.1
  stack decoder(tgt, memory = encoder) {
    embedding(vocab, d) as wte
    dropout(p)
    repeat(depth, i) layer as h
    layernorm
    attention(heads, causal=true) as attn
    # logits
    # over the vocab
    lm_head(tie=wte)
  }
}
passes { fuse_qkv; quantize(int8_dynamic, on="decoder.h.*.mlp.*") }
train { batch = 12; betas = (0.9, 0.99); optimizer = adamw(lr=1e-3, betas=(0.9, 0.99)) }
"""


def load(text: str) -> A.SpecFile:
    return parse_yaml(text, "t.yaml")


def error(text: str) -> SpecError:
    with pytest.raises(SpecError) as e:
        load(text)
    return e.value


def stack_body(body_yaml: str) -> list:
    text = f"models:\n  m:\n    stacks:\n      s:\n        inputs: [tokens]\n        body:\n{body_yaml}"
    return load(text).models[0].stacks[0].body


def test_every_construct_equals_the_text_form():
    assert load(GPT) == parse(SAME_AS_TEXT)


def test_load_text_dispatches_on_suffix():
    assert load_text(GPT, "g.yml") == load(GPT)


def test_imports_both_forms_and_comment():
    spec = load("imports: [a.arch, {from: b.arch, import: x}, {import: c.arch, comment: why}]")
    assert [(i.path, i.names, i.comment) for i in spec.imports] == [
        ("a.arch", None, None), ("b.arch", ["x"], None), ("c.arch", None, "why")]


@pytest.mark.parametrize("yml, text", [
    ("- layernorm", "layernorm"),
    ("- {layernorm: null, as: ln_f}", "layernorm as ln_f"),
    ("- {dropout: 0.1}", "dropout(0.1)"),
    ("- {dropout: [none]}", "dropout(none)"),
    ("- {mlp: [4*d, {act: gelu}], bias: false}", "mlp(4*d, act=gelu, bias=false)"),
    ("- {layer: [{layer: 1}]}", "layer(layer=1)"),
    ("- {let: {x: -1}}", "x = -1"),
    ("- {let: 3}", "let(3)"),
    ("- {act: '\"gelu\"'}", 'act("gelu")'),
    ("- {x: yes}", "x(yes)"),  # YAML 1.1's yes/no/on/off are names, as in the text form
    ("- {x: 'yes'}", "x(yes)"),
    ("- {x: [on, off, no]}", "x(on, off, no)"),
    ("- {x: True, y: FALSE}", "x(true, y=false)"),
    ("- {x: [[1, 2]]}", "x((1, 2))"),
    ("- {x: 1e-3}", "x(1e-3)"),
    ("- {x: 1e3, y: 1_000, z: 0777}", "x(1e3, y=1_000, z=0777)"),  # the text form's numbers
    ("- {x: '0x10'}", 'x("0x10")'),  # quoted: a string
    ("- {repeat: 2, body: [a, b]}", "repeat(2) { a; b }"),
    ("- {repeat: 2, body: {layer: [1]}, as: h}", "repeat(2) layer(1) as h"),
    ("- {residual: layernorm}", "residual { layernorm }"),
    ("- {comment: c, seq: []}", "# c\nseq {}"),
    ("- 'residual { layernorm; mlp(4*d) }'", "residual { layernorm; mlp(4*d) }"),
])
def test_statement(yml, text):
    assert stack_body("          " + yml + "\n") == parse(
        f"model m {{ stack s(tokens) {{\n{text}\n}} }}").models[0].stacks[0].body


def test_string_values_that_are_not_expressions_are_strings():
    spec = load("passes: [{prune: 0.5, on: decoder.*.mlp, method: '\"structured\"'}]")
    kw = {k.name: k.value for k in spec.passes.items[0].kwargs}
    assert kw["on"] == A.Str(value="decoder.*.mlp") and kw["method"] == A.Str(value="structured")


def test_passes_and_train_long_forms():
    spec = load("passes: {comment: opt, items: [fuse_qkv]}\n"
                "train: {comment: run, items: {batch: 4, items: 2}}")
    assert spec.passes.comment == "opt" and spec.passes.items[0].name == "fuse_qkv"
    assert spec.train.comment == "run" and [a.name for a in spec.train.items] == ["batch", "items"]


def test_block_shorthand_and_model_blocks():
    spec = load("blocks: {tiny: [layernorm]}\nmodels: {m: {blocks: {b: {body: [x]}}}}")
    assert spec.blocks[0].body[0].name == "layernorm"
    assert spec.models[0].blocks[0].name == "b"


def test_positions_are_one_based_line_and_column():
    spec = load(GPT)
    model = spec.models[0]
    assert (model.span.file, model.span.line, model.span.col) == ("t.yaml", 14, 3)
    body = model.stacks[0].body
    assert (body[0].span.line, body[0].span.col) == (21, 13)
    # inside a scalar, expression nodes point at their own column
    hidden = model.vars[2].value
    assert (hidden.span.line, hidden.span.col) == (16, 42)
    assert (hidden.right.span.line, hidden.right.span.col) == (16, 44)
    # a text-form statement string: the keyword sits where it is written
    attn = body[4]
    assert (attn.kwargs[0].span.line, attn.kwargs[0].span.col) == (25, 30)
    assert spec.passes.items[1].kwargs[0].span.line == 29



def test_every_node_has_a_span_in_the_yaml_file():
    def walk(node):
        if isinstance(node, A.Node):
            yield node
            for name in type(node).model_fields:
                yield from walk(getattr(node, name))
        elif isinstance(node, list):
            for x in node:
                yield from walk(x)

    nodes = list(walk(load(GPT)))
    assert len(nodes) > 80
    assert all(n.span is not None and n.span.file == "t.yaml" and n.span.line >= 1
               and n.span.col >= 1 for n in nodes)

# ---------------------------------------------------------------- errors

def test_alias_and_anchor_rejected():
    e = error("models:\n  m:\n    vars: &v {d: 1}\n  n:\n    vars: *v\n")
    assert str(e).startswith("t.yaml:3:11: error: anchor '&v' is not allowed")
    e = error("a: *v\n")
    assert "alias '*v' is not allowed" in str(e)


def test_python_tag_rejected():
    e = error("models: !!python/object:os.system {}\n")
    assert str(e).startswith("t.yaml:1:9: error: tag 'tag:yaml.org,2002:python/object:os.system'")
    assert "not allowed" in str(e)


def test_duplicate_key():
    e = error("models:\n  m:\n    vars: {d: 1, d: 2}\n")
    assert str(e).startswith("t.yaml:3:18: error: key 'd' is given twice")


def test_unknown_keys_get_did_you_mean():
    e = error("modles: {}\n")
    assert str(e).startswith("t.yaml:1:1: error: unknown key 'modles'")
    assert "did you mean 'models'?" in str(e)
    body = "          - {repeat: 2, bdy: layer}\n"
    with pytest.raises(SpecError) as e:
        stack_body(body)
    assert "unknown key 'bdy' in repeat" in str(e.value) and "did you mean 'body'?" in str(e.value)
    with pytest.raises(SpecError) as e:
        stack_body("          - {residul: [layernorm, {attention: heads, causal: true}]}\n")
    assert "did you mean 'residual'?" in str(e.value)


def test_bad_indentation_is_located():
    e = error("models:\n  m:\n    vars:\n      d: 1\n     e: 2\n")
    assert str(e).startswith("t.yaml:5:6: error: invalid YAML")
    e = error("models:\n\tm: {}\n")
    assert str(e).startswith("t.yaml:2:1: error: invalid YAML") and "tabs" in str(e)


@pytest.mark.parametrize("text", ["", "# nothing\n", "- a\n- b\n", "just text\n"])
def test_document_must_be_a_mapping(text):
    assert str(error(text)).startswith("t.yaml:1:1: error:")


def test_several_independent_errors_are_collected():
    e = error("models:\n  m:\n    vars: {d: [], e: {x: 1}}\n    stacks: {s: {inputs: [], body: []}}\n")
    assert [d.span.line for d in e.diagnostics] == [3, 3, 3, 4]
    assert "'e' needs a 'value'" in str(e) and "needs at least one input" in str(e)


@pytest.mark.parametrize("text, message", [
    ("models: {m: {vars: {if: 1}}}", "'if' is a keyword"),
    ("models: {m: {vars: {2x: 1}}}", "'2x' is not a valid variable name"),
    ("models: {m: {vars: {d: .inf}}}", "not a finite number"),
    # YAML-only number spellings: the located error, not YAML 1.1's value or a string
    ("models: {m: {vars: {d: 0x10}}}", "'0x10' is not a number of the spec language"),
    ("models: {m: {vars: {d: 0o17}}}", "hint: write 15"),
    ("models: {m: {vars: {d: -0b11}}}", "hint: write -3"),
    ("models: {m: {vars: {d: 1:30}}}", "hint: write 90"),
    ("passes: [{prune: 0.5, method: 2:4}]", "hint: write 124: numbers are written as in the text form; "
                                            "a word is quoted: '2:4'"),
    ("models: {m: {vars: {d: 2d}}}", "'2d' is not a number"),
    ("models: {m: {vars: {d: " + "1" * 150 + "}}}", "150 digits is too long"),
    ("models: {m: {stacks: {s: {inputs: [t], body: ['layer norm']}}}}", "in statement 'layer norm'"),
    ("models: {m: {stacks: {s: {inputs: [t], body: ['a # b']}}}}", "'#' comment"),
    ("models: {m: {stacks: {s: {inputs: [t], body: [{x: {k: 1}}]}}}}", "must be a value or a list"),
    ("models: {m: {stacks: {s: {inputs: [t], body: [{as: h}]}}}}", "names no component"),
    ("passes: [{residual: []}]", "passes holds only pass uses"),
    ("imports: [{from: a.arch}]", "needs 'import: [names]'"),
])
def test_mistakes(text, message):
    e = error(text)
    assert message in str(e) and str(e).startswith("t.yaml:1:")


_YAMLISH = st.lists(st.sampled_from(list("abm: -[]{},'\"\n  #&*!|>?%@`~0123.e\t") + [
    "models", "stacks", "body", "inputs", "vars", "repeat", "residual", "let", "as", "comment",
    "passes", "train", "items", "!!python/name:os.system", "&a", "*a", "4*d", "null"]),
    max_size=30).map("".join)


@settings(max_examples=150, deadline=None)
@given(st.one_of(_YAMLISH, st.integers(0, len(GPT)).flatmap(
    lambda i: _YAMLISH.map(lambda junk: GPT[:i] + junk + GPT[i:]))))
def test_any_text_loads_or_fails_with_located_errors(text):
    try:
        spec = load(text)
    except SpecError as e:
        assert e.diagnostics and all(d.span and d.span.file == "t.yaml" for d in e.diagnostics)
        assert str(e).startswith("t.yaml:")
    else:
        assert isinstance(spec, A.SpecFile)


def test_a_yaml_spec_past_max_tokens_or_max_spec_bytes_is_refused_before_it_is_read():
    """A 400 KB expression in one scalar (15 s before), 40,000 keys, and an 8 MB
    comment (PyYAML scans 2 MB a second) are each one located error, quickly."""
    import time

    from strata.dsl import load_text_recovering
    from strata.dsl.clean import MAX_SPEC_BYTES, MAX_TOKENS

    head = "models:\n  m:\n    vars:\n"
    for text, message in (
            (head + "      d: " + "1+" * 200_000 + "1\n", f"the spec has more than {MAX_TOKENS:,} tokens"),
            (head + "".join(f"      v{i}: {i}\n" for i in range(40_000)),
             f"the spec has more than {MAX_TOKENS:,} tokens"),
            ("#" + "x" * 8_000_000 + "\n" + head, f"the spec is 8,000,025 bytes, more than {MAX_SPEC_BYTES:,}")):
        start = time.perf_counter()
        with pytest.raises(SpecError) as e:
            load_text(text, "big.yaml")
        assert [d.message for d in e.value.diagnostics] == [message]
        spec, diags = load_text_recovering(text, "big.yaml")
        assert spec is None and [d.message for d in diags] == [message]
        assert time.perf_counter() - start < 5  # ~0.5 s unloaded
