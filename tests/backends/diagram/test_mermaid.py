"""Mermaid backend: golden files, safety of ids and labels, mermaid's limits, and
every diagram rendered by mermaid.js in headless Chromium (one launch)."""

from __future__ import annotations

import re

import pytest

from strata.backends.diagram.layout import Arrow, Box, Cluster, Layout
from strata.backends.diagram.mermaid import (
    MAX_EDGES,
    MAX_TEXT,
    escape,
    render,
    to_mermaid,
)
from strata.passes import apply_passes
from tests.render import mermaid_js
from tests.render.golden import check_golden
from tests.render.specs import LEVELS, SPECS, graph, hostile_graph, variants_graph

RESERVED = {"end", "default", "style", "click", "graph", "subgraph", "class", "classDef",
            "linkStyle", "direction", "flowchart", "call", "href"}
ID = re.compile(r"^(n|c|l|t_c)\d+$|^lg$")


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("spec", SPECS)
def test_golden(spec, level):
    check_golden(f"diagrams/{spec}.{level}.mmd", to_mermaid(graph(spec), level))


@pytest.mark.parametrize("level", ["model", "block"])
def test_golden_after_passes(level):
    g = apply_passes(graph("transformer_seed"))
    check_golden(f"diagrams/transformer_seed.after_passes.{level}.mmd", to_mermaid(g, level))


def test_deterministic():
    assert to_mermaid(graph("gpt2"), "op") == to_mermaid(graph("gpt2"), "op")


def _ids(text: str) -> set[str]:
    ids = set()
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"^subgraph (\S+?)\[", s)
        if m:
            ids.add(m.group(1))
            continue
        m = re.match(r"^(\w+)(\[|\(|\s+-|\s+=)", s)
        if m and m.group(1) not in ("subgraph", "class", "classDef", "linkStyle", "style"):
            ids.add(m.group(1))
    return ids


@pytest.mark.parametrize("level", LEVELS)
def test_hostile_names_are_escaped(level):
    text = to_mermaid(hostile_graph(), level)
    ids = _ids(text)
    assert ids and all(ID.match(i) for i in ids), ids
    assert not ids & RESERVED
    for line in text.splitlines():
        for label in re.findall(r'"([^"]*)"', line):
            markup = label.replace("<br/>", "").replace("<b>", "").replace("</b>", "")
            assert not set(markup) & set('<>[]{}()|`&'), line
    assert "名前" in text and "üñí" in text          # unicode kept
    assert "#quot;q#quot;" in text and "#35;c" in text
    assert " --> end" not in text.replace("#35;", "")  # the teacher's arrow stays inside a label


def test_escape():
    assert escape('a"b') == "a#quot;b"
    assert escape("#quot;") == "#35;quot#59;"
    assert escape("x\ny") == "x y"
    assert escape("<br/>") == "#lt;br/#gt;"


def test_arrows_have_spaces_and_labels_are_quoted():
    text = to_mermaid(graph("transformer_base"), "block")
    for line in text.splitlines():
        if re.search(r"-->|-\.->|==>|-\.-", line):
            assert re.match(r'^  n\d+ (-->|-\.->|==>|-\.-)(\|"[^"]*"\|)? n\d+$', line), line


def test_limits_fall_back_with_a_warning():
    g = graph_70b()
    text = to_mermaid(g, "op", unfold=True)
    assert len(text) <= MAX_TEXT and text.count("-->") + text.count("-.->") <= MAX_EDGES
    assert "%% warning: level op unfolded exceeds mermaid's limits" in text


def test_huge_diagram_falls_back_to_coarser_level():
    boxes = [Box(f"n{i}", f"k{i}", ["x" * 40, "y" * 40], "linear") for i in range(900)]
    arrows = [Arrow(f"n{i}", f"n{i + 1}", "[B, T, 4096]") for i in range(899)]
    d = Layout("t", "op", boxes=boxes, arrows=arrows, clusters=[Cluster("c0", "s", ["s"])])
    assert len(render(d)) > MAX_TEXT  # what to_mermaid must avoid emitting


def graph_70b():
    return graph("llama2_70b")


# ---------------------------------------------------------------- mermaid.js

@pytest.fixture(scope="module")
def rendered():
    why = mermaid_js.unavailable()
    if why:
        pytest.skip(f"cannot render Mermaid here: {why}")
    items = {}
    for spec in SPECS:
        for level in LEVELS:
            items[f"{spec}.{level}"] = to_mermaid(graph(spec), level)
    for level in LEVELS:
        items[f"hostile.{level}"] = to_mermaid(hostile_graph(), level)
        items[f"hostile.{level}.unfold"] = to_mermaid(hostile_graph(), level, unfold=True)
    for level in LEVELS:
        items[f"variants.{level}"] = to_mermaid(variants_graph(), level)
        items[f"variants.{level}.unfold"] = to_mermaid(variants_graph(), level, unfold=True)
    seed = apply_passes(graph("transformer_seed"))
    for level in LEVELS:
        items[f"seed.{level}"] = to_mermaid(seed, level, direction="LR")
    for spec in ("mistral_7b", "tiny_shakespeare", "llama2_70b"):
        items[f"{spec}.block"] = to_mermaid(graph(spec), "block")
    items["llama2_70b.op.unfold"] = to_mermaid(graph_70b(), "op", unfold=True)
    items["llama2_7b.op.passes"] = to_mermaid(apply_passes(_with_passes()), "op")
    broken = {"broken": 'flowchart TB\n  a["x" --> end\n'}  # proves failures are seen
    return items, mermaid_js.render_all({**items, **broken})


def _with_passes():
    from strata.compiler import build_text
    from tests.render.specs import ROOT

    text = (ROOT / "specs" / "llama2_7b.arch").read_text().replace("depth  = 32", "depth  = 2")
    text += "\npasses { fuse_qkv\n fuse_mlp\n quantize(int8_dynamic, on=\"mlp\")\n " \
            "low_rank(64, on=\"attention\")\n prune(0.3, on=\"decoder.lm_head\") }\n"
    return build_text(text, str(ROOT / "specs" / "llama2_7b_passes.arch"))


@pytest.mark.slow  # one headless Chromium for all diagrams: about 12 s
def test_mermaid_js_renders_every_diagram(rendered):
    items, results = rendered
    results = {k: v for k, v in results.items() if k != "broken"}
    assert set(results) == set(items)
    bad = {k: v["error"] for k, v in results.items() if not v["ok"]}
    assert not bad, bad
    assert all(v["svg_bytes"] > 1000 for v in results.values())


@pytest.mark.slow  # shares the Chromium run above
def test_mermaid_js_reports_errors(rendered):
    _, results = rendered
    assert not results["broken"]["ok"] and "Parse error" in results["broken"]["error"]
