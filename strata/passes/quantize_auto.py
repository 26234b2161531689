"""quantize(auto, bits=B) as a graph rewrite: the quantize pass hands its
selection here, the budget's arithmetic and solver are strata/passes/quant_budget.py,
the sensitivities come from the backend (ctx.sensitivity:
strata/backends/torch/workflows/sensitivity.py).

    auto_quantize(p, graph, g, nodes, ctx) -> g with each linear marked int4_weight,
                                              int8_weight or left float
    auto_report(record) -> str                its line in strata compress's output

Torch-free, as the rest of the pass: `strata summary` of a spec that names
quantize(auto) reads the choice from the compressed spec, not from here.
"""

from __future__ import annotations

import math
from math import prod
from typing import TYPE_CHECKING

from strata.compiler.cost import node_weight_bytes
from strata.passes._rewrite import PassError
from strata.passes.pass_base import NeedsWeights
from strata.passes.quant_budget import FLOAT, average_bits, candidates, choose, side_note, side_only

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["auto_quantize", "auto_report"]


def auto_quantize(p, graph: "nx.MultiDiGraph", g: "nx.MultiDiGraph", nodes: list[str], ctx) -> "nx.MultiDiGraph":
    """quantize(auto, bits=B) (the pass `p`, its selection `nodes` of `g`, a copy of
    `graph`): each linear's scheme by its sensitivity under the budget; linears that
    feed only side outputs, which the main output's KL cannot score, stay float and
    are listed."""
    o = p.o
    side = side_only(g, nodes)
    nodes = [n for n in nodes if n not in side]
    if not nodes:
        n, outs = next(iter(side.items()))
        raise PassError(f"{p.label()}: the selection feeds only side outputs ({', '.join(outs)} "
                        f"from '{n}'), and auto scores a linear by the KL of the main output: quantize "
                        f"them with a scheme, e.g. quantize(int8_weight, on=\"{n}\")")
    no_int4 = p.int4_misfits(g, nodes)
    costs = candidates(g, nodes, p.group_option, no_int4)
    weights = sum(prod(g.nodes[n].params["weight"]) for n in nodes)
    budget = int(o.bits * weights / 8)
    cheapest = {n: min(c, key=c.get) for n, c in costs.items()}
    least = average_bits(costs, cheapest, weights)
    if sum(costs[n][s] for n, s in cheapest.items()) > budget:
        raise PassError(
            f"{p.label()}: no assignment fits {o.bits:g} bits per weight; the least these "
            f"{len(nodes)} linears can take is {least:.3f} (every one int4 with group_size={o.group_size}"
            + (f", {len(no_int4)} int8 as int4 cannot hold them: {next(iter(no_int4.values()))})"
               if no_int4 else ")") + f": write bits={math.ceil(least * 100) / 100:g} or more")
    if ctx is None or ctx.state is None or ctx.initial:
        raise NeedsWeights(f"{p.label()} chooses each linear's scheme from the weights and calibration "
                           "data: strata compress SPEC --weights W --calibration DATA (or compile(spec, "
                           "weights=..., calibration=ids)); its model.arch names the choice per layer")
    ctx.need_calibration(p.label())
    scores, info = ctx.sensitivity(graph, {n: [s for s in costs[n] if s != FLOAT] for n in nodes},
                                   p.group_option)
    choice = choose(costs, {n: {**scores[n], FLOAT: 0.0} for n in nodes}, budget)
    before = sum(node_weight_bytes(g.nodes[n], g) for n in nodes)
    for n, scheme in choice.items():
        if scheme != FLOAT:
            p.mark(g.nodes[n].attrs, scheme)
    after = sum(node_weight_bytes(g.nodes[n], g) for n in nodes)
    layers = {n: {"scheme": s, "bits": round(8 * costs[n][s] / prod(g.nodes[n].params["weight"]), 4),
                  "kl": {k: float(f"{v:.6g}") for k, v in scores[n].items()}} for n, s in choice.items()}
    return p.done(g, {"linears": [n for n in nodes if choice[n] != FLOAT], "tied": [],
                      "bytes_before": before, "bytes_after": after, "kept_float": {},
                      "auto": {"bits": o.bits, "achieved": round(average_bits(costs, choice, weights), 4),
                               "least": round(least, 4), "layers": layers, "no_int4": no_int4,
                               "side": side,
                               "score": "mean KL of the next-token distribution, that linear alone "
                                        "rounded", **info}})


def auto_report(record: dict) -> str:
    """quantize(auto)'s report line: the schemes chosen, the bits achieved, the bytes."""
    a = record["auto"]
    mib = 2 ** 20
    counts: dict[str, int] = {}
    for x in a["layers"].values():
        counts[x["scheme"]] = counts.get(x["scheme"], 0) + 1
    return (f"quantize (auto, {a['bits']:g} bits): {len(a['layers'])} linears: "
            + ", ".join(f"{c} {s}" for s, c in sorted(counts.items()))
            + f"; {a['achieved']:.2f} bits per weight (least {a['least']:.2f}), "
            f"{record['bytes_before'] / mib:.1f} MiB -> {record['bytes_after'] / mib:.1f} MiB; "
            f"chosen by KL on {a['rows']} calibration rows ({a['forwards']} forwards)"
            + side_note(a.get("side") or {}))
