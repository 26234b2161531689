"""`strata summary` (strata/compiler/summary.py): folded rows, variants and nested
repeats, the JSON, and a table whose module names survive an 80-column terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from strata.compiler import build_file, build_text
from strata.compiler.summary import (
    index_ranges,
    print_summary,
    summary_dict,
    summary_rows,
)
from tests.render.specs import ROOT, graph

ALTERNATING = '''
model alt {
  d = 64
  block layer(w) {
    residual { rmsnorm as input_norm; attention(4, causal=true, window=w) }
    residual { rmsnorm as post_attention_norm; mlp(128, act=swiglu) }
  }
  stack decoder(tokens) {
    embedding(1000, d) as embed
    repeat(26, i) layer(w = 4096 if i % 2 == 0 else 100000) as layers
    rmsnorm as norm
    lm_head(1000)
  }
}
'''

NESTED = '''
model nested {
  d = 8
  block inner(w) { residual { rmsnorm; attention(2, causal=true, window=w) } }
  block outer { repeat(3, j) inner(w = 4 if j == 0 else 8) as sub
                residual { layernorm; mlp(16) } }
  stack decoder(tokens) { embedding(16, d) as wte; repeat(4) outer as h; lm_head(tie=wte) }
}
'''


def _table(g, width: int, depth: int | None = None) -> str:
    out = io.StringIO()
    print_summary(g, depth, console=Console(file=out, width=width, color_system=None))
    return out.getvalue()


def test_uniform_repeat_is_folded():
    rows = summary_rows(graph("gpt2"))
    assert rows[3] == ("decoder.h × 12", "layer", "[B, T, 768]", "85,054,464  (7,087,872 each)")
    assert rows[4] == ("  .ln_1", "layernorm", "[B, T, 768]", "1,536")
    assert rows[-1] == ("decoder.lm_head", "lm_head", "[B, T, 50257]", "0  (tied: decoder.wte)")
    assert not any("decoder.h.1" in r[0] for r in rows)


def test_variants_are_listed_under_a_heading_each():
    rows = [r[0] for r in summary_rows(build_text(ALTERNATING))]
    assert rows[1:6] == ["decoder.layers × 26", "  [0,2,…,24] × 13", "    .input_norm", "    .attn",
                         "    .post_attention_norm"]
    assert "  [1,3,…,25] × 13" in rows and rows.count("    .attn") == 2


def test_nested_repeats_fold_inside_the_outer_one():
    rows = summary_rows(build_text(NESTED))
    names = [r[0] for r in rows]
    assert names == ["decoder.wte", "decoder.h × 4", "  .sub × 3", "    [0]", "      .norm",
                     "      .attn", "    [1,2] × 2", "      .norm", "      .attn", "  .ln", "  .mlp",
                     "decoder.lm_head"]
    assert rows[1][3] == "4,736  (1,184 each)" and rows[2][3] == "888"
    assert rows[3][3] == "296" and rows[6][3] == "296 each"


def test_depth_limits_rows_by_path_depth():
    names = [r[0] for r in summary_rows(graph("gpt2"), depth=2)]
    assert names == ["decoder.wte", "decoder.wpe", "decoder.drop", "decoder.h × 12",
                     "decoder.ln_f", "decoder.lm_head"]


def test_depth_below_two_is_refused_with_what_it_counts(capsys):
    """--depth 1 once printed an empty table: a stack has no row of its own."""
    from pathlib import Path

    from strata.cli import main

    gpt2 = str(Path(__file__).resolve().parents[2] / "specs" / "gpt2.arch")
    assert main(["summary", gpt2, "--depth", "1"]) == 2
    assert "--depth counts module path parts: 2 shows each stack's components" in capsys.readouterr().err
    assert main(["summary", gpt2, "--depth", "2"]) == 0
    assert "decoder.h × 12" in capsys.readouterr().out


def _module_column(text: str) -> str:
    """The first column of the table's body, its wrapped lines joined, spaces dropped."""
    cells = [line.split("│")[1] for line in text.splitlines() if line.startswith("│")]
    return "".join(cells).replace(" ", "")


@pytest.mark.parametrize("spec", ["alternating", "nested", "llama2_70b", "transformer_base"])
def test_every_module_name_shows_whole_at_80_columns(spec):
    g = {"alternating": lambda: build_text(ALTERNATING), "nested": lambda: build_text(NESTED)}.get(
        spec, lambda: graph(spec))()
    text = _table(g, 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    lines = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    for module, *_ in summary_rows(g):
        assert module.strip() in lines, module  # on one line, not cut


@pytest.mark.parametrize("width", [40, 60])
def test_narrow_terminals_wrap_names_rather_than_cut_them(width):
    g = build_text(ALTERNATING.replace("as input_norm", "as an_input_norm_with_a_long_name"))
    text = _table(g, width)
    assert _module_column(text) == "".join(r[0] for r in summary_rows(g)).replace(" ", "")


@pytest.mark.parametrize("indices, text", [
    ([0, 2, 4, 6], "0,2,…,6"), ([1, 3], "1,3"), ([0, 1, 2, 3, 9], "0-3,9"), ([5], "5"),
    ([0, 1, 5, 6, 7, 11], "0,1,5-7,11"), ([0, 3, 6, 7], "0,3,6,7"), ([], ""),
    ([0, 4, 8, 12, 13, 14], "0,4,…,12,13,14"),
])
def test_index_ranges(indices, text):
    assert index_ranges(indices) == text


def test_summary_dict_counts_each_and_total():
    s = summary_dict(build_file(ROOT / "specs" / "gpt2.arch"))
    assert s["parameters"] == 124_439_808
    assert s["repeats"] == [{"path": "decoder.h", "block": "layer", "count": 12, "uniform": True,
                             "parameters_each": 7_087_872, "parameters": 85_054_464}]
    assert len(s["modules"]) == 3 + 12 * 6 + 2
    alt = summary_dict(build_text(ALTERNATING))["repeats"][0]
    assert alt["uniform"] is False and alt["parameters_each"] is None


BRANCHED = '''
model pretrain {
  d = 16
  stack encoder(tokens) {
    embedding(50, d) as wte
    residual { layernorm; attention(2) }
    branch { pooler; nsp_head } as nsp
    mlm_head(tie=wte)
  }
}
'''


def test_a_branch_output_shows_its_shape():
    """A branch's last node has no out-edge: its shape was read from none ([] in
    the table, null in the JSON) until the branch recorded it."""
    g = build_text(BRANCHED)
    rows = {r[0]: r for r in summary_rows(g)}
    assert rows["encoder.nsp_head"][2] == "[B, 2]"
    assert rows["encoder.pooler"][2] == "[B, 16]"
    mods = {m["path"]: m for m in summary_dict(g)["modules"]}
    assert mods["encoder.nsp_head"]["output_shape"] == ["B", 2]
