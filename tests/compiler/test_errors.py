"""One test per kind of spec mistake: located message, caret, hint — in both surfaces."""

from __future__ import annotations

import re

import pytest

from strata.compiler import build_file, build_text
from strata.errors import SpecError

GOOD_LAYER = """
model m {
  d = 64
  heads = 4
  block layer {
    residual { layernorm; attention(heads, causal=true) }
    residual { layernorm; mlp(4*d) }
  }
  stack decoder(tokens) {
    embedding(100, d) as wte
    position(learned, 32)
    repeat(2) layer as h
    layernorm
    lm_head(tie=wte)
  }
}
"""


def errors_of(text: str, file: str = "spec.arch") -> SpecError:
    with pytest.raises(SpecError) as info:
        build_text(text, file)
    return info.value


def located(err: SpecError, message: str, line: int, col: int | None = None, hint: str | None = None):
    """Assert one diagnostic has `message` at `line`(:`col`), and its rendering
    is `FILE:LINE:COL: error: ...` followed by the source line and a caret."""
    for d in err.diagnostics:
        if message in d.message and d.span and d.span.line == line and (col is None or d.span.col == col):
            if hint is not None:
                assert d.hint and hint in d.hint, d.hint
            text = str(err)
            head = f"{d.span.file}:{d.span.line}:{d.span.col}: error: {d.message}"
            assert head in text
            after = text[text.index(head) + len(head):].splitlines()
            assert after[1].strip().startswith(f"{line} |")
            assert after[2].strip().startswith("|") and "^" in after[2]
            return d
    raise AssertionError(f"no '{message}' at line {line}:{col} in:\n{err}")


def test_good_spec_builds():
    assert build_text(GOOD_LAYER).graph["parameters"] > 0


def test_syntax_error_points_at_token():
    err = errors_of("model m {\n  d = 3 * }\n")
    located(err, "unexpected '}'", 2, 11)


def test_unfinished_line_is_reported_on_its_own_line():
    err = errors_of("model m {\n  d = 3 +\n}\n")
    located(err, "the line ends after '+'", 2, 10)


def test_syntax_error_unclosed_brace():
    err = errors_of("model m {\n  d = 3\n")
    d = located(err, "unexpected end of file", 2)
    assert "not closed" in d.hint


def test_syntax_error_bad_character():
    err = errors_of("model m {\n  d = 3 $ 4\n}\n")
    located(err, "unexpected character '$'", 2, 9)


def test_unknown_component_did_you_mean():
    err = errors_of(GOOD_LAYER.replace("attention(heads", "atention(heads"))
    located(err, "unknown component 'atention'", 6, 27, hint="did you mean 'attention'?")


def test_pass_used_as_component_hint():
    err = errors_of(GOOD_LAYER.replace("    layernorm\n    lm_head", "    fuse_qkv\n    lm_head"))
    located(err, "unknown component 'fuse_qkv'", 13, hint="passes")


def test_unknown_option_did_you_mean():
    err = errors_of(GOOD_LAYER.replace("causal=true", "casual=true"))
    located(err, "'attention' has no option 'casual'", 6, hint="did you mean 'causal'?")


def test_wrong_type():
    err = errors_of(GOOD_LAYER.replace("causal=true", "causal=3.5"))
    located(err, "option 'causal' of 'attention'", 6)


@pytest.mark.parametrize("value,said", [('"2"', 'the string "2"'), ("true", "true"), ("false", "false")])
def test_a_string_or_boolean_is_no_number(value, said):
    """pydantic's lax mode once took attention("2") as 2 heads and attention(true)
    as 1 (an integral float, d / 2 = 2.0, still passes as the integer it is)."""
    err = errors_of(GOOD_LAYER.replace("attention(heads,", f"attention({value},"))
    located(err, f"option 'heads' of 'attention' should be a number, got {said}", 6, 37)
    assert build_text(GOOD_LAYER.replace("attention(heads,", "attention(d / 16,")).graph["parameters"] > 0
    for section, wrong, message in (
            ('train { batch = "8" }', 9, 'train setting \'batch\' should be a number, got the string "8"'),
            ("train { steps = true }", 9, "train setting 'steps' should be a number, got true"),
            ('train { optimizer = adamw(lr="1e-3") }', 21, 'adamw: lr should be a number, got the string "1e-3"'),
            ('passes { low_rank("2") }', 19, "option 'rank' of 'low_rank' should be a number")):
        located(errors_of(GOOD_LAYER + section + "\n"), message, 17, wrong)


def test_bad_enum_word():
    err = errors_of(GOOD_LAYER.replace("mlp(4*d)", "mlp(4*d, act=gelux)"))
    located(err, "'gelux' is not a valid act", 7, hint="did you mean 'gelu'?")


def test_undefined_variable():
    err = errors_of(GOOD_LAYER.replace("mlp(4*d)", "mlp(4*dd)"))
    located(err, "undefined variable 'dd'", 7, 33, hint="did you mean 'd'?")


def test_an_unquoted_path_says_to_quote_it():
    """`data/x.txt` reads as `data` divided by `x.txt`: 'undefined variable' alone
    left a YAML user (`data: data/x.txt`, as YAML writes strings) with no way on."""
    err = errors_of(GOOD_LAYER + "train { data = data/x.txt }\n")
    located(err, "undefined variable 'data'", 17, 16, hint='a path is a string: write "data/x.txt"')
    yml = ("models:\n  m:\n    vars: {d: 8}\n    stacks:\n      decoder:\n        inputs: [tokens]\n"
           "        body: [{embedding: [10, d], as: wte}, {lm_head: null, tie: wte}]\n"
           "passes:\n  - {distill: t/x.arch, weights: runs/t}\ntrain:\n  data: data/x.txt\n")
    err = errors_of(yml, "spec.yaml")
    located(err, "undefined variable 't'", 9, 15, hint="""write '"t/x.arch"'""")
    located(err, "undefined variable 'data'", 11, 9, hint="""write '"data/x.txt"'""")
    err = errors_of(GOOD_LAYER.replace("mlp(4*d)", "mlp(4*dd/2)"))  # not a path: no such hint
    assert "path" not in (err.diagnostics[0].hint or "")


def test_division_by_zero():
    err = errors_of(GOOD_LAYER.replace("heads = 4", "heads = 4 // (d - 64)"))
    located(err, "division by zero", 4)


def test_heads_do_not_divide_d():
    err = errors_of(GOOD_LAYER.replace("heads = 4", "heads = 5"))
    located(err, "heads (5) does not divide d (64)", 6)


def test_kv_heads_do_not_divide_heads():
    err = errors_of(GOOD_LAYER.replace("causal=true", "causal=true, kv_heads=3"))
    located(err, "kv_heads (3) must divide heads (4)", 6)


def test_missing_required_option():
    err = errors_of(GOOD_LAYER.replace("mlp(4*d)", "mlp(act=gelu)"))
    located(err, "'mlp' needs 'hidden'", 7)


def test_too_many_positional_arguments():
    err = errors_of(GOOD_LAYER.replace("mlp(4*d)", "mlp(4*d, gelu)"))
    located(err, "'mlp' takes 1 positional argument", 7)


def test_embedding_needs_token_ids():
    err = errors_of(GOOD_LAYER.replace("    layernorm\n    lm_head", "    embedding(10, d)\n    lm_head"))
    located(err, "'embedding' needs token ids", 13)


def test_component_before_embedding():
    err = errors_of(GOOD_LAYER.replace("    embedding(100, d) as wte\n", "    layernorm\n    embedding(100, d) as wte\n"))
    located(err, "'layernorm' needs hidden states but receives token ids", 10)


def test_residual_shape_mismatch():
    err = errors_of(GOOD_LAYER.replace("mlp(4*d)", "linear(2*d)"))
    located(err, "residual adds [B, T, 128] to [B, T, 64]", 7)


def test_shape_mismatch_between_stacks():
    text = """
model ed {
  stack encoder(src) { embedding(100, 32) as embed; layernorm }
  stack decoder(tgt, memory = encoder) {
    embedding(100, 64) as embed
    residual { cross_attention(4, memory) }
    lm_head(tie=embed)
  }
}
"""
    err = errors_of(text)
    located(err, "shape mismatch between stacks", 6, hint="width")


def test_tied_shape_mismatch():
    text = """
model ed {
  stack encoder(src) { embedding(100, 32) as embed }
  stack decoder(tgt, memory = encoder) { embedding(100, 64, tie=encoder.embed) as embed }
}
"""
    located(errors_of(text), "shape mismatch: tied weight 'encoder.embed.weight' is [100, 32]", 4)


def test_unknown_memory_stack():
    text = """
model ed {
  stack encoder(src) { embedding(100, 32) as embed }
  stack decoder(tgt, memory = encodr) { embedding(100, 32) as embed }
}
"""
    located(errors_of(text), "unknown stack 'encodr'", 4, hint="did you mean 'encoder'?")


def test_repeat_count_too_large():
    err = errors_of(GOOD_LAYER.replace("repeat(2)", "repeat(10**9)"))
    located(err, "repeat count 1,000,000,000 is too large", 12)


def test_size_too_large():
    err = errors_of(GOOD_LAYER.replace("embedding(100, d)", "embedding(10**12, d)"))
    located(err, "too large for any model", 10)
    err = errors_of(GOOD_LAYER.replace("embedding(100, d)", "embedding(2**31, d)"))
    located(err, "vocab = 2,147,483,648 is too large for any model (at most 2,147,483,647)", 10)


def test_astronomical_number():
    err = errors_of(GOOD_LAYER.replace("d = 64", "d = 10 ** 10 ** 10"))
    located(err, "number too large", 3)


@pytest.mark.slow  # elaborates 5000 layers before the total is known: ~3 s
def test_model_too_large_in_total():
    err = errors_of(GOOD_LAYER.replace("d = 64", "d = 2**20").replace("repeat(2)", "repeat(5000)")
                    .replace("mlp(4*d)", "mlp(64*d)"))
    assert any("parameters, more than any machine" in d.message for d in err.diagnostics)


def test_variable_cycle():
    err = errors_of(GOOD_LAYER.replace("d = 64", "d = heads * 16").replace("heads = 4", "heads = d // 16"))
    assert any("defined in terms of itself" in d.message for d in err.diagnostics)


def test_duplicate_module_name():
    err = errors_of(GOOD_LAYER.replace("    layernorm\n    lm_head", "    layernorm as wte\n    lm_head"))
    located(err, "the name 'wte' is already used", 13)


def test_unknown_block_parameter():
    text = GOOD_LAYER.replace("block layer {", "block layer(w = 1) {").replace("repeat(2) layer", "repeat(2) layer(x=1)")
    located(errors_of(text), "block 'layer' has no parameter 'x'", 12)


def test_unknown_pass_and_empty_selector():
    text = GOOD_LAYER + 'passes {\n  fuse_qvk\n  quantize(int8_dynamic, on="decoder.h.*.mlpp")\n}\n'
    err = errors_of(text)
    located(err, "unknown pass 'fuse_qvk'", 18, hint="did you mean 'fuse_qkv'?")
    located(err, "matches no module", 19)


def test_unknown_train_setting():
    text = GOOD_LAYER + "train {\n  bacth = 4\n  optimizer = adam(lr=1)\n}\n"
    err = errors_of(text)
    located(err, "unknown train setting 'bacth'", 18, hint="did you mean 'batch'?")
    located(err, "unknown function 'adam'", 19, hint="did you mean 'adamw'?")


def test_train_optimizer_must_be_a_call():
    text = GOOD_LAYER + "train {\n  optimizer = 3\n}\n"
    located(errors_of(text), "optimizer should be one of adamw(...), sgd(...)", 18)


def test_independent_errors_all_reported_in_order():
    text = (GOOD_LAYER.replace("attention(heads", "atention(heads").replace("mlp(4*d)", "mlp(4*dd)")
            .replace("position(learned, 32)", "position(learnd, 32)"))
    err = errors_of(text)
    lines = [d.span.line for d in err.diagnostics]
    assert lines == sorted(lines) and {6, 7, 11} <= set(lines)
    assert str(err).count(": error: ") == len(err.diagnostics)


def test_no_model_in_file():
    located(errors_of("block b { layernorm }\n"), "the file defines no model", 1)


def test_missing_import_file(tmp_path):
    p = tmp_path / "a.arch"
    p.write_text('from "nowhere.arch" import layer\nmodel m { stack s(t) { embedding(3, 4) } }\n')
    with pytest.raises(SpecError) as info:
        build_file(p)
    located(info.value, "cannot import 'nowhere.arch': no such file", 1)


def test_import_cycle(tmp_path):
    (tmp_path / "a.arch").write_text('import "b.arch"\nmodel m { stack s(t) { embedding(3, 4) } }\n')
    (tmp_path / "b.arch").write_text('import "a.arch"\nblock x { layernorm }\n')
    with pytest.raises(SpecError) as info:
        build_file(tmp_path / "a.arch")
    d = located(info.value, "import cycle: a.arch -> b.arch -> a.arch", 1)
    assert d.span.file.endswith("b.arch")


def test_import_missing_name(tmp_path):
    (tmp_path / "lib.arch").write_text("block layer { layernorm }\n")
    (tmp_path / "a.arch").write_text('from "lib.arch" import layr\nmodel m { stack s(t) { embedding(3, 4) } }\n')
    with pytest.raises(SpecError) as info:
        build_file(tmp_path / "a.arch")
    located(info.value, "has no block or model 'layr'", 1, hint="did you mean 'layer'?")


def test_error_inside_imported_file_is_located_there(tmp_path):
    (tmp_path / "lib.arch").write_text("block layer {\n  layernorm(epss=1)\n}\n")
    (tmp_path / "a.arch").write_text('import "lib.arch"\nmodel m { stack s(t) { embedding(3, 4); layer } }\n')
    with pytest.raises(SpecError) as info:
        build_file(tmp_path / "a.arch")
    d = located(info.value, "'layernorm' has no option 'epss'", 2)
    assert d.span.file.endswith("lib.arch")


def test_extends_unknown_base():
    err = errors_of("model a { d = 1 }\nmodel b extends c { e = 2 }\n")
    located(err, "extends unknown model 'c'", 2)


def test_extends_hint_never_names_the_model_itself():
    err = errors_of("model gpt2_medium extends gpt { d = 1 }\n")
    located(err, "extends unknown model 'gpt'", 1, hint="define the base model in this file or import it")


def test_rendering_format():
    err = errors_of(GOOD_LAYER.replace("mlp(4*d)", "mlp(4*dd)"))
    text = str(err)
    assert re.match(r"^spec\.arch:7:33: error: undefined variable 'dd'\n +7 \| .*mlp\(4\*dd\)", text)
    assert "hint: did you mean 'd'?" in text


# ---- the same mistakes in the YAML surface: same message, located on the YAML line

YAML_CASES = [
    # (change to GOOD_LAYER, message, text found at the reported line and column)
    (("attention(heads", "atention(heads"), "unknown component 'atention'", "atention"),
    (("causal=true", "casual=true"), "'attention' has no option 'casual'", "casual"),
    (("causal=true", "causal=3.5"), "option 'causal' of 'attention'", "3.5"),
    (("mlp(4*d)", "mlp(4*d, act=gelux)"), "'gelux' is not a valid act", "gelux"),
    (("mlp(4*d)", "mlp(4*dd)"), "undefined variable 'dd'", "dd"),
    (("heads = 4", "heads = 4 // (d - 64)"), "division by zero", "d - 64"),
    (("heads = 4", "heads = 5"), "heads (5) does not divide d (64)", "attention"),
    (("causal=true", "causal=true, kv_heads=3"), "kv_heads (3) must divide heads (4)", "attention"),
    (("mlp(4*d)", "linear(2*d)"), "residual adds [B, T, 128] to [B, T, 64]", "residual"),
    (("repeat(2)", "repeat(10**9)"), "repeat count 1,000,000,000 is too large", "10 ** 9"),
    (("embedding(100, d)", "embedding(10**12, d)"), "too large for any model", "10 ** 12"),
    (("    layernorm\n    lm_head", "    layernorm as wte\n    lm_head"), "the name 'wte' is already used", "wte"),
]


@pytest.mark.parametrize("change,message,token", YAML_CASES, ids=[c[1][:30] for c in YAML_CASES])
def test_same_mistake_located_in_yaml(change, message, token):
    from strata.dsl.parser import parse
    from strata.dsl.yaml_writer import to_yaml

    text = to_yaml(parse(GOOD_LAYER.replace(*change), "spec.arch"))
    err = errors_of(text, "spec.yaml")
    (d,) = [d for d in err.diagnostics if message in d.message]
    line = text.splitlines()[d.span.line - 1]
    assert token in line[d.span.col - 1:], f"{token!r} not at {d.span} in {line!r}"
    assert str(err).startswith(f"spec.yaml:{d.span.line}:{d.span.col}: error: ") or \
        f"spec.yaml:{d.span.line}:{d.span.col}: error: {d.message}" in str(err)


def test_yaml_syntax_error_is_located():
    err = errors_of("models:\n  m:\n    vars: {d: 1\n    stacks: x\n", "spec.yaml")
    assert err.diagnostics[0].span.file == "spec.yaml" and err.diagnostics[0].span.line >= 3
    assert str(err).startswith("spec.yaml:")


def test_yaml_missing_import_and_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("imports: [b.yaml]\nmodels:\n  m:\n    stacks:\n      s:\n"
                                     "        inputs: [t]\n        body: ['embedding(3, 4)']\n")
    (tmp_path / "b.yaml").write_text("imports: [a.yaml, nowhere.arch]\nblocks:\n  x: [layernorm]\n")
    with pytest.raises(SpecError) as info:
        build_file(tmp_path / "a.yaml")
    msgs = {d.message for d in info.value.diagnostics}
    assert any(m.startswith("import cycle: a.yaml -> b.yaml -> a.yaml") for m in msgs), msgs
    assert "cannot import 'nowhere.arch': no such file" in msgs
    for d in info.value.diagnostics:
        assert d.span.file.endswith("b.yaml") and d.span.line == 1


@pytest.mark.parametrize("text,message,line", [
    ("model m { d = 1\n d = 2\n stack s(t) { embedding(3, d) } }", "variable 'd' is defined twice", 2),
    ("model m { stack s(t) { embedding(3, 4) }\n stack s(t) { embedding(3, 4) } }", "stack 's' is defined twice", 2),
    ("model m { stack s(t) { embedding(3, 4) } }\nmodel m { stack s(t) { embedding(3, 4) } }",
     "model 'm' is defined twice", 2),
    ("block b(x, x) { layernorm }\nmodel m { stack s(t) { embedding(3, 4) } }",
     "parameter of block 'b' 'x' is defined twice", 1),
    ("model m { stack s(t, t) { embedding(3, 4) } }", "input of stack 's' 't' is defined twice", 1),
    ("model m { stack s(t) { embedding(3, 4) } }\ntrain { batch = 1\n batch = 2 }",
     "train setting 'batch' is defined twice", 3),
])
def test_duplicate_definitions(text, message, line):
    located(errors_of(text), message, line)


@pytest.mark.parametrize("teacher,message", [
    ('"missing.arch"', "distill: teacher spec 'missing.arch' not found"),
    ("m", "distill: a model cannot be its own teacher"),
    ("gpt", "distill: no model 'gpt' to learn from"),
])
def test_distill_teacher_must_exist(teacher, message):
    located(errors_of(GOOD_LAYER + f"passes {{\n  distill(teacher={teacher})\n}}\n"), message, 18)


def test_two_stack_positions_in_one_stack():
    """A second position(rotary) would be built with its own size and never used."""
    err = errors_of("model m {\n  stack s(t) {\n    embedding(10, 8)\n    position(rotary)\n"
                    "    position(rotary, fraction=0.5)\n    attention(2, causal=true)\n  }\n}\n")
    located(err, "a second position(rotary) in stack 's'", 5, col=5,
            hint="the stack already has position(rotary); keep one")
    err = errors_of("model m { stack s(t) { embedding(10, 8); position(alibi)\n position(relative) } }")
    located(err, "a second position(relative) in stack 's'", 2)
