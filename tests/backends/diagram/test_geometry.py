"""Diagrams as a reader sees them: every shipped spec at every level, drawn by
mermaid.js and by Graphviz, laid out in headless Chromium (one launch), with no
collision: no cluster title over a node, no edge through a title, no edge label
on a node or a title, no overlapping nodes (tests/render/collisions.js).

Options that move titles and arrows (--unfold, LR, --after-passes) are drawn
for the specs that stress them (every combination, for every spec, is
`python benchmarks/diagram_collisions.py --all`: 480 drawings): nested repeats (deep), a wide parallel layer
(wide), two stacks joined by memory (t5_small, transformer_seed after passes,
with the teacher), one plain decoder (gpt2)."""

from __future__ import annotations

import pytest

from strata.compiler import build_text
from strata.passes import apply_passes
from tests.render import geometry
from tests.render.geometry import DEEP, RENDERERS, SHIPPED, WIDE, Drawing
from tests.render.specs import LEVELS, graph

OPTIONS = {"": {}, "unfold": {"unfold": True}, "LR": {"direction": "LR"},
           "unfold.LR": {"unfold": True, "direction": "LR"}}
STRESS = ("gpt2", "t5_small", "seed", "deep", "wide")


def _graph(spec: str):
    if spec == "deep":
        return build_text(DEEP, "deep.arch")
    if spec == "wide":
        return build_text(WIDE, "wide.arch")
    if spec == "seed":
        return apply_passes(graph("transformer_seed"))
    return graph(spec)


def _cases() -> dict[str, tuple[str, str, str, dict]]:
    """name -> (spec, level, renderer, options).  mermaid.js takes seconds to lay out
    an unfolded op level, so --unfold is drawn at op level for `wide` alone, and
    with LR at model level; benchmarks/diagram_collisions.py --all draws the rest."""
    out = {}
    for spec in SHIPPED + STRESS:
        for level in LEVELS:
            for renderer in RENDERERS:
                for tag, opts in OPTIONS.items():
                    if tag and spec not in STRESS:
                        continue
                    if tag == "unfold.LR" and level != "model" or \
                            tag == "unfold" and level == "op" and spec != "wide":
                        continue
                    out[".".join(x for x in (spec, level, tag, renderer) if x)] = \
                        (spec, level, renderer, opts)
    return out


CASES = _cases()

# A subgraph title of three lines over its first node, entered from above: what
# mermaid draws without strata's title nodes.  It proves collisions are seen.
NATIVE_TITLE = '''flowchart TB
  n9["above"]
  subgraph c0["a long cluster title<br/>its parameter line<br/>and one more"]
    n0["first"]
    n1["second"]
  end
  n9 --> n0
  n0 --> n1
'''


@pytest.fixture(scope="module")
def measured():
    why = geometry.unavailable()
    if why:
        pytest.skip(f"cannot lay out diagrams here: {why}")
    graphs = {spec: _graph(spec) for spec in {c[0] for c in CASES.values()}}
    drawings = [geometry.draw(name, graphs[spec], level, renderer, **opts)
                for name, (spec, level, renderer, opts) in CASES.items()]
    drawings.append(Drawing("native-title", "mermaid", NATIVE_TITLE))
    return geometry.measure(drawings)


@pytest.mark.slow  # 177 drawings in one Chromium: ~65 s of browser time at load average 10
@pytest.mark.parametrize("name", sorted(CASES))
def test_no_collisions(measured, name):
    r = measured[name]
    assert r["ok"], r["error"]
    assert r["items"]["nodes"] and r["items"]["edges"], r["items"]  # something was measured
    assert not r["collisions"], f"{name}:\n{geometry.describe(r['collisions'])}"


@pytest.mark.slow
@pytest.mark.parametrize("renderer", RENDERERS)
def test_titles_are_measured(measured, renderer):
    r = measured[f"gpt2.block.{renderer}"]
    assert any("h: layer × 12" in n["text"] for n in r["items"]["nodes"])  # a title node
    titles = [t["text"] for t in r["items"]["titles"]]
    assert any("gpt2 · 124.4M parameters" in t for t in titles), titles


@pytest.mark.slow
def test_a_title_over_a_node_is_caught(measured):
    kinds = {c["kind"] for c in measured["native-title"]["collisions"]}
    assert {"title-node", "edge-title"} <= kinds, measured["native-title"]["collisions"]
