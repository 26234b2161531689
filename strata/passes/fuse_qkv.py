"""fuse_qkv: one matmul for the q, k, v projections of each attention.

    q = x Wq^T, k = x Wk^T, v = x Wv^T  ->  qkv = x [Wq; Wk; Wv]^T, split(qkv)

Projections are fused when they read the same tensor: all three in
self-attention, k and v (as `kv`) in cross-attention.  Parameter count is
unchanged; the checkpoint transform concatenates the weights along dim 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from strata.compiler import ir
from strata.passes._rewrite import copy_graph, fuse_linears, recount, select

ROLES = ("q", "k", "v")


@dataclass(frozen=True)
class FuseQKV:
    on: str | None = None
    name: str = "fuse_qkv"

    def run(self, graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
        g = copy_graph(graph)
        comps = [c for c in select(g, self.on) if g.graph["components"].get(c, {}).get("category")
                 == "attention"]
        for comp in comps:
            by_src: dict[str, list[str]] = {}
            for r in ROLES:
                n = f"{comp}.{r}"
                if n in g and g.nodes[n]["op"] == "linear":
                    (src, _), = ir.operands(g, n)
                    by_src.setdefault(src, []).append(n)
            for parts in by_src.values():
                if len(parts) < 2:
                    continue
                role = "".join(g.nodes[p]["attrs"]["role"] for p in parts)
                g = fuse_linears(g, parts, f"{comp}.{role}", role)
                g.graph["components"][comp].setdefault("facts", {})["fused"] = role
        return recount(g)
