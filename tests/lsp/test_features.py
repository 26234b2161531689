"""The language server's answers as plain data (no server): hover, completion,
definitions, on the checker's own analysis."""

from __future__ import annotations

import subprocess
import sys

import pytest

from strata.compiler import build_text
from strata.errors import SpecError
from strata.lsp.features import PASS_BUDGET, Document, _context

GPT2 = open("specs/gpt2.arch").read()


def test_hover_reads_the_graph_the_checker_built():
    doc = Document.of(GPT2, "specs/gpt2.arch")
    text = doc.hover(17, 5)  # embedding(vocab, d) as wte
    assert "**embedding** `decoder.wte`" in text and "parameters: 38,597,376" in text
    assert "`[B, T, d]`" in text
    assert doc.hover(4, 3).startswith("**var** `vocab` = `50257`")
    passes = Document.of(GPT2 + "passes {\n  quantize(int8_dynamic)\n}\n", "g.arch")
    assert passes.hover(26, 4).startswith("**pass quantize**")


def test_completion_by_context():
    doc = Document.of(GPT2 + "passes {\n  quantize(\n}\n", "g.arch")
    labels = {i.label for i in doc.completion(20, 4)}  # a statement of the stack
    assert {"attention", "mlp", "layer", "residual", "repeat"} <= labels
    assert {"d", "heads"} <= {i.label for i in doc.completion(17, 21)}  # an argument
    inside = {i.label for i in doc.completion(26, 11)}  # inside quantize(
    assert {"scheme=", "int8_dynamic"} <= inside  # its options, and the words of its first
    assert {"learned", "rotary", "alibi"} <= {i.label for i in doc.completion(18, 13)}  # position(
    assert {"int8_dynamic", "int4_weight"} <= {i.label for i in Document.of(
        GPT2 + "passes {\n  quantize(scheme=\n}\n", "g.arch").completion(26, 18)}


def test_completion_leaves_out_the_options_the_checker_refuses_beside_those_written():
    """quantize(int8_dynamic, ...) is not offered group_size: the checker refuses it
    there (one scale per row), and completion asks the checker's options model."""
    import pytest

    import strata
    from strata.errors import SpecError

    def offered(call: str) -> set[str]:
        doc = Document.of(GPT2 + f"passes {{\n  {call}\n}}\n", "g.arch")
        return {i.label for i in doc.completion(26, 2 + len(call))}

    for scheme in ("int8_dynamic", "int8_static", "int8_weight", "fp8"):
        got = offered(f"quantize({scheme}, ")
        assert {"on=", "qat="} <= got and not {"group_size=", "strict=", "scheme="} & got, sorted(got)
        with pytest.raises(SpecError, match="group_size"):  # what the checker says of it
            strata.check(GPT2 + f"passes {{ quantize({scheme}, group_size=64) }}\n")
    got = offered('quantize(int4_weight, on="mlp", ')
    assert {"group_size=", "strict=", "method="} <= got and not {"on=", "bits="} & got, sorted(got)
    assert "group_size=" in offered("quantize(")  # no scheme yet: nothing to refuse it beside


def test_context_survives_a_file_that_does_not_parse():
    text = 'model m {\n  stack s(t) {\n    mlp(4 * d, act="x(", '
    where = _context(text, len(text))
    assert (where.section, where.call) == ("body", "mlp")
    assert _context("passes { ", 9).section == "passes"


def test_the_server_modules_do_not_import_torch():
    code = ("import sys, strata.lsp.server, strata.lsp.features; "
            "from strata.lsp.features import Document; Document.of(open('specs/gpt2.arch').read(), 'g.arch')"
            ".hover(12, 30); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_yaml_specs_hover_like_text_specs():
    doc = Document.of(open("specs/gpt2.yaml").read(), "specs/gpt2.yaml")
    assert "parameters: 2,362,368 each" in doc.hover(17, 17)  # {attention: heads, ...}
    assert doc.hover(9, 7).startswith("**var** `d` = `768`")
    assert doc.completion(17, 30) == []  # YAML completion is the JSON Schema's


def test_go_to_definition_past_an_import_path_with_a_nul(tmp_path):
    """The checker reports the path; finding a definition skips it (resolve() would
    raise ValueError on the NUL)."""
    text = 'import "a\\x00b"\nmodel m { stack s(tokens) { embedding(10, 4); foo } }\n'
    doc = Document.of(text, str(tmp_path / "x.arch"))
    assert "a path cannot hold a NUL character" in doc.analysis.diagnostics[0].message
    assert doc.definition(1, 47) == []


def test_the_passes_run_within_a_bound_per_keystroke():
    """Each pass copies the graph: on 2,000 layers two passes took 4 s of CPU per
    keystroke.  Past PASS_BUDGET (IR nodes x passes) they do not run while editing,
    and a warning at the first pass says so; below it, what they refuse is an error."""
    wrong = "passes {\n  quantize(int8_static)\n  fuse_qkv\n}\n"  # refused: fuse_qkv after int8_static
    small = Document.of(GPT2 + wrong, "g.arch").analysis
    assert [(d.severity, d.span.line, d.message[:9]) for d in small.diagnostics] == [("error", 28, "fuse_qkv:")]
    deep = GPT2.replace("depth = 12", "depth = 200") + wrong  # 2,806 IR nodes x 2 passes
    assert len(Document.of(GPT2.replace("depth = 12", "depth = 200"), "g.arch").analysis.graph.nodes) * 2 \
        > PASS_BUDGET
    d, = Document.of(deep, "g.arch").analysis.diagnostics
    assert (d.severity, d.span.line, d.span.col) == ("warning", 27, 3)
    assert d.message == ("passes not checked while editing: 2,806 IR nodes x 2 passes is past the bound of "
                         f"{PASS_BUDGET:,}")
    assert d.hint == "strata check (or summary) runs them and reports what they refuse"
    with pytest.raises(SpecError, match="fuse_qkv: it rewrites"):  # strata check has no such bound
        build_text(deep, "g.arch", networkx=False, run_passes=True)
