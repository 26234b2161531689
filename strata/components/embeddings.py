"""Token embeddings, positions and token types."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from strata.components.component_base import Component, EvalError, Lowered, Options, format_shape, hidden


class Embedding(Options):
    """Token embedding: ids [B, T] -> [B, T, dim]."""

    vocab: PositiveInt
    dim: PositiveInt
    scale: float | None = Field(None, description="multiply the output by this (e.g. sqrt(d))")
    tie: str | None = Field(None, description="share the weight of another embedding (path)")


class Position(Options):
    """Position information: learned / sinusoidal are added to the stream;
    rotary / alibi / relative are applied inside every self-attention of the stack
    (relative: T5's bucketed bias, one table shared by all its layers)."""

    kind: Literal["learned", "sinusoidal", "rotary", "alibi", "relative", "none"]
    ctx: PositiveInt | None = Field(None, description="longest sequence (learned, sinusoidal)")
    base: PositiveFloat = Field(10000.0, description="rotary frequency base (rope_theta)")
    fraction: float = Field(1.0, gt=0, le=1, description="fraction of head dims rotated (rotary)")
    offset: int = Field(0, ge=0, le=2 ** 16, description="learned: rows before position 0; the table "
                        "has ctx + offset rows and position p reads row p + offset (OPT's 2)")
    buckets: int = Field(32, ge=4, le=2 ** 16, description="relative: distance buckets (T5's "
                         "relative_attention_num_buckets)")
    max_distance: PositiveInt = Field(128, description="relative: distances from this on share the "
                                      "last bucket")


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
    if o.offset and o.kind != "learned":
        raise EvalError(f"'offset' is for learned positions, not position({o.kind})", u.span,
                        "remove offset=")
    # What the backend reads: whether the stack computes positions (`pos`), and whether this
    # position lives at the stack (rotary's cos / sin; ALiBi's and relative's bias, added to
    # every self-attention's logits), built once per forward.
    u.facts.update(uses_pos=o.kind in ("learned", "sinusoidal", "rotary"),
                   at_stack=o.kind in ("rotary", "alibi", "relative"),
                   attention_bias=o.kind in ("alibi", "relative"))
    if o.kind in ("learned", "sinusoidal"):
        if o.ctx is None:
            raise EvalError(f"'position({o.kind})' needs ctx, the longest sequence", u.span,
                            f"write position({o.kind}, ctx)")
        if o.kind == "sinusoidal" and d % 2:
            raise EvalError(f"sinusoidal positions need an even d, got {d}", u.span)
        params = {"weight": (o.ctx + o.offset, d)} if o.kind == "learned" else {}
        return b.op(u.path, "embedding", [x], x.shape, u.sc, comp=u.path, kind="position",
                    attrs={"role": "position", "type": o.kind, "ctx": o.ctx, "dim": d,
                           "offset": o.offset}, params=params, span=u.span, sym=x.sym)
    # rotary / alibi / relative / none change how the stack's attentions see positions.
    if o.kind == "relative" and o.max_distance <= o.buckets // 2:
        raise EvalError(f"max_distance ({o.max_distance}) must exceed buckets // 2 ({o.buckets // 2}): "
                        "distances below that each have their own bucket", u.span)
    stack = u.sc.stack
    if o.kind != "none" and stack.positions["type"] != "none":
        raise EvalError(f"a second position({o.kind}) in stack '{stack.name}'", u.span,
                        f"the stack already has position({stack.positions['type']}); keep one")
    stack.positions = {"type": o.kind, "base": o.base, "fraction": o.fraction, "path": u.path}
    if o.kind != "relative":
        return x
    # T5's table [buckets, heads], shared by all layers of the stack.  Its size is known
    # when the first self-attention says how many heads it has (`relative_heads`).
    stack.positions.update(buckets=o.buckets, max_distance=o.max_distance, heads=None)
    b.op(u.path, "embedding", [x], (), u.sc, comp=u.path, kind="position",
         attrs={"role": "relative_position", "type": "relative", "buckets": o.buckets,
                "max_distance": o.max_distance, "heads": None, "bidirectional": None},
         params={}, span=u.span)
    b.g.nodes[u.path].seq = x.shape[1]
    return x


def relative_heads(b, stack, heads: int, causal: bool, span, heads_sym=None) -> None:
    """A self-attention of a stack with position(relative): the first one sizes the shared
    table [buckets, heads] and its direction (T5: bidirectional in the encoder, causal in
    the decoder); the others must agree."""
    pos = stack.positions
    node = b.g.nodes[pos["path"]]
    if pos["heads"] is None:
        pos["heads"] = heads
        node.attrs.update(heads=heads, bidirectional=not causal)
        node.params["weight"] = (pos["buckets"], heads)
        seq = node.get("seq", "T")
        node.out_shape = (1, heads, seq, seq)  # the bias, read by the stack's attentions
        if heads_sym is not None and pos["path"] in b.components:  # so the table reads config.heads
            b.components[pos["path"]]["syms"]["heads"] = heads_sym
    elif pos["heads"] != heads or node.attrs["bidirectional"] == causal:
        raise EvalError(f"position(relative) in stack '{stack.name}' is one table shared by its "
                        f"self-attentions, sized for {pos['heads']} "
                        f"{'bidirectional' if node.attrs['bidirectional'] else 'causal'} heads; "
                        f"this one has {heads} {'causal' if causal else 'bidirectional'} heads", span,
                        "give the stack's self-attentions the same heads and causal")


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
        rows = ctx.arg(a["ctx"], c.syms.get("ctx"))
        pos = c.extras["pos"]
        if a.get("offset"):
            rows += f" + {ctx.arg(a['offset'], c.syms.get('offset'))}"
            pos = f"{pos} + {ctx.forward_arg(a['offset'], c.syms.get('offset'))}"
        return Lowered(f"nn.Embedding({rows}, {ctx.arg(a['dim'], c.d_sym)})", f"{c.ins[0]} + {c.module}({pos})")
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
    # ALiBi and relative turn the stack's mask (c.extras: mask, start) into the
    # (B or 1, heads, T, S) bias every self-attention of the stack adds to its logits.
    mask = c.extras.get("mask")
    if o["kind"] == "alibi" and alibi:
        emb = next(p for p, e in c.ix.comps.items() if e["scope"] == c.stack.name and e["kind"] == "embedding")
        dtype = f"self.{emb.rsplit('.', 1)[1]}.weight.dtype"
        return Lowered(f"{ctx.runtime('ALiBi')}({alibi})", mask and f"{c.module}({mask}, {c.extras['start']}, {dtype})")
    if o["kind"] == "relative" and c.node()["attrs"]["heads"]:
        a = c.node()["attrs"]
        args = ctx.call_args([(a["heads"], c.syms.get("heads"))],
                             [("buckets", a["buckets"], c.syms.get("buckets"), 32),
                              ("max_distance", a["max_distance"], c.syms.get("max_distance"), 128),
                              ("bidirectional", a["bidirectional"], None, True)])
        return Lowered(f"{ctx.runtime('RelativePositionBias')}({args})",
                       mask and f"{c.module}({mask}, {c.extras['start']})")
    return Lowered(None, None)


def torch_token_types(ctx, c):
    a = c.node()["attrs"]
    return Lowered(f"nn.Embedding({ctx.arg(a['vocab'], c.syms.get('types'))}, {ctx.arg(a['dim'], c.d_sym)})",
                   f"{c.ins[0]} + {c.module}({c.ins[1]})")


POSITION_TITLES = {"learned": "Learned Positions", "sinusoidal": "Positional Encoding",
                   "rotary": "Rotary Positions", "alibi": "ALiBi", "relative": "Relative Position Bias",
                   "none": "No Positions"}


def _position_detail(o: dict) -> str | None:
    if o["kind"] == "relative":
        return f"{o['buckets']} buckets, max distance {o['max_distance']}, shared"
    if o["kind"] == "rotary" and o.get("fraction", 1) != 1:
        return f"{o['fraction']:g} of head dims"
    return f"offset {o['offset']}" if o.get("offset") else None

COMPONENTS = [
    Component("embedding", Embedding, ("vocab", "dim"), "embed", "embedding", elaborate_embedding,
              torch_embedding, lambda o: "Token Embedding", refs=frozenset({"tie"})),
    Component("position", Position, ("kind", "ctx"), "pos", "position", elaborate_position,
              torch_position, lambda o: POSITION_TITLES[o["kind"]], _position_detail),
    Component("token_types", TokenTypes, ("types",), "token_type", "embedding",
              elaborate_token_types, torch_token_types, lambda o: "Token Types"),
]
