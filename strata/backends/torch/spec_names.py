"""Weights in the spec's own names, whatever passes the model was compiled with.

A checkpoint is written in the names of the spec compiled with `passes=[]`
(`decoder.h.0.attn.q.weight`, ...), so it survives adding or removing a pass.
The IR after passes says what each pass did to the weights (a fused node lists
the parts it concatenates; a low-rank pair is marked `low_rank: a | b`), and
these two functions carry a state dict across:

    spec names ──to_model_names──► the compiled model's names
    model names ──to_spec_names──► spec names

Fusions are exact both ways; a low-rank factorisation is the rank-r truncated
SVD one way and the product B·A back.

    >>> # sd = to_spec_names(model.strata_graph, model.state_dict())
"""

from __future__ import annotations

import torch

__all__ = ["to_model_names", "to_spec_names"]


def _parts(node: str, attrs: dict) -> list[str]:
    """The spec-name nodes a fused node stands for (`a.qkv` -> a.q, a.k, a.v)."""
    comp = node.rpartition(".")[0]
    return [f"{comp}.{r}" for r in attrs["fused"]]


def _rewrites(g):
    """(node, attrs, kind) for every node whose weights differ from the spec's."""
    for n, d in g.nodes(data=True):
        a = d["attrs"]
        if d["op"] == "linear" and a.get("fused"):
            yield n, a, "fused"
        elif d["op"] == "linear" and a.get("low_rank") == "b":
            yield n, a, "low_rank"


def to_spec_names(g, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The compiled model's state dict in the spec's own names (passes undone)."""
    out = dict(state)
    for n, a, kind in _rewrites(g):
        if kind == "fused":
            sizes = g.nodes[f"{n}_split"]["attrs"]["sizes"]
            for suffix in ("weight", "bias"):
                t = out.pop(f"{n}.{suffix}", None)
                if t is None:
                    continue
                for part, piece in zip(_parts(n, a), t.split(sizes, dim=0)):
                    out[f"{part}.{suffix}"] = piece.clone()
        else:  # low rank: W = B A
            base = n.rpartition(".")[0]
            b, a_w = out.pop(f"{n}.weight"), out.pop(f"{base}.a.weight")
            out[f"{base}.weight"] = (b.float() @ a_w.float()).to(b.dtype)
            if f"{n}.bias" in out:
                out[f"{base}.bias"] = out.pop(f"{n}.bias")
    return out


def to_model_names(g, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A spec-named state dict in the names (and shapes) of the model compiled from `g`."""
    out = dict(state)
    for n, a, kind in _rewrites(g):
        if kind == "fused":
            for suffix in ("weight", "bias"):
                keys = [f"{p}.{suffix}" for p in _parts(n, a)]
                if all(k in out for k in keys):
                    out[f"{n}.{suffix}"] = torch.cat([out.pop(k) for k in keys], dim=0)
        else:  # low rank: truncated SVD, the best rank-r approximation (Eckart-Young)
            base, r = n.rpartition(".")[0], a["rank"]
            w = out.pop(f"{base}.weight", None)
            if w is None:
                continue
            u, s, vh = torch.linalg.svd(w.float(), full_matrices=False)
            root = s[:r].sqrt()
            out[f"{n}.weight"] = (u[:, :r] * root).to(w.dtype)            # B [out, r]
            out[f"{base}.a.weight"] = (root[:, None] * vh[:r]).to(w.dtype)  # A [r, in]
            if f"{base}.bias" in out:
                out[f"{n}.bias"] = out.pop(f"{base}.bias")
    return out
