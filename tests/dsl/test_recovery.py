"""Syntax-error recovery: every syntax error of a file, each where the author made it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.compiler import analyze_text
from strata.dsl.parser import parse_recovering
from strata.errors import source_lines

GPT2 = open("specs/gpt2.arch").read()

BROKEN_LAYER = """model m {
  d = 64
  heads = 4
  block layer {
    residual { layernorm; attention(heads, causal=true) }
    residual { layernorm; mlp(4*d) }
  }
  stack decoder(tokens) {
    embedding(100, d) as wte
    repeat(2) layer as h
    lm_head(tie=wte)
  }
}
"""


@pytest.mark.parametrize("text, expected", [
    # an unfinished line: at its end, not at the next line's '='
    ("model m {\n  d = 4096 +\n  heads = 12\n}\n", [(2, 13, "the line ends after '+'; expected a value")]),
    ("model m {\n  d =\n  e = 1\n}\n", [(2, 6, "the line ends after '='")]),
    ("model m {\n  d = 3 +\n}\n", [(2, 10, "the line ends after '+'")]),
    # a missing '}': where the indentation says the block ends, not at the next 'stack'
    (BROKEN_LAYER.replace("causal=true) }", "causal=true)"),
     [(5, 56, "missing '}': the '{' on line 5 is not closed")]),
    (BROKEN_LAYER.replace("    residual { layernorm; mlp(4*d) }\n  }\n", "    residual { layernorm; mlp(4*d) }\n"),
     [(6, 37, "missing '}': the '{' on line 4 is not closed")]),
    # at the end of the file: the innermost '{' left open is named
    ("model m {\n  stack s(tokens) {\n    embedding(10, 4)\n", [(3, 21, "unexpected end of file")]),
    # an unclosed '(' whose statement runs into the next line
    ("model m {\n  e = (3\n  f = 2\n}\n", [(2, 7, "this '(' is not closed")]),
    # several independent mistakes: each one, in order
    ("model m {\n  d = 8 $ 4\n  e = (3\n  stack s(tokens) { mlp(4*d act=gelu) }\n}\n",
     [(2, 9, "unexpected character '$'"), (3, 7, "this '(' is not closed"), (4, 29, "unexpected 'act'")]),
    ("model m {\n  a = 1 +\n  b = 2 *\n  c = 3\n  stack s(t) { layernorm; }\n}\n",
     [(2, 10, "the line ends after '+'"), (3, 10, "the line ends after '*'")]),
    ("model m { stack s(t) { mlp(1,, 2) } }\nmodel n { d = }\n", [(1, 30, "unexpected ','"), (2, 15, "unexpected '}'")]),
    ("model m { d = 1 } }\nmodel n { e = 2 }", [(1, 19, "unexpected '}'")]),
    # one mistake, one error: the keyword is reported once, the rest still read
    ("model m { stack s(t) { embedding(10, 8) as block } }\nmodel n { d = }", [(1, 44, "'block' is a keyword"),
                                                                                  (2, 15, "unexpected '}'")]),
])
def test_every_syntax_error_at_its_place(text, expected):
    spec, diags = parse_recovering(text, "r.arch")
    got = [(d.span.line, d.span.col, d.message) for d in diags]
    assert len(got) == len(expected), got
    for (line, col, msg), (gl, gc, gm) in zip(expected, got):
        assert (gl, gc) == (line, col) and gm.startswith(msg), got
    assert spec is not None  # the rest of the file is read


def test_missing_brace_hint_names_the_open_line():
    _, diags = parse_recovering("model m {\n  stack s(tokens) {\n    embedding(10, 4)\n", "r.arch")
    assert diags[0].hint == "the '{' on line 2 is not closed"


def test_repaired_statements_reach_the_checker():
    """`d = 4096 +` is read as `d = 4096`: the checker runs on the rest with d
    defined, so the one mistake gives one error, not a cascade."""
    a = analyze_text(GPT2.replace("d     = 768", "d     = 768 +"), "gpt2.arch")
    assert [(d.span.line, d.message) for d in a.diagnostics] == [(7, "the line ends after '+'; expected a value")]
    a = analyze_text(GPT2.replace("heads, causal=true, dropout=p", "heads causal=true, dropout=p")
                     .replace("act=gelu_tanh", "act=gelu_tan"), "gpt2.arch")
    assert [d.message for d in a.diagnostics] == ["unexpected 'causal'",
                                                  "'gelu_tan' is not a valid act"]


def test_checker_errors_from_a_dropped_definition_are_not_reported():
    a = analyze_text("model m {\n  d = (8 ) )\n  stack s(tokens) { embedding(10, d) }\n}\n", "r.arch")
    assert [d.message for d in a.diagnostics] == ["unexpected ')'"]


def test_a_ratio_written_bare_is_one_error_saying_to_quote_it():
    """`method=2:4` (the docs' `2:4` without its quotes) gave three errors: the
    stray ':', then "got 2" and "a positional argument follows a keyword argument"
    from what was left; it is one, with the spelling to write."""
    text = GPT2 + '\npasses { prune(0.5, method=2:4) }\n'
    a = analyze_text(text, "gpt2.arch")
    assert [(d.message, d.hint) for d in a.diagnostics] == [
        ("unexpected character ':'", 'a word with \':\' in it is a string: write "2:4"')]
    assert a.diagnostics[0].span.col == 29


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_recovery_never_crashes_and_stays_in_the_file(data):
    """Delete, duplicate or swap a random span of GPT-2's text: every diagnostic
    lies in the file and nothing raises."""
    n = len(GPT2)
    a = data.draw(st.integers(0, n - 1))
    b = data.draw(st.integers(a, min(n, a + 40)))
    how = data.draw(st.sampled_from(["cut", "dup", "brace", "paren"]))
    text = {"cut": GPT2[:a] + GPT2[b:], "dup": GPT2[:b] + GPT2[a:b] + GPT2[b:],
            "brace": GPT2[:a] + "{" + GPT2[a:], "paren": GPT2[:a] + ")" + GPT2[a:]}[how]
    spec, diags = parse_recovering(text, "f.arch")
    lines = source_lines(text)
    for d in diags:
        assert 1 <= d.span.line <= len(lines) + 1, d


def test_cli_check_reports_every_syntax_error(tmp_path, capsys):
    from strata.cli import main

    f = tmp_path / "b.arch"
    f.write_text("model m {\n  d = 4096 +\n  heads = 8\n  stack decoder(tokens) {\n    embedding(100, d) as wte\n"
                 "    mlp(4*d act=gelu)\n    lm_head(tie=wte)\n  }\n")
    assert main(["check", str(f)]) == 1
    err = capsys.readouterr().err
    assert [line.split(": error: ")[0].rpartition("b.arch:")[2] for line in err.splitlines()
            if ": error: " in line] == ["2:13", "6:13", "8:4"]
    assert err.rstrip().endswith("3 errors")


def test_recovery_work_is_bounded_on_hostile_input():
    """A file of 2,000 broken statements reports MAX_ERRORS of them; a one-line
    statement of 40,000 tokens (under MAX_TOKENS) is tried only MAX_TRIAL tokens at a time."""
    import time

    from strata.dsl.recovery import MAX_ERRORS

    start = time.perf_counter()
    _, diags = parse_recovering("model m {\n" + "  d = 1 +\n  e = )\n" * 2000 + "}\n", "h.arch")
    assert len(diags) == MAX_ERRORS
    _, diags = parse_recovering("model m { d = " + " 1" * 40_000 + " }", "h.arch")
    assert [d.message for d in diags] == ["unexpected '1'"]
    assert time.perf_counter() - start < 30  # seconds, on a loaded 2-core machine; about 1 s unloaded


def test_a_spec_past_max_tokens_is_refused_before_it_is_parsed():
    """400 KB and 8 MB of the costliest shapes (an expression 200,000 operators long
    took 12 s to parse twice and be refused as too deep; 49,000 tokens then 50
    stray characters re-lexed 2.5 million tokens) are answered within a second
    or two, at the first token past the bound."""
    import time

    from strata.dsl.clean import MAX_SPEC_BYTES, MAX_TOKENS

    for n in (400_000, 8_000_000):
        for text in ("model m { d = " + "1+" * (n // 2) + "1 }\n",
                     "model m { d = " + "(" * (n // 2) + "1" + ")" * (n // 2) + " }\n",
                     "model m {\n" + " d = 1\n" * (n // 7) + "}\n"):
            start = time.perf_counter()
            spec, diags = parse_recovering(text, "h.arch")
            size = len(text.encode())
            assert spec is None and [d.message for d in diags] == [
                f"the spec has more than {MAX_TOKENS:,} tokens" if size <= MAX_SPEC_BYTES
                else f"the spec is {size:,} bytes, more than {MAX_SPEC_BYTES:,}"]
            assert diags[0].span.line >= 1 and time.perf_counter() - start < 5  # ~0.2 s unloaded
    start = time.perf_counter()
    _, diags = parse_recovering("model m {\n" + " d = 1\n" * 16_000 + "@\n" * 60 + "}\n", "h.arch")
    assert 1 <= len(diags) < 60 and all(d.message == "unexpected character '@'" for d in diags)
    assert time.perf_counter() - start < 5  # ~1 s unloaded; 9 s before LEX_WORK
