"""Graph rewriting helpers shared by the passes.

Passes never mutate their input: `copy_graph` (strata.compiler.ir_copy) makes a
copy sharing no container with it, and
`replace_node` splices new nodes in at the old node's position, so the
insertion order (the spec's order, which `ir.topo_order` keeps) survives.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import networkx as nx

from strata.compiler import ir
from strata.compiler.ir_copy import copy_graph
from strata.compiler.select import select
from strata.passes.pass_base import PassError, carried_marks

if TYPE_CHECKING:  # networkx is imported when a graph is rebuilt, not by `strata check`
    import networkx as nx

__all__ = ["PassError", "copy_graph", "fold_layers", "fuse_linears", "recount", "rename_output",
           "reorder", "select", "selected_nodes", "splice", "Splices", "tie_targets", "weight_linears"]


def selected_nodes(g: nx.MultiDiGraph, on: str | None, op: str = "linear") -> list[str]:
    """IR nodes of `op` inside the components (or node globs) a selector matches,
    in graph order."""
    picked = set(select(g, on))
    out = []
    for n, d in g.nodes(data=True):
        if d.op != op:
            continue
        if n in picked or (d.component in picked):
            out.append(n)
    return out


def weight_linears(g: nx.MultiDiGraph, on: str | None) -> list[str]:
    """Selected linears that own their weight: a tied head's weight belongs to
    the embedding it is tied to, so passes leave it alone."""
    tied = tie_targets(g)
    return [n for n in selected_nodes(g, on) if "weight" in g.nodes[n].params
            and f"{n}.weight" not in tied]


def reorder(g: nx.MultiDiGraph, order: Iterable[str]) -> nx.MultiDiGraph:
    """`g` itself, its nodes put in `order` (every node exactly once): the pass's
    own copy (copy_graph), so no second copy is made.  The graph is the one
    rebuilding it node by node and edge by edge gave: successors in their order,
    predecessors in the order of their sources before the move (the edges were
    listed in it), parallel edges keyed 0, 1, ... in their order."""
    node, succ, pred = g._node, g._succ, g._pred  # networkx's own dicts: its views read them
    rank = {n: i for i, n in enumerate(node)}
    for n in order:  # moved to the end in turn: the dicts end in `order`
        node[n] = node.pop(n)
        succ[n] = succ.pop(n)
        p = pred.pop(n)
        if len(p) > 1:
            p = {u: p[u] for u in sorted(p, key=rank.__getitem__)}  # the same key dicts: _succ[u][n] is _pred[n][u]
        pred[n] = p
    for nbrs in succ.values():
        for keys in nbrs.values():
            if len(keys) > 1 or 0 not in keys:  # a gap left by a removed parallel edge
                data = list(keys.values())
                keys.clear()
                keys.update(enumerate(data))
    return g


def splice(g: nx.MultiDiGraph, old: Iterable[str], at: str, new: list[str]) -> nx.MultiDiGraph:
    """Put the (already added) nodes `new` where `at` stood, and drop `old`."""
    old = set(old)
    new_set = set(new)
    order = []
    for n in g.nodes:
        if n == at:
            order.extend(new)
        if n in old or n in new_set:
            continue
        order.append(n)
    g.remove_nodes_from(old)
    return reorder(g, order)


class Splices:
    """Replacements a pass makes, put in place in one reorder when it ends: a
    reorder walks the whole graph, so one per replacement made passes quadratic in
    the number of layers.  Until `apply`, the old nodes stay where they are."""

    def __init__(self) -> None:
        self.at: dict[str, list[str]] = {}
        self.old: set[str] = set()

    def add(self, old: Iterable[str], at: str, new: list[str]) -> None:
        self.at[at] = list(new)
        self.old |= set(old)

    def apply(self, g: nx.MultiDiGraph) -> nx.MultiDiGraph:
        if not self.at:
            return g
        new = {n for nodes in self.at.values() for n in nodes}
        order = []
        for n in g.nodes:
            if n in self.at:
                order.extend(self.at[n])
            if n in self.old or n in new:
                continue
            order.append(n)
        g.remove_nodes_from(self.old)
        return reorder(g, order)


def rename_output(g: nx.MultiDiGraph, old: str, new: str) -> None:
    """Point graph-level references (outputs, stack outputs) at a replacement node."""
    for k, v in g.graph.outputs.items():
        if v == old:
            g.graph.outputs[k] = new
    for s in g.graph.stacks:
        if s["output"] == old:
            s["output"] = new
    if "out_shape" in g.nodes[old]:
        g.nodes[new].out_shape = g.nodes[old].out_shape


def tie_targets(g: nx.MultiDiGraph) -> set[str]:
    """state_dict keys other nodes are tied to (their shapes must not change)."""
    return {t for _, d in g.nodes(data=True) for t in d.tied.values()}


def recount(g: nx.MultiDiGraph) -> nx.MultiDiGraph:
    g.graph.parameters = ir.param_count(g)
    return g


def fuse_linears(g: nx.MultiDiGraph, parts: list[str], new_id: str, role: str,
                 splices: Splices | None = None) -> nx.MultiDiGraph:
    """Replace linears `parts` (same input, same in-width) by one linear `new_id`
    whose weight stacks theirs [sum(out), in], followed by a `split` op
    (attrs.sizes); each out-edge of the split carries `part`, the index of the
    slice it carries.  With `splices`, the replacement is recorded there (apply
    it when the pass ends) and `g` returned; else a new graph order is returned."""
    first = g.nodes[parts[0]]
    (src, e_in), = ir.operands(g, parts[0])
    sizes = [g.nodes[p].attrs["out"] for p in parts]
    d_in = first.attrs["in"]
    bias = any("bias" in g.nodes[p].params for p in parts)
    total = sum(sizes)
    params = {"weight": (total, d_in)}
    if bias:
        params["bias"] = (total,)
    roles = [g.nodes[p].attrs.get("role", p.rpartition(".")[2]) for p in parts]
    shape_out = e_in["shape"][:-1] + (total,)
    carried = carried_marks()
    marks = {k: v for k, v in first.attrs.items() if k in carried
             and all(g.nodes[p].attrs.get(k) == v for p in parts)}
    ir.add_node(g, new_id, "linear", scope=first.scope, component=first.component,
                kind=first.kind, span=first["span"],
                attrs={"in": d_in, "out": total, "bias": bias, "role": role, "fused": roles, **marks},
                params=params)
    split_id = f"{new_id}_split"
    ir.add_node(g, split_id, "split", scope=first.scope, component=first.component,
                kind=first.kind, span=first["span"], attrs={"sizes": sizes, "parts": roles})
    ir.connect(g, src, new_id, e_in["shape"], e_in["dtype"], 0)
    ir.connect(g, new_id, split_id, shape_out, "float", 0)
    for i, p in enumerate(parts):
        for _, dst, d in list(g.out_edges(p, data=True)):
            g.add_edge(split_id, dst, **{**d, "part": i})
    if splices is not None:
        splices.add(parts, parts[0], [new_id, split_id])
        return g
    return splice(g, parts, parts[0], [new_id, split_id])


def fold_layers(g: nx.MultiDiGraph, marked: dict[str, object]) -> dict[str, object]:
    """node -> value, with layer indices folded into `*` where every instance
    of a repeat has the node with the same value (`decoder.h.*.mlp.up`), in
    the spec's order."""
    out = dict(marked)
    for r in g.graph.repeats:
        insts = r["instances"]
        if len(insts) < 2 or not all(i.rpartition(".")[0] == r["path"] for i in insts):
            continue
        by_suffix: dict[str, dict[str, object]] = {}
        for n, v in out.items():
            for inst in insts:
                if n.startswith(inst + "."):
                    by_suffix.setdefault(n[len(inst) + 1:], {})[inst] = v
        for suffix, seen in by_suffix.items():
            values = list(seen.values())
            if len(seen) == len(insts) and all(v == values[0] for v in values):
                for inst in insts:
                    del out[f"{inst}.{suffix}"]
                out[f"{r['path']}.*.{suffix}"] = values[0]
    index = {n: i for i, n in enumerate(g.nodes)}  # the spec's order: the first instance's place
    return dict(sorted(out.items(), key=lambda kv: index.get(kv[0].replace("*", "0"), len(index))))
