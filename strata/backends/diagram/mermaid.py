"""Mermaid flowcharts from the graph IR (via `layout.describe`).

Safety rules, so that any spec renders and none makes mermaid draw its error box:
- ids are generated (n0, c0, t_c0, l0): user text never becomes an id or a keyword;
- every label is quoted, and characters mermaid or HTML would read
  (`" # < > & [ ] { } ( ) | `` `) become entity codes (`#quot;`, `#35;`, ...);
- the text stays within mermaid's defaults (maxTextSize 50,000 characters,
  maxEdges 500): too large a diagram is folded, then drawn a level coarser,
  with a `%% warning:` comment saying so (invisible links count as edges).

A cluster's title is a text node `t_cN` at its top (titles.py), the subgraph's own
title blank; clusters are styled from `labels.CLUSTER_STYLE`, never mermaid's
default yellow; the front matter sets `wrappingWidth` so label lines stay whole.

    >>> from strata.compiler import build_text
    >>> g = build_text('model m { stack s(ids) { embedding(10, 4) as wte; lm_head(tie=wte) } }')
    >>> print(to_mermaid(g, "model").splitlines()[7])
    flowchart TB
"""

from __future__ import annotations

import networkx as nx

from strata.backends.diagram.labels import CLUSTER_STYLE, TEXT
from strata.backends.diagram.layout import LEVELS, Layout, describe
from strata.backends.diagram.titles import title_id, title_links

MAX_TEXT = 50_000   # mermaid's default maxTextSize
MAX_EDGES = 500     # mermaid's default maxEdges

_ENTITIES = {'"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "[": "#91;", "]": "#93;",
             "{": "#123;", "}": "#125;", "(": "#40;", ")": "#41;", "|": "#124;", "`": "#96;",
             "\\": "#92;", ";": "#59;", "%": "#37;"}

ARROWS = {"data": "-->", "residual": "-.->", "memory": "==>", "tied": "-.-", "distill": "-.->"}
LINK_STYLES = {"residual": "stroke:#555555,stroke-dasharray:6 4",
               "memory": "stroke:#2f5fb3,stroke-width:2.5px",
               "tied": "stroke:#c98a3c,stroke-dasharray:2 3",
               "distill": "stroke:#b8487f,stroke-dasharray:6 3,stroke-width:2px"}
WRAP = 360  # px before mermaid wraps a label line: a 48-character line (labels.MAX_LINE) fits
# The legend's boxes, LEGEND_ROW to a rank: unlinked boxes share a rank, and an
# invisible link from each to the one LEGEND_ROW later starts the next rank, so
# the legend is a short block of rows (TB) or columns (LR), not a band that
# stretches the drawing's first rank.
LEGEND_ROW = 5
SHAPES = {"box": ('["', '"]'), "round": ('("', '")'), "stadium": ('(["', '"])'),
          "circle": ('(("', '"))')}


def escape(text: str) -> str:
    """Make user text safe inside a quoted mermaid label.

    >>> escape('a "b" <c> #d [e]')
    'a #quot;b#quot; #lt;c#gt; #35;d #91;e#93;'
    """
    text = " ".join(str(text).split())
    out = []
    for ch in text:
        if ch == "#":
            out.append("#35;")
        else:
            out.append(_ENTITIES.get(ch, ch))
    return "".join(out)


def _label(lines: list[str], bold_first: bool = False) -> str:
    parts = [escape(x) for x in lines]
    if bold_first and parts:
        parts[0] = f"<b>{parts[0]}</b>"
    return "<br/>".join(parts)


def _cluster_style(kind: str) -> str:
    fill, stroke, width, dashed = CLUSTER_STYLE.get(kind, CLUSTER_STYLE["block"])
    return (f"fill:{fill},stroke:{stroke},stroke-width:{width}px,color:{TEXT}"
            + (",stroke-dasharray:4 3" if dashed else ""))


def _title(text: str) -> str:
    # YAML front matter: keep to characters that need no quoting rules at all.
    safe = "".join(c if c.isalnum() or c in " ._-·×()," else "_" for c in text)
    return safe.strip() or "model"


def legend_links(n: int) -> list[tuple[str, str]]:
    """Invisible links that wrap n legend boxes into ranks of LEGEND_ROW: each box
    before the last rank to the box under it (or the last box, so none floats).

    >>> legend_links(7)
    [('l0', 'l5'), ('l1', 'l6'), ('l2', 'l6'), ('l3', 'l6'), ('l4', 'l6')]
    """
    last_rank = (n - 1) // LEGEND_ROW * LEGEND_ROW if n else 0
    return [(f"l{i}", f"l{min(i + LEGEND_ROW, n - 1)}") for i in range(last_rank)]


def render(d: Layout) -> str:
    """The mermaid text of a layout: header, boxes in their clusters, the legend,
    arrows (then the invisible links, which linkStyle counts after them), styles."""
    out = ["---", f'title: "{_title(d.title)}"', "config:", "  flowchart:",
           f"    wrappingWidth: {WRAP}", "---",
           f"%% strata diagram, level={d.level}", f"flowchart {d.direction}"]
    for w in d.warnings:
        out.append(f"%% warning: {w}")
    _boxes(d, d.tree(), None, 1, out)
    if d.legend:
        out.append('  subgraph lg["<b>Legend</b>"]')
        out.append(f"    direction {d.direction}")
        for i, (kind, label, _, _) in enumerate(d.legend):
            out.append(f'    l{i}["{escape(label)}"]')
        out.append("  end")
    styles = _arrows(d, out)
    links = title_links(d)  # after the arrows: linkStyle counts links in order
    links += legend_links(len(d.legend))
    if links:
        out.append("  %% invisible: each cluster's title stays at its top; the legend in rows")
    for a, b in links:
        out.append(f"  {a} ~~~ {b}")
    for role, idx in styles.items():
        out.append(f"  linkStyle {','.join(map(str, idx))} {LINK_STYLES[role]}")
    _classes(d, out)
    return "\n".join(out) + "\n"


def _boxes(d: Layout, tree: dict, cluster, indent: int, out: list[str]) -> None:
    """The boxes of `cluster`, then its sub-clusters (recursively).  A cluster's
    title is a text node at its top (titles.py says why); the subgraph's own
    title stays blank."""
    subs, boxes = tree.get(cluster, ([], []))
    pad = "  " * indent
    for n in boxes:
        a, b = SHAPES[n.shape]
        out.append(f"{pad}{n.id}{a}{_label(n.lines)}{b}")
    for c in subs:
        out.append(f'{pad}subgraph {c.id}[" "]')
        out.append(f"{pad}  direction {d.direction}")
        out.append(f'{pad}  {title_id(c.id)}["{_label(c.lines, True)}"]')
        _boxes(d, tree, c.id, indent + 1, out)
        out.append(f"{pad}end")


def _arrows(d: Layout, out: list[str]) -> dict[str, list[int]]:
    """The arrows; returns {role: the indices of its links} for linkStyle."""
    styles: dict[str, list[int]] = {}
    for i, e in enumerate(d.arrows):
        arrow = ARROWS[e.role]
        if e.label:
            out.append(f'  {e.src} {arrow}|"{escape(e.label)}"| {e.dst}')
        else:
            out.append(f"  {e.src} {arrow} {e.dst}")
        if e.role in LINK_STYLES:
            styles.setdefault(e.role, []).append(i)
    return styles


def _classes(d: Layout, out: list[str]) -> None:
    """Colours: one class per kind of box (and its legend entry), cluster styles."""
    classes: dict[str, list[str]] = {}
    for n in d.boxes:
        classes.setdefault(n.kind, []).append(n.id)
    for i, (kind, _, _, _) in enumerate(d.legend):
        classes.setdefault(kind, []).append(f"l{i}")
    for kind, _, fill, stroke in d.legend:
        out.append(f"  classDef k_{kind} fill:{fill},stroke:{stroke},color:{TEXT}")
    for kind, ids in classes.items():
        out.append(f"  class {','.join(ids)} k_{kind}")
    if d.clusters:
        out.append(f"  classDef k_title fill:none,stroke:none,color:{TEXT}")
        out.append(f"  class {','.join(title_id(c.id) for c in d.clusters)} k_title")
    for c in d.clusters:
        out.append(f"  style {c.id} {_cluster_style(c.kind)}")
    if d.legend:
        out.append(f"  style lg {_cluster_style('legend')}")


def fits(text: str, d: Layout) -> bool:
    links = len(d.arrows) + len(title_links(d)) + len(legend_links(len(d.legend)))  # invisible too
    return len(text) <= MAX_TEXT and links <= MAX_EDGES


def to_mermaid(g: nx.MultiDiGraph, level: str = "block", *, direction: str = "TB",
               unfold: bool = False) -> str:
    """Mermaid text for `g`; falls back to folded, then coarser levels, to fit
    mermaid's limits (and says so in a `%% warning:` comment)."""
    tries = [(level, unfold)]
    if unfold:
        tries.append((level, False))
    for coarser in LEVELS[:LEVELS.index(level)][::-1]:
        tries.append((coarser, False))
    warnings = []
    for lv, uf in tries:
        d = describe(g, lv, direction=direction, unfold=uf)
        d.warnings = list(warnings)
        text = render(d)
        if fits(text, d):
            return text
        what = f"level {lv}" + (" unfolded" if uf else "")
        warnings.append(f"{what} exceeds mermaid's limits ({len(text):,} characters, "
                        f"{len(d.arrows)} edges); drawn coarser")
    return text  # the model level of any model fits; kept for safety
