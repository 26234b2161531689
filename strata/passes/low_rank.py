"""low_rank: replace a linear W [out, in] by two of rank r:

    y = x W^T  ->  y = (x A^T) B^T,  A = `<name>.a` [r, in],  B = `<name>.b` [out, r]

The original node is removed; `<name>.a` takes its input and `<name>.b` (which
keeps the bias) feeds its consumers, so state_dict keys read `q.a.weight`,
`q.b.weight`, `q.b.bias`.  Parameters change by r*(in + out) - in*out per layer.
Layers where r >= min(in, out) (no saving) and tied weights are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from strata.compiler import ir
from strata.passes._rewrite import (
    PassError,
    copy_graph,
    recount,
    rename_output,
    selected_nodes,
    splice,
    tie_targets,
)


@dataclass(frozen=True)
class LowRank:
    rank: int
    on: str | None = None
    name: str = "low_rank"

    def run(self, graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
        g = copy_graph(graph)
        tied = tie_targets(g)
        done = 0
        for n in selected_nodes(g, self.on):
            d = g.nodes[n]
            if "weight" not in d["params"] or f"{n}.weight" in tied:
                continue
            out, d_in = d["params"]["weight"]
            if self.rank >= min(out, d_in):
                continue
            g = self._factor(g, n, out, d_in)
            comp = g.graph["components"].get(n)
            if comp is not None:  # the whole component is this linear: a LowRankLinear
                comp.setdefault("facts", {})["low_rank"] = self.rank
            done += 1
        if not done:
            raise PassError(f"low_rank(rank={self.rank}): no selected linear layer is larger than "
                            f"rank {self.rank} in both dimensions")
        return recount(g)

    def _factor(self, g, n, out, d_in):
        d = g.nodes[n]
        (src, e_in), = ir.operands(g, n)
        a, b = f"{n}.a", f"{n}.b"
        base = {"in": d_in, "out": out, "rank": self.rank, "role": d["attrs"].get("role")}
        common = {"scope": d["scope"], "component": d["component"], "kind": d["kind"],
                  "span": d["span"]}
        ir.add_node(g, a, "linear", attrs={**base, "in": d_in, "out": self.rank, "bias": False,
                                           "low_rank": "a"},
                    params={"weight": (self.rank, d_in)}, **common)
        params_b = {"weight": (out, self.rank)}
        if "bias" in d["params"]:
            params_b["bias"] = d["params"]["bias"]
        attrs_b = {k: v for k, v in d["attrs"].items() if k not in ("in",)}
        ir.add_node(g, b, "linear", attrs={**attrs_b, "in": self.rank, "rank": self.rank,
                                           "low_rank": "b"}, params=params_b, **common)
        ir.connect(g, src, a, e_in["shape"], e_in["dtype"], 0)
        ir.connect(g, a, b, e_in["shape"][:-1] + (self.rank,), "float", 0)
        for _, dst, e in list(g.out_edges(n, data=True)):
            g.add_edge(b, dst, **e)
        rename_output(g, n, b)
        return splice(g, [n], n, [a, b])
