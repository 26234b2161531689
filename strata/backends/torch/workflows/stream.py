"""Calibration streamed block by block, so memory holds one block's statistics
and never the whole model's activations.

For each transformer block holding selected linears, in model order: the
calibration ids run through the model as it stands (the blocks before it
already compressed, as GPTQ and SparseGPT do), stopped as soon as that block
has run; hooks on its linears accumulate, per distinct input (q, k and v share
one), the Hessian H = 2 X^T X / n [in, in] and per-channel mean |x| and
max |x| [in] (and, when asked, up to `rows` input rows for AWQ's search).  Then
`handle(block, stats)` rewrites the block's weights in the state; the model
takes them before the next block is measured.

In code::

    seconds = stream(g, state, ids, nodes, handle, hessian=True)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from strata.backends.torch import generate_source
from strata.backends.torch.loader import load_source
from strata.backends.torch.workflows.calibration import BATCH, model_inputs
from strata.passes.methods.blocks import block_of, blocks, input_of

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["stream"]


class _Stop(Exception):
    """Raised by the hook on a block once it has run: the rest of the model is not needed."""


def _net(g, state):
    from strata.backends.torch.weights import load_state  # lazy: torch

    g = g.copy()
    g.graph = type(g.graph)({**g.graph, "passes": []})
    net = load_source(generate_source(g), g.graph.name).build()
    net.strata_graph = g
    load_state(net, state)
    return net.eval()


def stream(g: "nx.MultiDiGraph", state: dict, ids, nodes: list[str], handle, *, hessian: bool = True,
           rows: int = 0) -> dict:
    """Run `handle(block_nodes, stats)` block by block (see the module docstring);
    stats[input node] = {"H", "mean", "absmax", "n", "x"} ("n" 0: the input never ran).  Returns {"blocks",
    "seconds_per_block", "rows"}."""
    import torch  # lazy: torch

    from strata.backends.torch.weights import load_state  # lazy: torch

    net = _net(g, state)
    started = time.perf_counter()
    groups = blocks(g, nodes)
    for block in groups:
        stats: dict[str, dict] = {}
        hooks = []
        for n in block:
            key = input_of(g, n)
            if key in stats:
                continue
            stats[key] = {"n": 0, "x": []}

            def hook(mod, args, out, key=key):
                x = args[0].detach().double().reshape(-1, args[0].shape[-1])
                s = stats[key]
                if s["n"] == 0:
                    s["H"] = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64) if hessian else None
                    s["sum"] = torch.zeros(x.shape[1], dtype=torch.float64)
                    s["absmax"] = torch.zeros(x.shape[1], dtype=torch.float64)
                if hessian:
                    s["H"] += x.T @ x
                s["sum"] += x.abs().sum(0)
                s["absmax"] = torch.maximum(s["absmax"], x.abs().amax(0))
                s["n"] += x.shape[0]
                have = sum(r.shape[0] for r in s["x"])
                if have < rows:
                    s["x"].append(x[: rows - have].float())
            hooks.append(net.get_submodule(n).register_forward_hook(hook))
        try:  # stop the forward once this block has run
            stop = net.get_submodule(block_of(block[0]))
        except AttributeError:
            stop = None
        if stop is not None:
            def halt(mod, args, out):
                raise _Stop
            hooks.append(stop.register_forward_hook(halt))
        try:
            with torch.no_grad():
                for i in range(0, ids.shape[0], BATCH):
                    try:
                        net(*model_inputs(g, ids[i:i + BATCH]))
                    except _Stop:
                        pass
        finally:
            for h in hooks:
                h.remove()
        for s in stats.values():
            if s["n"] == 0:  # never reached (the caller skips these linears)
                continue
            n = s["n"]
            if s.get("H") is not None:
                s["H"] *= 2 / n
            s["mean"] = s.pop("sum") / n
            s["x"] = torch.cat(s["x"]) if s["x"] else None
        handle(block, stats)
        load_state(net, state)
    seconds = time.perf_counter() - started
    return {"blocks": len(groups), "seconds_per_block": round(seconds / max(len(groups), 1), 4),
            "rows": int(ids.shape[0])}
