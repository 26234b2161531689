"""A renderer-independent description of an architecture diagram.

`describe(g, level)` turns the graph IR into a `Diagram`: boxes (`DNode`),
arrows (`DEdge`), nested clusters, a legend and a title.  Mermaid and Graphviz
only print it, so levels, folding, labels, colours and the legend are decided
once, here.

Levels:
    model   each stack's top-level modules; a repeat is one box "layer × 12"
    block   component granularity (attention, MLP, norms), residual ⊕ nodes
    op      every IR op, components as clusters

Repeats are folded (one instance drawn, its cluster labelled × N) unless
`unfold=True`.  Ids (n0, c0, ...) are generated in topological order, so the
same spec always gives the same text.

    >>> from strata.compiler import build_text
    >>> g = build_text('model m { stack s(ids) { embedding(10, 4) as wte; lm_head(tie=wte) } }')
    >>> d = describe(g, "model")
    >>> [n.lines[0] for n in d.nodes]
    ['Input sequence', 'Token Embedding', 'LM Head', 'Output sequence']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from strata.backends.diagram.labels import (
    MAX_LINE,
    PALETTE,
    cluster_lines,
    cut,
    human_count,
    model_title,
    unit_label,
)
from strata.compiler import ir

__all__ = ["DIRECTIONS", "LEVELS", "PALETTE", "DCluster", "DEdge", "DNode", "Diagram",
           "describe", "human_count"]

LEVELS = ("model", "block", "op")
DIRECTIONS = ("TB", "LR")


@dataclass
class DNode:
    id: str                 # n0, n1, ...: never user text
    key: str                # the IR path (or pseudo path) it stands for
    lines: list[str]        # label, first line is the title; renderers escape
    kind: str               # a PALETTE key
    shape: str = "box"      # box | round | stadium | circle
    cluster: str | None = None


@dataclass
class DEdge:
    src: str
    dst: str
    label: str | None = None
    role: str = "data"      # data | residual | memory | tied | distill


@dataclass
class DCluster:
    id: str                 # c0, c1, ...
    key: str
    lines: list[str]
    parent: str | None = None
    kind: str = "scope"


@dataclass
class Diagram:
    title: str
    level: str
    direction: str = "TB"
    nodes: list[DNode] = field(default_factory=list)
    edges: list[DEdge] = field(default_factory=list)
    clusters: list[DCluster] = field(default_factory=list)
    legend: list[tuple[str, str, str, str]] = field(default_factory=list)  # kind, label, fill, stroke
    warnings: list[str] = field(default_factory=list)

    def children(self, cluster: str | None) -> tuple[list[DCluster], list[DNode]]:
        return ([c for c in self.clusters if c.parent == cluster],
                [n for n in self.nodes if n.cluster == cluster])


class _Fold:
    """Maps nodes of repeat instances onto the instance drawn for them."""

    def __init__(self, g: nx.MultiDiGraph, unfold: bool):
        self.rep: dict[str, str] = {}       # instance path -> drawn instance path
        self.group: dict[str, str] = {}     # instance path -> repeat group path
        self.count: dict[str, int] = {}     # drawn instance -> how many it stands for
        self.uniform: dict[str, bool] = {}  # group -> one variant
        self.index: dict[str, int] = {}     # instance -> its position in the repeat
        self.members: dict[str, list[str]] = {}  # drawn instance -> the instances it stands for
        for r in ir.repeat_groups(g):
            self.uniform[r["path"]] = r["uniform"]
            self.index.update((inst, i) for i, inst in enumerate(r["instances"]))
            for variant in r["variants"]:
                self.members[variant[0]] = variant
                for inst in variant:
                    self.group[inst] = r["path"]
                    self.rep[inst] = inst if unfold else variant[0]
                self.count[variant[0]] = 1 if unfold else len(variant)
            if unfold:
                for inst in r["instances"]:
                    self.count[inst] = 1
        self._cache: dict[str, str] = {}

    def __call__(self, n: str) -> str:
        hit = self._cache.get(n)
        if hit is not None:
            return hit
        out = n
        i = 0
        while True:
            i = out.find(".", i + 1)
            prefix = out if i < 0 else out[:i]
            r = self.rep.get(prefix)
            if r is not None and r != prefix:
                out = r + out[len(prefix):]
                i = len(r)
            if i < 0:
                break
        self._cache[n] = out
        return out

    def instances(self, n: str) -> dict[str, str]:
        """repeat group -> the instance of it that holds n."""
        out = {}
        parts = n.split(".")
        for k in range(1, len(parts) + 1):
            p = ".".join(parts[:k])
            if p in self.group:
                out[self.group[p]] = p
        return out

    def crosses(self, u: str, v: str) -> bool:
        """u -> v is the layer-to-layer chain of a repeat that folding turns into a
        loop (same drawn instance) or a backward edge (to an earlier variant)."""
        iu = self.instances(u)
        if not iu:
            return False
        iv = self.instances(v)
        for g, inst in iu.items():
            if g in iv and iv[g] != inst:
                return self.index[self.rep[inst]] >= self.index[self.rep[iv[g]]]
        return False


# ------------------------------------------------------------------ labels

def describe(g: nx.MultiDiGraph, level: str = "block", *, direction: str = "TB",
             unfold: bool = False) -> Diagram:
    """The diagram of `g` at `level` (model | block | op)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    fold = _Fold(g, unfold)
    comps = g.graph["components"]
    scopes = g.graph["scopes"]
    stacks = [s["name"] for s in g.graph["stacks"]]
    order = ir.topo_order(g)

    # -- which box each IR node belongs to
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
        c = g.nodes[f]["component"]
        return c if c else f

    units: dict[str, list[str]] = {}   # unit -> IR nodes drawn in it (drawn instances only)
    every: dict[str, list[str]] = {}   # unit -> all IR nodes it stands for
    unit_of: dict[str, str] = {}
    for n in order:
        u = unit(n)
        unit_of[n] = u
        every.setdefault(u, []).append(n)
        if fold(n) == n:
            units.setdefault(u, []).append(n)

    # -- clusters: stacks; below model level also repeats, blocks (and components at op level)
    cluster_keys: dict[str, dict] = {}
    for path, s in scopes.items():
        if s["kind"] == "stack":
            cluster_keys[path] = {"kind": "stack"}
        elif level == "model":
            continue
        elif s["kind"] == "repeat":
            cluster_keys[path] = {"kind": "repeat"}
        elif path in fold.group:  # a repeat instance
            grp = fold.group[path]
            if unfold or (fold.rep[path] == path and not fold.uniform[grp]):
                cluster_keys[path] = {"kind": "instance"}
        else:
            cluster_keys[path] = {"kind": "block"}
    if level == "op":
        for c in comps:
            if fold(c) == c and len(every.get(c, [])) != 1:
                cluster_keys[c] = {"kind": "component"}
        for c in list(cluster_keys):
            if cluster_keys[c]["kind"] == "component" and not any(
                    u.startswith(c + ".") for u in units):
                del cluster_keys[c]

    def parent_cluster(path: str) -> str | None:
        p = path
        while "." in p:
            p = p.rpartition(".")[0]
            if p in cluster_keys:
                return p
        return None

    d = Diagram(title=model_title(g), level=level, direction=direction)
    cid: dict[str, str] = {}

    def ensure_cluster(key: str) -> str:
        if key in cid:
            return cid[key]
        par = parent_cluster(key)
        pid = ensure_cluster(par) if par else None
        cid[key] = f"c{len(cid)}"
        d.clusters.append(DCluster(cid[key], key, cluster_lines(g, key, cluster_keys[key]["kind"],
                                                                 fold, every), pid,
                                   cluster_keys[key]["kind"]))
        return cid[key]

    nid: dict[str, str] = {}
    kinds_used: list[str] = []

    def use_kind(k):
        if k not in kinds_used:
            kinds_used.append(k)

    for u, members in units.items():
        lines, kind, shape = unit_label(g, u, members, every[u], level, fold)
        par = parent_cluster(u) if level != "model" else (u.split(".")[0] if "." in u else None)
        if par is not None and par not in cluster_keys:
            par = parent_cluster(u)
        nid[u] = f"n{len(nid)}"
        d.nodes.append(DNode(nid[u], u, lines, kind, shape, ensure_cluster(par) if par else None))
        use_kind(kind)

    # -- edges between boxes
    seen: dict[tuple[str, str], int] = {}
    stack_of = {n: n.split(".")[0] for n in order}
    pos = {n: i for i, n in enumerate(order)}
    for u, v, e in sorted(g.edges(data=True), key=lambda t: (pos[t[1]], t[2]["port"], pos[t[0]])):
        if fold.crosses(u, v):
            continue
        a, b = unit_of[u], unit_of[v]
        if a == b or (a, b) in seen:
            if (a, b) in seen:
                k = seen[(a, b)]
                if d.edges[k].role == "residual" and not _is_skip(g, u, v, e):
                    d.edges[k].role = "data"
            continue
        role = "data"
        label = ir.format_shape(e["shape"])
        if stack_of[u] != stack_of[v] and stack_of[u] in stacks:
            role, label = "memory", f"memory {label}"
        elif _is_skip(g, fold(u), fold(v), e):
            role = "residual"
        seen[(a, b)] = len(d.edges)
        d.edges.append(DEdge(nid[a], nid[b], label, role))

    # -- outputs
    for name, node in g.graph["outputs"].items():
        if node not in unit_of:
            continue
        key = f"<output:{name}>"
        nid[key] = f"n{len(nid)}"
        title = "Output sequence" if name == "output" else f"Output: {name}"
        stack = stack_of.get(node)
        d.nodes.append(DNode(nid[key], key, [cut(title)], "io", "stadium",
                             cid.get(stack) if stack in cid else None))
        shape = ir.output_shape(g, node)
        if shape is None:  # a branch output: shape-preserving last op (pooler's tanh)
            shape = next((e["shape"] for _, _, e in g.in_edges(node, data=True)), None)
        d.edges.append(DEdge(nid[unit_of[node]], nid[key],
                             ir.format_shape(shape) if shape else None, "data"))

    # -- tied weights
    for n in order:
        for target in g.nodes[n]["tied"].values():
            src = target.rpartition(".")[0]
            if src not in unit_of:
                continue
            a, b = unit_of[src], unit_of[n]
            if a != b and (a, b, "tied") not in seen:
                seen[(a, b, "tied")] = len(d.edges)
                d.edges.append(DEdge(nid[a], nid[b], "tied weight", "tied"))

    # -- distillation (after passes)
    dist = g.graph.get("distill")
    if dist:
        who = dist.get("teacher_name") or dist["teacher"]
        text = " ".join(f"Teacher: {who}".split())
        lines = [text[i:i + MAX_LINE] for i in range(0, min(len(text), 3 * MAX_LINE), MAX_LINE)]
        lines[-1] = cut(text[(len(lines) - 1) * MAX_LINE:])
        if dist.get("teacher_parameters"):
            lines.append(f"{human_count(dist['teacher_parameters'])} parameters")
        nid["<teacher>"] = f"n{len(nid)}"
        d.nodes.append(DNode(nid["<teacher>"], "<teacher>", lines, "teacher", "round", None))
        use_kind("teacher")
        target = next((nid[k] for k in nid if k == "<output:output>"), None) or d.nodes[0].id
        d.edges.append(DEdge(nid["<teacher>"], target,
                             f"distill T={dist['temperature']:g}, α={dist['alpha']:g}", "distill"))

    d.legend = [(k, *PALETTE[k]) for k in PALETTE if k in kinds_used]
    return d


def _is_skip(g: nx.MultiDiGraph, u: str, v: str, e: dict) -> bool:
    dv = g.nodes[v]
    return dv["op"] == "add" and dv["attrs"].get("why") == "residual" and e["port"] == 0

