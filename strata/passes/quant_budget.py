"""quantize(auto, bits=B): each linear's scheme chosen under an average-bits budget.

Candidates per linear: int4_weight (groups of `group_size`, where the layer fits
int4's kernels), int8_weight and float.  Bits are counted as stored
(strata.compiler.cost.stored_weight_bytes, the compressed-tensors layout): per
weight, int4 costs 4 + 16/group (its bf16 scale) + 4/group (its zero point), so
4.16 at group 128; int8 costs 8 + 32/in (an fp32 scale a row); float costs 32
(strata keeps float weights in fp32).  Biases are not counted.  The budget is
the average over the selected linears weighted by their weights:
Σ bytes <= B × Σ weights / 8.

Only the linears that feed the main output are chosen for: a linear that feeds
only a side output (a `branch { ... } as aux` head, a pooler) moves the main
output's distribution not at all, so its score would be 0 and it would go to
int4 unmeasured.  Those stay float, outside the budget, and the report lists
them with the side outputs they feed (`side_only`); a plain quantize pass with
`on=` quantizes them at a scheme of the user's choosing.

The choice minimizes the summed sensitivity (the KL divergence of the model's
next-token distribution when that linear alone is quantized to that scheme,
strata/backends/torch/workflows/sensitivity.py; float scores 0) under the budget: a
multiple-choice knapsack, solved exactly by dynamic programming over the bytes
above the cheapest assignment, in at most UNITS steps (each layer's extra bytes
rounded up to whole steps, so the chosen assignment always keeps the budget; the
bytes the rounding leaves are then spent greedily).
NVIDIA Model Optimizer's `auto_quantize` is the anchor: its `kl_div` method
scores the same way (one layer quantized at a time, KL of the logits), and it
searches the assignment under an `effective_bits` constraint.

Torch-free: `strata summary` and the tests of the solver need no torch.

    >>> choose({"a": {"int4_weight": 10, "float": 40}, "b": {"int4_weight": 10, "float": 40}},
    ...        {"a": {"int4_weight": 0.5, "float": 0.0}, "b": {"int4_weight": 0.1, "float": 0.0}}, 50)
    {'a': 'float', 'b': 'int4_weight'}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.compiler.cost import stored_weight_bytes
from strata.passes._rewrite import fold_layers
from strata.passes.text import pass_text

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["FLOAT", "UNITS", "average_bits", "candidates", "choose", "side_note", "side_only"]

FLOAT = "float"
UNITS = 2048  # steps of the knapsack's capacity: exact when the spare bytes are fewer


def side_only(g: "nx.MultiDiGraph", nodes: list[str]) -> dict[str, list[str]]:
    """{linear: the side outputs it feeds} for the linears of `nodes` that do not
    feed the main output (the one the sensitivity's KL is measured on)."""
    import networkx as nx  # lazy: startup

    outs = dict(g.graph.get("outputs") or {})
    main = outs.get("output", next(iter(outs.values()), None))
    if main is None:
        return {}
    feeds_main = nx.ancestors(g, main) | {main}
    return {n: [k for k, v in outs.items() if v in nx.descendants(g, n) | {n}]
            for n in nodes if n not in feeds_main}


def side_note(side: dict[str, list[str]]) -> str:
    """The report's words for the linears `side_only` left float ("" for none)."""
    if not side:
        return ""
    outs = sorted({o for v in side.values() for o in v})
    return (f"; {len(side)} linear{'s' * (len(side) != 1)} left float, outside the budget: "
            f"{', '.join(list(side)[:4])}{' ...' if len(side) > 4 else ''} feed only the side "
            f"output{'s' * (len(outs) != 1)} {', '.join(outs)}, which the main output's KL does not "
            "measure (quantize them with a scheme and on=)")


def candidates(g: "nx.MultiDiGraph", nodes: list[str], group_size: int, no_int4: dict[str, str]
               ) -> dict[str, dict[str, int]]:
    """{linear: {scheme: stored bytes of its weight}}; int4 only for linears not in `no_int4`."""
    out = {}
    for n in nodes:
        rows, cols = g.nodes[n].params["weight"]
        c = {} if n in no_int4 else {"int4_weight": stored_weight_bytes(rows, cols, "int4_weight", group_size)}
        c["int8_weight"] = stored_weight_bytes(rows, cols, "int8_weight")
        c[FLOAT] = stored_weight_bytes(rows, cols, None)
        out[n] = c
    return out


def average_bits(costs: dict[str, dict[str, int]], choice: dict[str, str], weights: int) -> float:
    """Stored bits per weight of an assignment."""
    return 8 * sum(costs[n][s] for n, s in choice.items()) / weights


def choose(costs: dict[str, dict[str, int]], scores: dict[str, dict[str, float]], budget: int
           ) -> dict[str, str]:
    """The assignment {linear: scheme} of least summed score whose bytes are at most
    `budget` (ties: the fewer bytes).  ValueError when even the cheapest assignment
    is over the budget."""
    names = list(costs)
    base = {n: min(costs[n].values()) for n in names}
    slack = budget - sum(base.values())
    if slack < 0:
        raise ValueError(f"the cheapest assignment needs {sum(base.values())} bytes, over {budget}")
    unit = max(1, -(-slack // UNITS))
    cap = slack // unit
    best = [0.0] * (cap + 1)      # best[c]: least score of the layers so far within c steps
    picks: list[list[str]] = []   # picks[i][c]: layer i's scheme in that optimum
    for n in names:
        options = [(s, -(-(b - base[n]) // unit), scores[n].get(s, 0.0)) for s, b in costs[n].items()]
        options = [o for o in options if o[1] <= cap]
        new, pick = [float("inf")] * (cap + 1), [""] * (cap + 1)
        for s, w, score in options:
            for c in range(w, cap + 1):
                v = best[c - w] + score
                if v < new[c] or (v == new[c] and costs[n][s] < costs[n][pick[c]]):
                    new[c], pick[c] = v, s
        best = new
        picks.append(pick)
    c = min(range(cap + 1), key=lambda i: (best[i], i))  # the least score, then the fewest steps
    out = {}
    for i in reversed(range(len(names))):
        n = names[i]
        s = picks[i][c]
        out[n] = s
        c -= -(-(costs[n][s] - base[n]) // unit)
    return _polish(costs, scores, budget, {n: out[n] for n in names})


def _polish(costs, scores, budget: int, choice: dict[str, str]) -> dict[str, str]:
    """Spend the bytes the rounding to steps left unused: while some layer can move
    to a scheme of lower score within the budget, make the move of largest gain."""
    left = budget - sum(costs[n][s] for n, s in choice.items())
    while True:
        moves = [(scores[n][choice[n]] - scores[n][s], -(costs[n][s] - costs[n][choice[n]]), n, s)
                 for n in choice for s in costs[n]
                 if scores[n][s] < scores[n][choice[n]] and costs[n][s] - costs[n][choice[n]] <= left]
        if not moves:
            return choice
        _, _, n, s = max(moves)
        left -= costs[n][s] - costs[n][choice[n]]
        choice[n] = s


def explicit_passes(g: "nx.MultiDiGraph", record: dict, group_size: int) -> list[str]:
    """The quantize passes a spec writes for the choice: one per scheme and module
    pattern (`quantize(int4_weight, on="decoder.h.*.mlp.up", group_size=32)`);
    float layers need none."""
    chosen = {n: x["scheme"] for n, x in record["auto"]["layers"].items() if x["scheme"] != FLOAT}
    return [pass_text("quantize", {"scheme": s, "on": n, "group_size": group_size if s == "int4_weight" else 128})
            for n, s in fold_layers(g, chosen).items()]
