"""Graphviz (dot) diagrams from the graph IR (via `layout.describe`).

A cluster per scope (stack, repeat, block; components at op level) whose title is
a text node at its top (titles.py), HTML-like labels with every piece of user
text HTML-escaped, colours by component kind and cluster kind, and a legend in
the heading.  `to_dot` needs only the `graphviz` python package; `render_bytes`
(svg, png) needs the `dot` binary and raises `DotMissing` with an install hint.

    >>> from strata.compiler import build_text
    >>> g = build_text('model m { stack s(ids) { embedding(10, 4) as wte; lm_head(tie=wte) } }')
    >>> to_dot(g, "model").splitlines()[0]
    'digraph strata {'
"""

from __future__ import annotations

import html
import shutil
import subprocess

import networkx as nx

from strata.backends.diagram.labels import CLUSTER_STYLE, TEXT
from strata.backends.diagram.layout import Layout, describe
from strata.backends.diagram.titles import title_id, title_links
from strata.errors import UsageError

INSTALL_HINT = ("the Graphviz `dot` program is needed for svg/png output: install it with "
                "`apt-get install graphviz` (Debian/Ubuntu) or `brew install graphviz` (macOS), "
                "or use --format dot / mermaid")

EDGE_STYLES = {"data": {},
               "residual": {"style": "dashed", "color": "#555555"},
               "memory": {"color": "#2f5fb3", "penwidth": "2.5"},
               "tied": {"style": "dotted", "color": "#c98a3c", "dir": "none"},
               "distill": {"style": "dashed", "color": "#b8487f", "penwidth": "2"}}
SHAPES = {"box": "box", "round": "box", "stadium": "box", "circle": "circle"}


class DotMissing(RuntimeError):
    """The `dot` binary (or the graphviz python package) is not installed."""


class DotFailed(UsageError):
    """`dot` ran and could not draw the diagram (out of memory or time on a huge
    unfolded model, say): one line, with what draws a smaller diagram."""


def _graphviz():
    try:
        import graphviz  # lazy: optional
    except ImportError:
        raise DotMissing("the `graphviz` python package is needed for dot output: "
                         "pip install 'strata[diagrams]'") from None
    return graphviz


def _html(lines: list[str], bold_first: bool = True) -> str:
    parts = [html.escape(x, quote=True) for x in lines]
    if bold_first and parts:
        parts[0] = f"<B>{parts[0]}</B>"
    return "<" + "<BR/>".join(parts) + ">"


LEGEND_ROW = 5  # legend entries a row under a top-to-bottom drawing's title


def _heading(d: Layout) -> str:
    """The drawing's title and, under it, the legend: boxes drawn like the boxes
    they stand for.  As the graph's label it sits outside the layout, so it never
    widens a rank nor meets an arrow.  A left-to-right drawing gets one row."""
    title = f"<B>{html.escape(d.title, quote=True)}</B>"
    if not d.legend:
        return f"<{title}>"
    frame, edge, _, _ = CLUSTER_STYLE["legend"]
    cells = [f'<TD BGCOLOR="{fill}" COLOR="{stroke}" BORDER="1" STYLE="ROUNDED">'
             f'<FONT POINT-SIZE="11">{html.escape(label)}</FONT></TD>'
             for _, label, fill, stroke in d.legend]
    per = len(cells) if d.direction == "LR" else LEGEND_ROW
    # each row a table of its own, so that its boxes are as wide as their labels
    rows = "".join(f'<TR><TD><TABLE BORDER="0" CELLSPACING="4"><TR>{"".join(cells[i:i + per])}'
                   f"</TR></TABLE></TD></TR>" for i in range(0, len(cells), per))
    legend = (f'<TABLE BORDER="1" COLOR="{edge}" BGCOLOR="{frame}" CELLBORDER="0" CELLSPACING="0" '
              f'CELLPADDING="3" STYLE="ROUNDED"><TR><TD><FONT POINT-SIZE="11">'
              f'<B>Legend</B></FONT></TD></TR>{rows}</TABLE>')
    return (f'<<TABLE BORDER="0" CELLSPACING="6"><TR><TD>{title}</TD></TR>'
            f"<TR><TD>{legend}</TD></TR></TABLE>>")


def render(d: Layout) -> str:
    """The dot source of a layout."""
    gv = _graphviz()
    dot = gv.Digraph("strata")
    dot.attr(rankdir=d.direction, label=_heading(d), labelloc="t", fontname="Helvetica",
             newrank="true", nodesep="0.3", ranksep="0.35", fontcolor=TEXT)
    dot.attr("node", fontname="Helvetica", fontsize="11", style="filled,rounded", shape="box",
             fontcolor=TEXT)
    dot.attr("edge", fontname="Helvetica", fontsize="9", color="#333333")
    for w in d.warnings:
        dot.comment = (dot.comment or "") + f"warning: {w}\n"
    fills = {k: (fill, stroke) for k, _, fill, stroke in d.legend}

    tree = d.tree()

    def emit(parent_graph, cluster):
        subs, boxes = tree.get(cluster, ([], []))
        for n in boxes:
            fill, stroke = fills.get(n.kind, ("#ffffff", "#777777"))
            extra = {"style": "filled"} if n.shape == "circle" else {}
            if n.shape == "stadium":
                extra = {"style": "filled,rounded", "peripheries": "1"}
            parent_graph.node(n.id, _html(n.lines, n.shape != "circle"),
                              shape=SHAPES[n.shape], fillcolor=fill, color=stroke, **extra)
        for c in subs:
            with parent_graph.subgraph(name=f"cluster_{c.id}") as sg:
                # The title is a text node at the cluster's top (titles.py says why).
                fill, stroke, width, dashed = CLUSTER_STYLE.get(c.kind, CLUSTER_STYLE["block"])
                sg.attr(label="", style="rounded,filled" + (",dashed" if dashed else ""),
                        fillcolor=fill, color=stroke, penwidth=str(width))
                sg.node(title_id(c.id), _html(c.lines), shape="plaintext", style="",
                        margin="0.02", fontcolor=TEXT)
                emit(sg, c.id)

    emit(dot, None)
    for e in d.arrows:
        attrs = dict(EDGE_STYLES[e.role])
        if e.label:
            attrs["label"] = _html([e.label], False)
        if e.role in ("tied", "distill"):
            attrs["constraint"] = "false"
        dot.edge(e.src, e.dst, **attrs)
    for a, b in title_links(d):  # no weight: the arrows stay straight, the title moves aside
        dot.edge(a, b, style="invis", weight="0")
    return dot.source


def to_dot(g: nx.MultiDiGraph, level: str = "block", *, direction: str = "TB",
           unfold: bool = False) -> str:
    """Dot source for `g` (no size limit: unfolded models stay unfolded)."""
    return render(describe(g, level, direction=direction, unfold=unfold))


def dot_binary() -> str | None:
    return shutil.which("dot")


def render_bytes(source: str, fmt: str, timeout: float = 120) -> bytes:
    """Run `dot -T<fmt>` on `source`; DotMissing when dot is not installed."""
    exe = dot_binary()
    if exe is None:
        raise DotMissing(INSTALL_HINT)
    smaller = "a smaller drawing: leave out --unfold, or --level block or model"
    try:
        r = subprocess.run([exe, f"-T{fmt}"], input=source.encode(), capture_output=True,
                           timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DotFailed(f"dot (Graphviz) did not finish drawing in {timeout:g} s; {smaller}") from None
    if r.returncode != 0:
        why = (r.stderr.decode(errors="replace").strip().splitlines() or [f"exit {r.returncode}"])[0]
        raise DotFailed(f"dot (Graphviz) could not draw the diagram ({why}); {smaller}")
    return r.stdout
