"""The tensors a compiled model computes with, each once: tied weights under the
name they are tied to, and a quantized linear as the float weight it stands for.
Saving (weights_file.py) and packing (packed.py) both read them.
"""

from __future__ import annotations

import torch

__all__ = ["tied_names", "quantized_modules", "dequantized", "model_state"]


def tied_names(model: torch.nn.Module) -> dict[str, str]:
    """Tied state-dict names -> the name the shared tensor is saved under (the
    first in state-dict order: the embedding a head is tied to)."""
    ties = dict(getattr(model, "tied_weights", {}))
    first: dict[int, str] = {}
    for k, v in model.state_dict(keep_vars=True).items():
        if id(v) in first:
            ties[k] = first[id(v)]
        else:
            first[id(v)] = k
    return ties


def quantized_modules(model: torch.nn.Module) -> list[str]:
    """Modules whose weight is no longer a float Parameter (the quantize pass ran)."""
    out = []
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if callable(w) and hasattr(m, "_packed_params"):  # torch.ao dynamic quantized linear
            out.append(name)
        elif callable(getattr(m, "integers", None)):  # strata's own integer kernel (StaticInt8Linear)
            out.append(name)
        elif isinstance(w, torch.Tensor) and type(w) not in (torch.Tensor, torch.nn.Parameter) \
                and type(w.data) is not torch.Tensor:  # a torchao tensor subclass
            out.append(name)
    return out


def dequantized(m: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The float weight and bias a quantized linear computes with."""
    if callable(getattr(m, "integers", None)):
        dtype = getattr(m, "act_dtype", torch.float32)
        return m.integers().dequantize(dtype), None if m.bias is None else m.bias.detach().to(dtype)
    if callable(m.weight):  # torch.ao: packed int8 weight and a float bias
        return m.weight().dequantize(), m.bias()
    w = m.weight
    dtype = getattr(m, "act_dtype", torch.float32)
    try:
        dense = w.dequantize()
    except (NotImplementedError, RuntimeError):
        # torchao's int4 CPU tensors have no dequantize(): read W off the layer, W = linear(I, W)^T
        eye = torch.eye(w.shape[1], device=w.device, dtype=torch.bfloat16 if dtype != w.dtype else dtype)
        with torch.no_grad():
            dense = torch.nn.functional.linear(eye, w).T
    bias = m.bias.detach().to(dtype) if m.bias is not None else None
    return dense.to(dtype), bias


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors, each shared tensor once (under its first name); a
    quantized linear gives the float weight it computes with."""
    ties = tied_names(model)
    quantized = quantized_modules(model)
    if not quantized:
        return {k: v for k, v in model.state_dict().items() if k not in ties}
    state = {k: v for k, v in model.state_dict().items() if k not in ties
             and not any(k.startswith(q + ".") for q in quantized)}
    g = getattr(model, "strata_graph", None)
    for q in quantized:
        w, b = dequantized(model.get_submodule(q))
        if g is not None and q in g and "weight" in g.nodes[q].tied:
            continue  # a tied head's quantized copy: its float weight is the embedding's
        state[f"{q}.weight"] = w
        if b is not None:
            state[f"{q}.bias"] = b
    return state
