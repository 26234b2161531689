"""Weights in the spec's own names, whatever passes the model was compiled with.

A checkpoint is written in the names of the spec compiled with `passes=[]`
(`decoder.h.0.attn.q.weight`, ...), so it survives adding or removing a pass.
Each pass holds its own weight transform and its inverse (strata/passes/, one
file per pass); the IR after the passes records what each did
(g.graph.applied), and these two functions replay them:

    spec names ──to_model_names──► the compiled model's names
    model names ──to_spec_names──► spec names

Fusions are exact both ways; a low-rank factorisation is the rank-r truncated
SVD one way and the product B·A back; structured pruning gathers the kept
heads / neurons and scatters them back among zeros; LoRA adapters are merged.

    >>> import strata
    >>> model = strata.compile("specs/tiny_shakespeare.arch", passes=["fuse_qkv"])
    >>> [n for n in model.state_dict() if n.startswith("decoder.h.0.attn")][:1]
    ['decoder.h.0.attn.qkv.weight']
    >>> sd = to_spec_names(model.strata_graph, model.state_dict())
    >>> sorted(n for n in sd if n.startswith("decoder.h.0.attn.") and n.endswith("weight"))
    ['decoder.h.0.attn.k.weight', 'decoder.h.0.attn.o.weight', 'decoder.h.0.attn.q.weight', 'decoder.h.0.attn.v.weight']
"""

from __future__ import annotations

from strata.passes.weight_transfer import to_model_names, to_spec_names

__all__ = ["to_model_names", "to_spec_names"]
