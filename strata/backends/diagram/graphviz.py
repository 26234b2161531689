"""Graphviz (dot) diagrams from the graph IR (via `layout.describe`).

A cluster per scope (stack, repeat, block; components at op level), HTML-like
labels with every piece of user text HTML-escaped, colours by component kind
and a legend.  `to_dot` needs only the `graphviz` python package; `render_bytes`
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

from strata.backends.diagram.layout import Layout, describe

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


def _graphviz():
    try:
        import graphviz
    except ImportError:
        raise DotMissing("the `graphviz` python package is needed for dot output: "
                         "pip install 'strata[diagrams]'") from None
    return graphviz


def _html(lines: list[str], bold_first: bool = True) -> str:
    parts = [html.escape(x, quote=True) for x in lines]
    if bold_first and parts:
        parts[0] = f"<B>{parts[0]}</B>"
    return "<" + "<BR/>".join(parts) + ">"


def render(d: Layout) -> str:
    """The dot source of a layout."""
    gv = _graphviz()
    dot = gv.Digraph("strata")
    dot.attr(rankdir=d.direction, label=_html([d.title]), labelloc="t", fontname="Helvetica",
             newrank="true", nodesep="0.3", ranksep="0.35")
    dot.attr("node", fontname="Helvetica", fontsize="11", style="filled,rounded", shape="box")
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
                repeat = c.kind in ("repeat", "instance")
                sg.attr(label=_html(c.lines), style="rounded,filled" if repeat else "rounded",
                        fillcolor="#f3f6fb" if repeat else "white",
                        color="#5a6f94" if repeat else "#999999",
                        penwidth="2" if repeat else "1", fontname="Helvetica", fontsize="11")
                emit(sg, c.id)

    emit(dot, None)
    if d.legend:
        # One table node: compact, and it does not take part in the layout's ranks.
        rows = "".join(f'<TR><TD BGCOLOR="{fill}" COLOR="{stroke}" BORDER="1" WIDTH="18"></TD>'
                       f'<TD ALIGN="LEFT">{html.escape(label)}</TD></TR>'
                       for _, label, fill, stroke in d.legend)
        dot.node("legend", f'<<TABLE BORDER="1" COLOR="#bbbbbb" CELLBORDER="0" CELLSPACING="3" '
                           f'CELLPADDING="2"><TR><TD COLSPAN="2"><B>Legend</B></TD></TR>{rows}'
                           f'</TABLE>>', shape="plaintext", style="", fontsize="9")
    for e in d.arrows:
        attrs = dict(EDGE_STYLES[e.role])
        if e.label:
            attrs["label"] = _html([e.label], False)
        if e.role in ("tied", "distill"):
            attrs["constraint"] = "false"
        dot.edge(e.src, e.dst, **attrs)
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
    r = subprocess.run([exe, f"-T{fmt}"], input=source.encode(), capture_output=True,
                       timeout=timeout, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"dot failed: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout
