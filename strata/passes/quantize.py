"""quantize: mark linear layers' weights for quantization.

Annotates attrs["quant"] (int8 | int4 | fp8), attrs["quant_scheme"] and, for
int4, attrs["group_size"]; the torch backend lowers the marks (torchao).
Parameter count is unchanged; g.graph["weight_bytes"] records the size of the
weights at their new precision (fp32 elsewhere).  Tied heads are skipped: their
weight belongs to the embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import networkx as nx

from strata.passes._rewrite import copy_graph, recount, selected_nodes

BITS = {"int8_dynamic": ("int8", 8), "int8_weight": ("int8", 8), "int4_weight": ("int4", 4),
        "fp8": ("fp8", 8)}


def weight_bytes(g: nx.MultiDiGraph) -> int:
    total = 0.0
    for _, d in g.nodes(data=True):
        bits = d["attrs"].get("quant_bits", 32)
        for k, s in d["params"].items():
            total += prod(s) * (bits if k == "weight" else 32) / 8
    return int(total)


@dataclass(frozen=True)
class Quantize:
    scheme: str
    on: str | None = None
    group_size: int = 128
    name: str = "quantize"

    def run(self, graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
        g = copy_graph(graph)
        label, bits = BITS[self.scheme]
        for n in selected_nodes(g, self.on):
            a = g.nodes[n]["attrs"]
            if "weight" not in g.nodes[n]["params"]:
                continue
            a.update(quant=label, quant_scheme=self.scheme, quant_bits=bits)
            if self.scheme == "int4_weight":
                a["group_size"] = self.group_size
        g.graph["weight_bytes"] = weight_bytes(g)
        return recount(g)
