"""fuse_qkv: one matmul for the q, k, v projections of each attention.

    q = x Wq^T, k = x Wk^T, v = x Wv^T  ->  qkv = x [Wq; Wk; Wv]^T, split(qkv)

Projections are fused when they read the same tensor: all three in
self-attention, k and v (as `kv`) in cross-attention.  Parameter count is
unchanged; the weight transform concatenates along dim 0 (and splits back).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from strata.compiler import ir
from strata.components.component_base import Options
from strata.passes._fusion import FusionPass
from strata.passes._rewrite import Splices, copy_graph, fuse_linears, select
from strata.passes.lora import LoRA

if TYPE_CHECKING:
    import networkx as nx

ROLES = ("q", "k", "v")


class FuseQKVOptions(Options):
    """Fuse the q, k, v projections of each attention into one matmul."""

    on: str | None = Field(None, description="module path glob or component kind; default all")


class FuseQKV(FusionPass):
    name = "fuse_qkv"
    options = FuseQKVOptions
    lowered = "one matmul for q, k, v (qkv / kv)"
    what = "q/k/v projections"

    def run(self, graph: "nx.MultiDiGraph", ctx=None) -> "nx.MultiDiGraph":
        g = copy_graph(graph)
        comps = [c for c in select(g, self.o.on) if g.graph.components.get(c, {}).get("category")
                 == "attention"]
        fused, adapted, splices = {}, [], Splices()
        for comp in comps:
            by_src: dict[str, list[str]] = {}
            for r in ROLES:
                n = f"{comp}.{r}"
                if n not in g or g.nodes[n].op != "linear":
                    continue
                if LoRA.adapter(g.nodes[n].attrs):
                    adapted.append(n)  # left unfused: the report says so
                else:
                    (src, _), = ir.operands(g, n)
                    by_src.setdefault(src, []).append(n)
            for parts in by_src.values():
                if len(parts) < 2:
                    continue
                role = "".join(g.nodes[p].attrs["role"] for p in parts)
                sizes = [g.nodes[p].attrs["out"] for p in parts]
                g = fuse_linears(g, parts, f"{comp}.{role}", role, splices)
                g.graph.components[comp].setdefault("facts", {})["fused"] = role
                fused[f"{comp}.{role}"] = {"parts": parts, "sizes": sizes}
        return self.done(splices.apply(g), {"fused": fused, "adapted": adapted})
