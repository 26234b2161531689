"""fuse_mlp: one matmul for the gate and up projections of gated MLPs (SwiGLU,
GeGLU): gate_up = x [Wg; Wu]^T, then split into gate and up.  Parameter count
is unchanged; the checkpoint transform concatenates the weights along dim 0."""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from strata.compiler import ir
from strata.passes._rewrite import copy_graph, fuse_linears, recount, select


@dataclass(frozen=True)
class FuseMLP:
    on: str | None = None
    name: str = "fuse_mlp"

    def run(self, graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
        g = copy_graph(graph)
        comps = [c for c in select(g, self.on) if g.graph["components"].get(c, {}).get("kind")
                 == "mlp"]
        for comp in comps:
            gate, up = f"{comp}.gate", f"{comp}.up"
            if gate not in g or up not in g:
                continue  # not gated: nothing to fuse
            if ir.operands(g, gate)[0][0] != ir.operands(g, up)[0][0]:
                continue
            g = fuse_linears(g, [gate, up], f"{comp}.gate_up", "gate_up")
            g.graph["components"][comp].setdefault("facts", {})["fused"] = "gate_up"
        return recount(g)
