"""Static analysis of the IR: parameters, FLOPs and memory, before any weight exists.

FLOPs are forward multiply-adds x 2 per token at the model's context length
(Kaplan et al. 2020 / Chinchilla accounting): every matmul costs 2*in*out, the
attention core 2*2*ctx*heads*head_dim (scores and weighted sum, a causal mask
not discounted; a sliding window caps ctx), MoE counts the router and top_k
experts.  Training is about 3x the forward.

    >>> from strata.compiler import build_file
    >>> a = analyze(build_file("specs/gpt2.arch"))
    >>> a["parameters"], a["seq_len"]
    (124439808, 1024)
"""

from __future__ import annotations

from math import prod

import networkx as nx

from strata.compiler.ir import output_shape

BYTES = {"float32": 4, "bfloat16": 2, "int8": 1}

# name -> pass class: strata.passes sets this to its REGISTRY when it is imported
# (the compiler sits below the passes and cannot import them; a graph with
# applied passes has been through them).  A pass answers for the weights it
# stores otherwise than fp32 (`weight_bytes`) and for what trains (`trainable`).
PASSES: dict = {}


def seq_len(g: nx.MultiDiGraph) -> int:
    """The sequence length FLOPs are counted at: the model's `ctx`, else the
    longest learned/sinusoidal position table, else 2048."""
    v = g.graph.vars.get("ctx")
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v
    ctxs = [d.attrs.get("ctx") for _, d in g.nodes(data=True) if d.op == "embedding"]
    ctxs = [c for c in ctxs if isinstance(c, int)]
    return max(ctxs) if ctxs else 2048


def node_flops(g: nx.MultiDiGraph, n: str, ctx: int) -> int:
    """Forward FLOPs per token of one node."""
    d = g.nodes[n]
    a = d.attrs
    if d.op == "linear":  # a low-rank pair is two linears: 2*in*r + 2*r*out
        return 2 * a["in"] * a["out"]
    if d.op == "attention":
        span = min(ctx, a["window"]) if a.get("window") else ctx
        return 2 * 2 * span * a["heads"] * a["head_dim"]
    if d.op == "moe":
        dim = output_shape(g, n)[-1]
        mats = 3 if a.get("gated") else 2
        expert = 2 * mats * dim * a["hidden"]
        return 2 * dim * a["experts"] + (a["top_k"] + a["shared"]) * expert
    return 0


def inactive_parameters(g: nx.MultiDiGraph) -> int:
    """Parameters a token does not use: in each MoE, the experts its router does not
    pick (experts - top_k of them); shared experts and the router are always used."""
    out = 0
    for _, d in g.nodes(data=True):
        if d.op == "moe":
            a = d.attrs
            expert = sum(prod(s) for k, s in d.params.items() if k.startswith("experts.0."))
            out += (a["experts"] - a["top_k"]) * expert
    return out


def node_weight_bytes(d: dict, g: nx.MultiDiGraph | None = None) -> int:
    """Bytes of one node's parameters as the compiled model holds them and a
    compressed checkpoint stores them: fp32, unless a pass stores them otherwise
    (its `weight_bytes` hook: a quantized linear's integers).  A tied head that a
    pass stores otherwise holds its own copy of the embedding."""
    found = _stored(d, g)
    return found[1] if found is not None else sum(4 * prod(s) for s in d["params"].values())


def _stored(d: dict, g: nx.MultiDiGraph | None) -> tuple[str, int] | None:
    """(the pass that stores node `d` otherwise than fp32, its bytes), or None."""
    params = dict(d["params"])
    if "weight" in d["tied"] and g is not None:
        node, _, name = d["tied"]["weight"].rpartition(".")
        own = {**params, "weight": g.nodes[node].params[name]}
    else:
        own = params
    for name, p in PASSES.items():
        b = p.weight_bytes(d, own)
        if b is not None:
            return name, b
    return None


def stored_weight_bytes(rows: int, cols: int, scheme: str | None, group_size: int | None = None) -> int:
    """Bytes of one linear's weight [rows, cols] with its scales and zero points as
    stored under `scheme` (None: fp32).  int4: 8 values to an int32, a bf16 scale and
    a 4-bit zero point per group of `group_size` inputs (None: one group a row),
    zero points 8 rows to an int32, its int64 [2]
    shape; int8 weight-only: 4 values to an int32, an fp32 scale a row, its shape
    (pack-quantized); int8 dynamic (fp8 alike): a byte a weight and an fp32 scale a row;
    int8 static: those and the activations' one fp32 scale.

        >>> stored_weight_bytes(16, 128, "int4_weight", 128), stored_weight_bytes(16, 128, "int8_weight")
        (1080, 2128)
    """
    if scheme is None:
        return 4 * rows * cols
    if scheme == "int4_weight":
        groups = cols // (group_size or cols)
        return rows * -(-cols // 8) * 4 + rows * groups * 2 + -(-rows // 8) * groups * 4 + 2 * 8
    if scheme == "int8_weight":
        return rows * -(-cols // 4) * 4 + rows * 4 + 2 * 8
    return rows * cols + rows * 4 + (4 if scheme == "int8_static" else 0)


def weight_bytes(g: nx.MultiDiGraph) -> int:
    """Bytes of all parameters as compiled (quantized linears at their precision)."""
    return sum(node_weight_bytes(d, g) for _, d in g.nodes(data=True))


def trainable(g: nx.MultiDiGraph) -> int:
    """Parameters that train: all, unless a pass restricts them (its `trainable`
    hook: only the adapters when the lora pass added some)."""
    for p in PASSES.values():
        n = p.trainable(g)
        if n is not None:
            return n
    return sum(prod(s) for _, d in g.nodes(data=True) for s in d.params.values())


def analyze(g: nx.MultiDiGraph) -> dict:
    """Totals for the whole model: parameters, FLOPs per token, memory."""
    ctx = seq_len(g)
    params = sum(prod(s) for _, d in g.nodes(data=True) for s in d.params.values())
    embedding = sum(prod(s) for _, d in g.nodes(data=True) if d.op == "embedding"
                    for s in d.params.values())
    flops = sum(node_flops(g, n, ctx) for n in g.nodes)
    kv_per_token = 0  # K and V elements cached per token, all layers
    for _, d in g.nodes(data=True):
        if d.op == "attention" and not d.attrs.get("cross"):
            kv_per_token += 2 * d.attrs["kv_heads"] * d.attrs["head_dim"]
    return {
        "parameters": params,
        "trainable_parameters": trainable(g),
        "nonzero_parameters": g.graph.get("nonzero_parameters", params),
        "non_embedding_parameters": params - embedding,
        # what one token runs through: a mixture of experts uses top_k of its experts
        "active_parameters": params - inactive_parameters(g),
        "seq_len": ctx,
        "flops_per_token": flops,
        "training_flops_per_token": 3 * flops,
        "memory": {
            # as compiled and stored: quantized layers at their precision, pruned ones' bitmask layout
            "weights_bytes": weight_bytes(g),
            "weights_fp32_bytes": params * 4,
            # the passes whose storage weights_bytes counts (quantize: integers; prune: sparse)
            "weights_stored_by": sorted({f[0] for _, d in g.nodes(data=True) if (f := _stored(d, g))}),
            "weights_bf16_bytes": params * 2,
            # weights + grads + AdamW's two moments, all fp32
            "training_fp32_bytes": params * 16,
            "kv_cache_bf16_bytes_per_token": kv_per_token * 2,
        },
    }
