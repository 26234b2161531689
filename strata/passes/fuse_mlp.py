"""fuse_mlp: one matmul for the gate and up projections of gated MLPs (SwiGLU,
GeGLU): gate_up = x [Wg; Wu]^T, then split into gate and up.  Parameter count
is unchanged; the weight transform concatenates along dim 0 (and splits back)."""

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


class FuseMLPOptions(Options):
    """Fuse the gate and up projections of gated MLPs into one matmul."""

    on: str | None = Field(None, description="module path glob or component kind; default all")


class FuseMLP(FusionPass):
    name = "fuse_mlp"
    options = FuseMLPOptions
    lowered = "one matmul for gate and up"
    what = "gate/up projections"

    def run(self, graph: "nx.MultiDiGraph", ctx=None) -> "nx.MultiDiGraph":
        g = copy_graph(graph)
        comps = [c for c in select(g, self.o.on) if g.graph.components.get(c, {}).get("kind")
                 == "mlp"]
        fused, adapted, splices = {}, [], Splices()
        for comp in comps:
            gate, up = f"{comp}.gate", f"{comp}.up"
            if gate not in g or up not in g:
                continue  # not gated: nothing to fuse
            if any(g.nodes[n].op != "linear" for n in (gate, up)):
                continue
            if any(LoRA.adapter(g.nodes[n].attrs) for n in (gate, up)):
                adapted += [n for n in (gate, up) if LoRA.adapter(g.nodes[n].attrs)]  # the report says so
                continue
            if ir.operands(g, gate)[0][0] != ir.operands(g, up)[0][0]:
                continue
            sizes = [g.nodes[gate].attrs["out"], g.nodes[up].attrs["out"]]
            g = fuse_linears(g, [gate, up], f"{comp}.gate_up", "gate_up", splices)
            g.graph.components[comp].setdefault("facts", {})["fused"] = "gate_up"
            fused[f"{comp}.gate_up"] = {"parts": [gate, up], "sizes": sizes}
        return self.done(splices.apply(g), {"fused": fused, "adapted": adapted})
