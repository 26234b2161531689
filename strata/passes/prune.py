"""prune: mark linear layers for pruning: attrs["pruned"] = amount (the fraction
of weights zeroed, magnitude) or of rows removed (structured), and
attrs["prune_method"].  Shapes stay (zeros are stored), so `parameters` is
unchanged; g.graph["nonzero_parameters"] counts what remains."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import networkx as nx

from strata.passes._rewrite import copy_graph, recount, selected_nodes


@dataclass(frozen=True)
class Prune:
    amount: float
    method: str = "magnitude"
    on: str | None = None
    name: str = "prune"

    def run(self, graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
        g = copy_graph(graph)
        removed = 0
        for n in selected_nodes(g, self.on):
            d = g.nodes[n]
            if "weight" not in d["params"]:
                continue
            d["attrs"].update(pruned=self.amount, prune_method=self.method)
            removed += int(prod(d["params"]["weight"]) * self.amount)
        g = recount(g)
        g.graph["nonzero_parameters"] = g.graph.get("nonzero_parameters",
                                                    g.graph["parameters"]) - removed
        return g
