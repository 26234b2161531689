"""LoRA adapters of a compiled model (the lora pass): which parameters train,
folding the adapters into plain weights, and saving / loading them alone.

    model = strata.compile(spec, weights="base.safetensors", passes=["lora(8, on=\\"attention\\")"])
    mark_trainable(model)                   # only the adapters keep requires_grad
    ...train...
    save_adapters(model, "adapters.safetensors")   # a few MB, not the model
    plain = merge_lora(model)               # W + alpha/r * B A: a model without adapters

In code::

    load_adapters(strata.compile(spec, passes=[...]), "adapters.safetensors")
"""

from __future__ import annotations

import json
from pathlib import Path

from strata.backends.torch import generate_source
from strata.backends.torch.loader import load_source
from strata.compiler.ir import param_count
from strata.io import atomic_output
from strata.passes import make_pass
from strata.passes.lora import SUFFIXES, LoRA

__all__ = ["lora_parameters", "load_adapters", "mark_trainable", "merge_lora", "save_adapters"]


def lora_parameters(model) -> dict:
    """name -> Parameter of every adapter (`....lora_a`, `....lora_b`)."""
    return {n: p for n, p in model.named_parameters() if n.endswith(SUFFIXES)}


def mark_trainable(model) -> list[str]:
    """Freeze everything but the adapters; return the names of what trains."""
    adapters = lora_parameters(model)
    if not adapters:
        raise ValueError("the model has no LoRA adapters: add a lora pass (lora(8, on=\"attention\"))")
    for n, p in model.named_parameters():
        p.requires_grad_(n in adapters)
    return sorted(adapters)


def _without_lora(g):
    """The graph with the lora passes undone (their parameters and marks dropped)."""
    h = g.copy()
    h.graph = type(g.graph)({**g.graph, "applied": [a for a in g.graph.get("applied", []) if a["name"] != "lora"]})
    for n in h.nodes:
        d = h.nodes[n]
        if LoRA.adapter(d.attrs):
            attrs, params = LoRA.unadapted(d.attrs, d.params)
            h.nodes[n].update(attrs=attrs, params=params)
    h.graph.parameters = param_count(h)
    return h


def merge_lora(model):
    """A new model without adapters whose weights are W + alpha/r * B A: it
    computes exactly what `model` computes (dropout aside)."""
    import torch  # lazy: torch

    from strata.backends.torch.model_tensors import model_state  # lazy: torch
    from strata.backends.torch.weights_file import load_state  # lazy: torch

    g = getattr(model, "strata_graph", None)
    entries = [a for a in (g.graph.get("applied", []) if g is not None else []) if a["name"] == "lora"]
    if not entries:
        raise ValueError("the model has no lora pass to merge")
    state = {k: v.detach() for k, v in model_state(model).items()}
    for a in reversed(entries):
        state = make_pass("lora", a["options"]).revert(a["record"], state)
    h = _without_lora(g)
    source = generate_source(h)
    module = load_source(source, h.graph.name)
    p = next(model.parameters())
    with torch.device(p.device):
        net = module.build()
    net = net.to(dtype=p.dtype)
    net.strata_source, net.strata_graph = source, h
    load_state(net, state)
    return net.train(model.training)


def save_adapters(model, path: str | Path) -> None:
    """Write only the adapters (safetensors, atomically), with their ranks and scales."""
    from safetensors.torch import save_file  # lazy: torch

    adapters = {n: p.detach().contiguous() for n, p in lora_parameters(model).items()}
    if not adapters:
        raise ValueError("the model has no LoRA adapters to save")
    g = model.strata_graph
    meta = {n: a for n, d in g.nodes(data=True) if (a := LoRA.adapter(d.attrs))}
    with atomic_output(path) as tmp:
        save_file(adapters, str(tmp), metadata={"format": "pt", "strata": "lora adapters",
                                                "lora": json.dumps(meta, sort_keys=True)})


def load_adapters(model, path: str | Path):
    """Load adapters saved by save_adapters into `model` (compiled with the same
    lora pass); names, shapes and ranks are checked first.  Returns the model."""
    import torch  # lazy: torch
    from safetensors.torch import load_file  # lazy: torch

    from strata.backends.torch.weights_file import WeightsError, WeightsMismatchError, checkpoint_shapes  # lazy: torch

    have = checkpoint_shapes(path)
    want = {n: tuple(p.shape) for n, p in lora_parameters(model).items()}
    if not want:
        raise WeightsError("the model has no LoRA adapters: compile it with the lora pass first")
    missing = {k: s for k, s in want.items() if k not in have}
    unexpected = {k: s for k, s in have.items() if k not in want}
    mismatched = {k: (want[k], have[k]) for k in want if k in have and want[k] != have[k]}
    if missing or unexpected or mismatched:
        raise WeightsMismatchError(missing, unexpected, mismatched, str(path))
    tensors = load_file(str(path))
    params = lora_parameters(model)
    with torch.no_grad():
        for n, t in tensors.items():
            params[n].copy_(t)
    return model
