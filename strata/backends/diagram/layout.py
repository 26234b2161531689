"""The renderer-independent layout of an architecture diagram.

`describe(g, level)` turns the graph IR into a `Layout`: boxes, arrows, nested
clusters, a legend and a title.  Mermaid and Graphviz only print it, so levels,
folding, labels, colours and the legend are decided once, here, in phases:

    fold repeats     Fold: which instance of a repeat is drawn for each IR node
    choose units     which box each IR node is drawn in, at this level
    choose clusters  which scopes (stacks, repeats, blocks, components) enclose boxes
    place boxes      label each box and nest it in its cluster
    wire arrows      data, residual and memory arrows between boxes; outputs,
                     tied weights, the distillation teacher
    legend           the palette kinds the boxes use

Levels:
    model   each stack's top-level modules; a repeat is one box "layer × 12"
    block   component granularity (attention, MLP, norms), residual ⊕ nodes
    op      every IR op, components as clusters

Repeats are folded (one instance drawn, its cluster labelled × N) unless
`unfold=True`.  Ids (n0, c0, ...) are generated in topological order, so the
same spec always gives the same text.  Every phase is linear in the size of
the graph (a 2000-layer model unfolded draws in seconds).

    >>> from strata.compiler import build_text
    >>> g = build_text('model m { stack s(ids) { embedding(10, 4) as wte; lm_head(tie=wte) } }')
    >>> layout = describe(g, "model")
    >>> [b.lines[0] for b in layout.boxes]
    ['Input sequence', 'Token Embedding', 'LM Head', 'Output sequence']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from strata.backends.diagram.fold import Fold
from strata.backends.diagram.labels import (
    PALETTE,
    Totals,
    box_label,
    cluster_lines,
    cut,
    human_count,
    model_title,
    teacher_lines,
)
from strata.compiler import ir

__all__ = ["DIRECTIONS", "LEVELS", "PALETTE", "Arrow", "Box", "Cluster", "Layout", "describe",
           "human_count"]

LEVELS = ("model", "block", "op")
DIRECTIONS = ("TB", "LR")


@dataclass
class Box:
    id: str                 # n0, n1, ...: never user text
    key: str                # the IR path (or pseudo path) it stands for
    lines: list[str]        # label, first line is the title; renderers escape
    kind: str               # a PALETTE key
    shape: str = "box"      # box | round | stadium | circle
    cluster: str | None = None


@dataclass
class Arrow:
    src: str
    dst: str
    label: str | None = None
    role: str = "data"      # data | residual | memory | tied | distill


@dataclass
class Cluster:
    id: str                 # c0, c1, ...
    key: str
    lines: list[str]
    parent: str | None = None
    kind: str = "scope"     # stack | repeat | instance | block | component


@dataclass
class Layout:
    title: str
    level: str
    direction: str = "TB"
    boxes: list[Box] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)
    legend: list[tuple[str, str, str, str]] = field(default_factory=list)  # kind, label, fill, stroke
    warnings: list[str] = field(default_factory=list)

    def tree(self) -> dict[str | None, tuple[list[Cluster], list[Box]]]:
        """cluster id (None: the top) -> its sub-clusters and its boxes, in order.

        >>> Layout("t", "op", boxes=[Box("n0", "a", ["a"], "io", cluster="c0")],
        ...        clusters=[Cluster("c0", "s", ["s"])]).tree()[None][0][0].id
        'c0'
        """
        out: dict[str | None, tuple[list[Cluster], list[Box]]] = {None: ([], [])}
        for c in self.clusters:
            out.setdefault(c.id, ([], []))
            out.setdefault(c.parent, ([], []))[0].append(c)
        for b in self.boxes:
            out.setdefault(b.cluster, ([], []))[1].append(b)
        return out


def describe(g: nx.MultiDiGraph, level: str = "block", *, direction: str = "TB",
             unfold: bool = False, groups: list[dict] | None = None) -> Layout:
    """The layout of `g` at `level` (model | block | op); `groups`: `ir.repeat_groups(g)`
    when the caller has it already."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    fold = Fold(g, unfold, groups)
    order = ir.topo_order(g)
    units = choose_units(g, order, level, fold, unfold)
    clusters = choose_clusters(g, level, fold, units, unfold)
    layout = Layout(title=model_title(g), level=level, direction=direction)
    ids = place_boxes(layout, g, units, clusters, fold)
    wire_arrows(layout, g, order, units, fold, ids)
    add_outputs(layout, g, units, ids)
    add_ties(layout, g, order, units, ids)
    add_teacher(layout, g, ids)
    layout.legend = legend(layout)
    return layout


# ------------------------------------------------------------------ choose units

@dataclass
class Units:
    """Which box (unit) each IR node is drawn in.  A unit is an IR path: a node,
    a component, a block or a repeat, depending on the level."""

    level: str
    of: dict[str, str] = field(default_factory=dict)           # IR node -> unit
    drawn: dict[str, list[str]] = field(default_factory=dict)  # unit -> its drawn IR nodes, box order
    every: dict[str, list[str]] = field(default_factory=dict)  # unit -> every IR node it stands for


def choose_units(g: nx.MultiDiGraph, order: list[str], level: str, fold: Fold,
                 unfold: bool) -> Units:
    """model: a stack's top-level module (a repeat instance too, when unfolded);
    block: the component (or the node, for ⊕ and inputs); op: the node."""
    scopes = g.graph.scopes

    def unit(n: str) -> str:
        f = fold(n)
        if level == "op":
            return f
        if level == "model":
            parts = f.split(".")
            u = ".".join(parts[:2])
            if unfold and scopes.get(u, {}).get("kind") == "repeat" and len(parts) > 2:
                u = ".".join(parts[:3])
            return u
        return g.nodes[f].component or f

    units = Units(level)
    for n in order:
        u = unit(n)
        units.of[n] = u
        units.every.setdefault(u, []).append(n)
        if fold(n) == n:
            units.drawn.setdefault(u, []).append(n)
    return units


# ------------------------------------------------------------------ choose clusters

def choose_clusters(g: nx.MultiDiGraph, level: str, fold: Fold, units: Units, unfold: bool
                    ) -> dict[str, str]:
    """scope path -> cluster kind, for the scopes drawn as clusters: stacks;
    below model level repeats, drawn repeat instances and blocks; at op level
    also the components of more than one op."""
    kinds: dict[str, str] = {}
    for path, s in g.graph.scopes.items():
        if s["kind"] == "stack":
            kinds[path] = "stack"
        elif level == "model":
            continue
        elif s["kind"] == "repeat":
            kinds[path] = "repeat"
        elif path in fold.group:  # a repeat instance: a cluster if it is not the only one drawn
            if unfold or (fold.rep[path] == path and not fold.uniform[fold.group[path]]):
                kinds[path] = "instance"
        else:
            kinds[path] = "block"
    if level == "op":
        holding = {p for u in units.drawn for p in _proper_prefixes(u)}
        for c in g.graph.components:
            if fold(c) == c and len(units.every.get(c, [])) != 1 and c in holding:
                kinds[c] = "component"
    return kinds


def _proper_prefixes(path: str) -> list[str]:
    """'a.b.c' -> ['a', 'a.b']."""
    parts = path.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def _enclosing(path: str, clusters: dict[str, str]) -> str | None:
    """The innermost cluster strictly enclosing `path`."""
    p = path
    while "." in p:
        p = p.rpartition(".")[0]
        if p in clusters:
            return p
    return None


# ------------------------------------------------------------------ place boxes

@dataclass
class Ids:
    """Generated ids of what is drawn: box key -> n<i>, cluster key -> c<i>."""

    box: dict[str, str] = field(default_factory=dict)
    cluster: dict[str, str] = field(default_factory=dict)

    def new_box(self, key: str) -> str:
        self.box[key] = f"n{len(self.box)}"
        return self.box[key]


def place_boxes(layout: Layout, g: nx.MultiDiGraph, units: Units, clusters: dict[str, str],
                fold: Fold) -> Ids:
    """One labelled box per unit, in topological order; a cluster is created
    (parents first) when the first box inside it is placed."""
    ids = Ids()
    totals = Totals(g)

    def cluster_id(key: str) -> str:
        if key not in ids.cluster:
            parent = _enclosing(key, clusters)
            parent_id = cluster_id(parent) if parent else None
            ids.cluster[key] = f"c{len(ids.cluster)}"
            layout.clusters.append(Cluster(ids.cluster[key], key,
                                           cluster_lines(g, key, clusters[key], fold, totals),
                                           parent_id, clusters[key]))
        return ids.cluster[key]

    for u, members in units.drawn.items():
        lines, kind, shape = box_label(g, u, members, units.every[u], units.level, fold, totals)
        if units.level == "model" and "." in u and u.split(".")[0] in clusters:
            parent = u.split(".")[0]  # the stack, also for an unfolded instance h.3
        else:
            parent = _enclosing(u, clusters)
        layout.boxes.append(Box(ids.new_box(u), u, lines, kind, shape,
                                cluster_id(parent) if parent else None))
    return ids


# ------------------------------------------------------------------ wire arrows

def wire_arrows(layout: Layout, g: nx.MultiDiGraph, order: list[str], units: Units, fold: Fold,
                ids: Ids) -> None:
    """One arrow per pair of boxes an IR edge joins, labelled with the shape;
    residual skips dashed, a stack reading another's output (memory) bold.
    Edges from one repeat instance to the next are not drawn when folded."""
    seen: dict[tuple[str, str], Arrow] = {}
    stacks = {s["name"] for s in g.graph.stacks}
    pos = {n: i for i, n in enumerate(order)}
    for u, v, e in sorted(g.edges(data=True), key=lambda t: (pos[t[1]], t[2]["port"], pos[t[0]])):
        if fold.crosses(u, v):
            continue
        a, b = units.of[u], units.of[v]
        if (a, b) in seen:
            if seen[(a, b)].role == "residual" and not _is_skip(g, v, e):
                seen[(a, b)].role = "data"  # the same boxes also joined by a plain edge
            continue
        if a == b:
            continue
        role, label = "data", ir.format_shape(e["shape"])
        su, sv = u.split(".")[0], v.split(".")[0]
        if su != sv and su in stacks:
            role, label = "memory", f"memory {label}"
        elif _is_skip(g, fold(v), e):
            role = "residual"
        seen[(a, b)] = Arrow(ids.box[a], ids.box[b], label, role)
        layout.arrows.append(seen[(a, b)])


def _is_skip(g: nx.MultiDiGraph, v: str, e: dict) -> bool:
    """e -> v is the skip input (port 0) of a residual add."""
    dv = g.nodes[v]
    return dv.op == "add" and dv.attrs.get("why") == "residual" and e["port"] == 0


def add_outputs(layout: Layout, g: nx.MultiDiGraph, units: Units, ids: Ids) -> None:
    """A stadium box per model output, inside its stack, with the output's shape."""
    for name, node in g.graph.outputs.items():
        if node not in units.of:
            continue
        key = f"<output:{name}>"
        title = "Output sequence" if name == "output" else f"Output: {name}"
        stack = node.split(".")[0]
        layout.boxes.append(Box(ids.new_box(key), key, [cut(title)], "io", "stadium",
                                ids.cluster.get(stack)))
        shape = ir.output_shape(g, node)
        if shape is None:  # a branch output: shape-preserving last op (pooler's tanh)
            shape = next((e["shape"] for _, _, e in g.in_edges(node, data=True)), None)
        layout.arrows.append(Arrow(ids.box[units.of[node]], ids.box[key],
                                   ir.format_shape(shape) if shape else None, "data"))


def add_ties(layout: Layout, g: nx.MultiDiGraph, order: list[str], units: Units, ids: Ids
             ) -> None:
    """A dotted line from a weight's owner to each box that shares it."""
    seen: set[tuple[str, str]] = set()
    for n in order:
        for target in g.nodes[n].tied.values():
            src = target.rpartition(".")[0]
            if src not in units.of:
                continue
            a, b = units.of[src], units.of[n]
            if a != b and (a, b) not in seen:
                seen.add((a, b))
                layout.arrows.append(Arrow(ids.box[a], ids.box[b], "tied weight", "tied"))


def add_teacher(layout: Layout, g: nx.MultiDiGraph, ids: Ids) -> None:
    """The distillation teacher (after passes): a box outside every stack, and an
    arrow to the model's output."""
    dist = g.graph.distill
    if not dist:
        return
    teacher = Box(ids.new_box("<teacher>"), "<teacher>", teacher_lines(dist), "teacher", "round")
    layout.boxes.append(teacher)
    target = ids.box.get("<output:output>") or layout.boxes[0].id
    layout.arrows.append(Arrow(teacher.id, target,
                               f"distill T={dist['temperature']:g}, α={dist['alpha']:g}",
                               "distill"))


# ------------------------------------------------------------------ legend

def legend(layout: Layout) -> list[tuple[str, str, str, str]]:
    """(kind, label, fill, stroke) of each palette kind a box uses, in palette order."""
    used = {b.kind for b in layout.boxes}
    return [(k, *PALETTE[k]) for k in PALETTE if k in used]
