"""Lowering of each registry component into IR nodes, with shape inference.

Each `lower_<component>` takes the builder, the component's module path, its
validated options and the incoming tensor, adds its nodes and returns the
tensor it produces.  Shapes are tuples such as ("B", "T", 768).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.compiler.evaluate import EvalError
from strata.compiler.ir import format_shape
from strata.dsl.registry import GATED

if TYPE_CHECKING:  # pragma: no cover
    from strata.compiler.elaborate import Elaborator, Scope, Tensor


def _hidden(x: "Tensor", label: str, span) -> int:
    if x.dtype == "int64":
        raise EvalError(f"'{label}' needs hidden states but receives token ids {format_shape(x.shape)}",
                        span, "start the stack with embedding(vocab, d)")
    if len(x.shape) < 2:
        raise EvalError(f"'{label}' needs a tensor with a feature dimension, got {format_shape(x.shape)}",
                        span)
    return x.shape[-1]


def _linear(b, path, x, out, *, bias, sc, comp, kind, span, attrs=None, port=0):
    d_in = x.shape[-1]
    params = {"weight": (out, d_in)}
    if bias:
        params["bias"] = (out,)
    a = {"in": d_in, "out": out, "bias": bias, **(attrs or {})}
    return b.op(path, "linear", [x], x.shape[:-1] + (out,), sc, comp=comp, kind=kind, attrs=a,
                params=params, span=span)


def lower_embedding(b: "Elaborator", path, o, x, sc: "Scope", span):
    if x.dtype != "int64":
        raise EvalError("'embedding' needs token ids, but the stream already holds hidden states "
                        f"{format_shape(x.shape)}", span,
                        "an embedding starts a stack; use token_types or position to add more")
    attrs = {"role": "token", "vocab": o.vocab, "dim": o.dim, "scale": o.scale}
    params, tied = {"weight": (o.vocab, o.dim)}, {}
    if o.tie:
        target = b.resolve_param(o.tie, sc, span, "tie")
        shape = b.param_shape(target)
        if shape != (o.vocab, o.dim):
            raise EvalError(f"shape mismatch: tied weight '{target}' is {format_shape(shape)} but this "
                            f"embedding is [{o.vocab}, {o.dim}]", span)
        params, tied = {}, {"weight": target}
    return b.op(path, "embedding", [x], x.shape + (o.dim,), sc, comp=path, kind="embedding",
                attrs=attrs, params=params, tied=tied, span=span)


def lower_position(b: "Elaborator", path, o, x, sc: "Scope", span):
    d = _hidden(x, "position", span)
    if o.kind in ("learned", "sinusoidal"):
        if o.ctx is None:
            raise EvalError(f"'position({o.kind})' needs ctx, the longest sequence", span,
                            f"write position({o.kind}, ctx)")
        if o.kind == "sinusoidal" and d % 2:
            raise EvalError(f"sinusoidal positions need an even d, got {d}", span)
        params = {"weight": (o.ctx, d)} if o.kind == "learned" else {}
        return b.op(path, "embedding", [x], x.shape, sc, comp=path, kind="position",
                    attrs={"role": "position", "type": o.kind, "ctx": o.ctx, "dim": d},
                    params=params, span=span)
    # rotary / alibi / none change how the stack's attentions see positions.
    sc.stack.positions = {"type": o.kind, "base": o.base, "fraction": o.fraction}
    return x


def lower_token_types(b: "Elaborator", path, o, x, sc: "Scope", span):
    d = _hidden(x, "token_types", span)
    ids = b.stack_input(sc.stack, "token_type_ids", optional=True)
    return b.op(path, "embedding", [x, ids], x.shape, sc, comp=path, kind="embedding",
                attrs={"role": "token_type", "vocab": o.types, "dim": d},
                params={"weight": (o.types, d)}, span=span)


def lower_attention(b: "Elaborator", path, o, x, sc: "Scope", span, memory=None):
    label = "cross_attention" if memory is not None else "attention"
    d = _hidden(x, label, span)
    heads, kv = o.heads, o.kv_heads or o.heads
    if kv > heads or heads % kv:
        raise EvalError(f"kv_heads ({kv}) must divide heads ({heads})", span,
                        "GQA groups query heads evenly: pick kv_heads among the divisors of heads")
    if o.head_dim is None and d % heads:
        raise EvalError(f"heads ({heads}) does not divide d ({d})", span,
                        f"choose heads dividing {d}, or set head_dim explicitly")
    hd = o.head_dim or d // heads
    src = memory if memory is not None else x
    pos = sc.stack.positions if memory is None else {"type": "none"}
    rope = None
    if pos["type"] == "rotary":
        rot = int(hd * pos["fraction"])
        if rot % 2 or rot == 0:
            raise EvalError(f"rotary positions rotate {rot} of {hd} head dims; it must be even and "
                            "positive", span, "adjust position(rotary, fraction=...)")
        rope = {"base": pos["base"], "dims": rot}
    comp = path
    kw = dict(sc=sc, comp=comp, kind="attention", span=span)
    out_bias = o.bias if o.out_bias is None else o.out_bias
    q = _linear(b, f"{path}.q", x, heads * hd, bias=o.bias, attrs={"role": "q"}, **kw)
    k = _linear(b, f"{path}.k", src, kv * hd, bias=o.bias, attrs={"role": "k"}, **kw)
    v = _linear(b, f"{path}.v", src, kv * hd, bias=o.bias, attrs={"role": "v"}, **kw)
    if o.qk_norm:
        q = b.op(f"{path}.q_norm", "norm", [q], q.shape, sc, comp=comp, kind="attention",
                 attrs={"type": "rms", "eps": 1e-6, "per_head": hd}, params={"weight": (hd,)}, span=span)
        k = b.op(f"{path}.k_norm", "norm", [k], k.shape, sc, comp=comp, kind="attention",
                 attrs={"type": "rms", "eps": 1e-6, "per_head": hd}, params={"weight": (hd,)}, span=span)
    attrs = {"heads": heads, "kv_heads": kv, "head_dim": hd,
             "causal": o.causal if memory is None else False, "window": o.window,
             "dropout": o.dropout, "softcap": o.softcap, "scale": o.scale, "rope": rope,
             "alibi": pos["type"] == "alibi", "cross": memory is not None}
    core = b.op(f"{path}.core", "attention", [q, k, v], x.shape[:-1] + (heads * hd,), sc,
                comp=comp, kind="attention", attrs=attrs, span=span)
    return _linear(b, f"{path}.o", core, d, bias=out_bias, attrs={"role": "o"}, **kw)


def lower_cross_attention(b: "Elaborator", path, o, x, sc: "Scope", span):
    memory = b.resolve_memory(o.memory, sc, span)
    d = _hidden(x, "cross_attention", span)
    if memory.shape[-1] != d:
        raise EvalError(f"shape mismatch between stacks: memory '{o.memory}' is "
                        f"{format_shape(memory.shape)} but this stream is {format_shape(x.shape)}",
                        span, "the encoder's width must equal the decoder's d")
    return lower_attention(b, path, o, x, sc, span, memory=memory)


def _act(b, path, x, fn, sc, comp, kind, span):
    return b.op(path, "activation", [x], x.shape, sc, comp=comp, kind=kind, attrs={"fn": fn},
                span=span)


def lower_mlp(b: "Elaborator", path, o, x, sc: "Scope", span):
    d = _hidden(x, "mlp", span)
    kw = dict(sc=sc, comp=path, kind="mlp", span=span)
    if o.act in GATED:
        gate = _linear(b, f"{path}.gate", x, o.hidden, bias=o.bias, attrs={"role": "gate"}, **kw)
        up = _linear(b, f"{path}.up", x, o.hidden, bias=o.bias, attrs={"role": "up"}, **kw)
        a = _act(b, f"{path}.act", gate, GATED[o.act], sc, path, "mlp", span)
        h = b.op(f"{path}.mul", "mul", [a, up], up.shape, sc, comp=path, kind="mlp", span=span)
    else:
        up = _linear(b, f"{path}.up", x, o.hidden, bias=o.bias, attrs={"role": "up"}, **kw)
        h = _act(b, f"{path}.act", up, o.act, sc, path, "mlp", span)
    y = _linear(b, f"{path}.down", h, d, bias=o.bias, attrs={"role": "down"}, **kw)
    if o.dropout:
        y = b.op(f"{path}.drop", "dropout", [y], y.shape, sc, comp=path, kind="mlp",
                 attrs={"p": o.dropout}, span=span)
    return y


def lower_moe(b: "Elaborator", path, o, x, sc: "Scope", span):
    d = _hidden(x, "moe", span)
    if o.top_k > o.experts:
        raise EvalError(f"top_k ({o.top_k}) is larger than the number of experts ({o.experts})", span)
    gated = o.act in GATED
    params = {"router.weight": (o.experts, d)}
    names = ("gate", "up", "down") if gated else ("up", "down")
    for prefix, count in (("experts", o.experts), ("shared", o.shared)):
        for i in range(count):
            for n in names:
                shape = (d, o.hidden) if n == "down" else (o.hidden, d)
                params[f"{prefix}.{i}.{n}.weight"] = shape
                if o.bias:
                    params[f"{prefix}.{i}.{n}.bias"] = (shape[0],)
    attrs = {"hidden": o.hidden, "experts": o.experts, "top_k": o.top_k, "shared": o.shared,
             "act": o.act, "bias": o.bias, "normalize": o.normalize}
    return b.op(path, "moe", [x], x.shape, sc, comp=path, kind="mlp", attrs=attrs, params=params,
                span=span)


def lower_layernorm(b: "Elaborator", path, o, x, sc: "Scope", span):
    d = _hidden(x, "layernorm", span)
    params = {"weight": (d,), "bias": (d,)} if o.bias else {"weight": (d,)}
    return b.op(path, "norm", [x], x.shape, sc, comp=path, kind="norm",
                attrs={"type": "layer", "eps": o.eps, "bias": o.bias}, params=params, span=span)


def lower_rmsnorm(b: "Elaborator", path, o, x, sc: "Scope", span):
    d = _hidden(x, "rmsnorm", span)
    return b.op(path, "norm", [x], x.shape, sc, comp=path, kind="norm",
                attrs={"type": "rms", "eps": o.eps}, params={"weight": (d,)}, span=span)


def lower_dropout(b: "Elaborator", path, o, x, sc: "Scope", span):
    _hidden(x, "dropout", span)
    return b.op(path, "dropout", [x], x.shape, sc, comp=path, kind="dropout", attrs={"p": o.p},
                span=span)


def lower_linear(b: "Elaborator", path, o, x, sc: "Scope", span):
    _hidden(x, "linear", span)
    return _linear(b, path, x, o.out, bias=o.bias, sc=sc, comp=path, kind="linear", span=span)


def lower_activation(b: "Elaborator", path, o, x, sc: "Scope", span):
    _hidden(x, "activation", span)
    return _act(b, path, x, o.fn, sc, path, "activation", span)


def _vocab_projection(b, path, o, x, sc, span, label, d):
    """The weight [vocab, d] of an output projection, or the embedding it is tied to."""
    if o.tie:
        target = b.resolve_param(o.tie, sc, span, "tie")
        shape = b.param_shape(target)
        if len(shape) != 2 or shape[1] != d:
            raise EvalError(f"shape mismatch: '{label}' sees d={d} but tied weight '{target}' is "
                            f"{format_shape(shape)}", span, "a tied head needs the embedding's width")
        if o.vocab is not None and o.vocab != shape[0]:
            raise EvalError(f"shape mismatch: vocab={o.vocab} but tied weight '{target}' is "
                            f"{format_shape(shape)}", span)
        return shape[0], {}, {"weight": target}
    if o.vocab is None:
        raise EvalError(f"'{label}' needs vocab, or tie= an embedding", span,
                        f"write {label}(vocab) or {label}(tie=wte)")
    return o.vocab, {"weight": (o.vocab, d)}, {}


def lower_lm_head(b: "Elaborator", path, o, x, sc: "Scope", span):
    d = _hidden(x, "lm_head", span)
    vocab, params, tied = _vocab_projection(b, path, o, x, sc, span, "lm_head", d)
    if o.bias:
        params["bias"] = (vocab,)
    return b.op(path, "linear", [x], x.shape[:-1] + (vocab,), sc, comp=path, kind="head",
                attrs={"in": d, "out": vocab, "bias": o.bias, "role": "lm_head", "softcap": o.softcap},
                params=params, tied=tied, span=span)


def lower_classifier(b: "Elaborator", path, o, x, sc: "Scope", span):
    _hidden(x, "classifier", span)
    return _linear(b, path, x, o.classes, bias=o.bias, sc=sc, comp=path, kind="head", span=span,
                   attrs={"role": "classifier"})


def lower_pooler(b: "Elaborator", path, o, x, sc: "Scope", span):
    d = _hidden(x, "pooler", span)
    if len(x.shape) != 3:
        raise EvalError(f"'pooler' needs a sequence [B, T, d], got {format_shape(x.shape)}", span)
    first = b.op(f"{path}.first", "pool", [x], (x.shape[0], d), sc, comp=path, kind="head",
                 attrs={"mode": "first"}, span=span)
    y = _linear(b, f"{path}.dense", first, d, bias=True, sc=sc, comp=path, kind="head", span=span)
    if o.act != "none":
        y = _act(b, f"{path}.act", y, o.act, sc, path, "head", span)
    return y


def lower_mlm_head(b: "Elaborator", path, o, x, sc: "Scope", span):
    d = _hidden(x, "mlm_head", span)
    kw = dict(sc=sc, comp=path, kind="head", span=span)
    h = _linear(b, f"{path}.dense", x, d, bias=True, **kw)
    h = _act(b, f"{path}.act", h, o.act, sc, path, "head", span)
    h = b.op(f"{path}.norm", "norm", [h], h.shape, sc, comp=path, kind="head",
             attrs={"type": "layer", "eps": o.eps, "bias": True},
             params={"weight": (d,), "bias": (d,)}, span=span)
    vocab, params, tied = _vocab_projection(b, path, o, h, sc, span, "mlm_head", d)
    params["bias"] = (vocab,)
    return b.op(f"{path}.decoder", "linear", [h], h.shape[:-1] + (vocab,), sc, comp=path, kind="head",
                attrs={"in": d, "out": vocab, "bias": True, "role": "lm_head"},
                params=params, tied=tied, span=span)


def lower_nsp_head(b: "Elaborator", path, o, x, sc: "Scope", span):
    _hidden(x, "nsp_head", span)
    if len(x.shape) != 2:
        raise EvalError(f"'nsp_head' needs the pooled output [B, d], got {format_shape(x.shape)}",
                        span, "put it after pooler (e.g. branch { pooler; nsp_head })")
    return _linear(b, path, x, o.classes, bias=True, sc=sc, comp=path, kind="head", span=span,
                   attrs={"role": "classifier"})


LOWER = {name[len("lower_"):]: fn for name, fn in globals().items() if name.startswith("lower_")}
