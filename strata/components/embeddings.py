"""Token embeddings, positions and token types."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from strata.components.base import Component, EvalError, Lowered, Options, format_shape, hidden


class Embedding(Options):
    """Token embedding: ids [B, T] -> [B, T, dim]."""

    vocab: PositiveInt
    dim: PositiveInt
    scale: float | None = Field(None, description="multiply the output by this (e.g. sqrt(d))")
    tie: str | None = Field(None, description="share the weight of another embedding (path)")


class Position(Options):
    """Position information: learned / sinusoidal are added to the stream;
    rotary / alibi are applied inside every attention of the stack."""

    kind: Literal["learned", "sinusoidal", "rotary", "alibi", "none"]
    ctx: PositiveInt | None = Field(None, description="longest sequence (learned, sinusoidal)")
    base: PositiveFloat = Field(10000.0, description="rotary frequency base (rope_theta)")
    fraction: float = Field(1.0, gt=0, le=1, description="fraction of head dims rotated (rotary)")


class TokenTypes(Options):
    """Segment embedding added to the stream from `token_type_ids` (BERT)."""

    types: PositiveInt = 2


# ----------------------------------------------------------------- elaboration

def elaborate_embedding(b, u):
    x, o = u.x, u.o
    if x.dtype != "int64":
        raise EvalError("'embedding' needs token ids, but the stream already holds hidden states "
                        f"{format_shape(x.shape)}", u.span,
                        "an embedding starts a stack; use token_types or position to add more")
    attrs = {"role": "token", "vocab": o.vocab, "dim": o.dim, "scale": o.scale}
    params, tied = {"weight": (o.vocab, o.dim)}, {}
    if o.tie:
        target = b.resolve_param(o.tie, u.sc, u.span, "tie")
        shape = b.param_shape(target)
        if shape != (o.vocab, o.dim):
            raise EvalError(f"shape mismatch: tied weight '{target}' is {format_shape(shape)} but this "
                            f"embedding is [{o.vocab}, {o.dim}]", u.span)
        params, tied = {}, {"weight": target}
    return b.op(u.path, "embedding", [x], x.shape + (o.dim,), u.sc, comp=u.path, kind="embedding",
                attrs=attrs, params=params, tied=tied, span=u.span, sym=x.sym + (u.syms.get("dim"),))


def elaborate_position(b, u):
    x, o = u.x, u.o
    d = hidden(x, "position", u.span)
    if o.kind in ("learned", "sinusoidal"):
        if o.ctx is None:
            raise EvalError(f"'position({o.kind})' needs ctx, the longest sequence", u.span,
                            f"write position({o.kind}, ctx)")
        if o.kind == "sinusoidal" and d % 2:
            raise EvalError(f"sinusoidal positions need an even d, got {d}", u.span)
        params = {"weight": (o.ctx, d)} if o.kind == "learned" else {}
        return b.op(u.path, "embedding", [x], x.shape, u.sc, comp=u.path, kind="position",
                    attrs={"role": "position", "type": o.kind, "ctx": o.ctx, "dim": d},
                    params=params, span=u.span, sym=x.sym)
    # rotary / alibi / none change how the stack's attentions see positions: no op here.
    stack = u.sc.stack
    if o.kind != "none" and stack.positions["type"] != "none":
        raise EvalError(f"a second position({o.kind}) in stack '{stack.name}'", u.span,
                        f"the stack already has position({stack.positions['type']}); keep one")
    stack.positions = {"type": o.kind, "base": o.base, "fraction": o.fraction, "path": u.path}
    return x


def elaborate_token_types(b, u):
    x, o = u.x, u.o
    d = hidden(x, "token_types", u.span)
    ids = b.stack_input(u.sc.stack, "token_type_ids", optional=True)
    return b.op(u.path, "embedding", [x, ids], x.shape, u.sc, comp=u.path, kind="embedding",
                attrs={"role": "token_type", "vocab": o.types, "dim": d},
                params={"weight": (o.types, d)}, span=u.span, sym=x.sym)


# ----------------------------------------------------------------- torch

def torch_embedding(ctx, c):
    a = c.node()["attrs"]
    ctor = f"nn.Embedding({ctx.arg(a['vocab'], c.syms.get('vocab'))}, {ctx.arg(a['dim'], c.syms.get('dim'))})"
    call = f"{c.module}({c.ins[0]})"
    if a.get("scale"):
        call += f" * {ctx.forward_arg(a['scale'], c.syms.get('scale'))}"
    return Lowered(ctor, call)


def torch_position(ctx, c):
    o = c.options
    if o["kind"] == "learned":
        a = c.node()["attrs"]
        return Lowered(f"nn.Embedding({ctx.arg(a['ctx'], c.syms.get('ctx'))}, {ctx.arg(a['dim'], c.d_sym)})",
                       f"{c.ins[0]} + {c.module}({c.extras['pos']})")
    if o["kind"] == "sinusoidal":
        a = c.node()["attrs"]
        cls = ctx.runtime("SinusoidalPositions")
        return Lowered(f"{cls}({ctx.arg(a['dim'], c.d_sym)})",
                       f"{c.ins[0]} + {c.module}({c.extras['pos']}, {c.ins[0]}.dtype)")
    rope, alibi = c.stack.rope, c.stack.alibi
    if o["kind"] == "rotary" and rope:
        cls = ctx.runtime("RotaryEmbedding")
        base = ctx.arg(o["base"], c.syms.get("base"))
        return Lowered(f"{cls}({rope['dims']}, base={base})", None)
    if o["kind"] == "alibi" and alibi:
        return Lowered(f"{ctx.runtime('ALiBi')}({alibi})", None)
    return Lowered(None, None)


def torch_token_types(ctx, c):
    a = c.node()["attrs"]
    return Lowered(f"nn.Embedding({ctx.arg(a['vocab'], c.syms.get('types'))}, {ctx.arg(a['dim'], c.d_sym)})",
                   f"{c.ins[0]} + {c.module}({c.ins[1]})")


POSITION_TITLES = {"learned": "Learned Positions", "sinusoidal": "Positional Encoding",
                   "rotary": "Rotary Positions", "alibi": "ALiBi", "none": "No Positions"}

COMPONENTS = [
    Component("embedding", Embedding, ("vocab", "dim"), "embed", "embedding", elaborate_embedding,
              torch_embedding, lambda o: "Token Embedding", refs=frozenset({"tie"})),
    Component("position", Position, ("kind", "ctx"), "pos", "position", elaborate_position,
              torch_position, lambda o: POSITION_TITLES[o["kind"]]),
    Component("token_types", TokenTypes, ("types",), "token_type", "embedding",
              elaborate_token_types, torch_token_types, lambda o: "Token Types"),
]
