"""Output heads: the LM head, classifiers, BERT's pooler, masked-LM and
next-sentence heads."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from strata.components.component_base import Component, EvalError, Lowered, Options, activation, format_shape, hidden, linear
from strata.components.feedforward import act
from strata.components.layers import linear_module


class LMHead(Options):
    """Projection to vocabulary logits, optionally tied to an embedding."""

    vocab: PositiveInt | None = Field(None, description="default: the tied embedding's vocab")
    tie: str | None = Field(None, description="embedding whose weight is reused")
    bias: bool = False
    softcap: PositiveFloat | None = Field(None, description="tanh soft-capping of the logits")
    scale: PositiveFloat | None = Field(None, description="multiply the input by this first (T5's "
                                        "d ** -0.5 before its tied head)")


class Classifier(Options):
    classes: PositiveInt
    bias: bool = True


class Pooler(Options):
    """First token -> dense -> tanh (BERT's pooler): [B, T, d] -> [B, d]."""

    act: Literal["tanh", "gelu", "gelu_tanh", "relu", "silu", "none"] = "tanh"


class MLMHead(Options):
    """BERT masked-LM head: dense, activation, LayerNorm, decoder to vocab (+ bias)."""

    vocab: PositiveInt | None = None
    tie: str | None = None
    act: Literal["relu", "gelu", "gelu_tanh", "silu", "tanh"] = "gelu"
    eps: PositiveFloat = 1e-12


class NSPHead(Options):
    """BERT next-sentence head on the pooled output: [B, d] -> [B, 2]."""

    classes: PositiveInt = 2


# ----------------------------------------------------------------- elaboration

def _vocab_projection(b, u, label: str, d: int):
    """(vocab, params, tied, vocab sym): the weight [vocab, d] of an output
    projection, or the embedding it is tied to."""
    o = u.o
    if o.tie:
        target = b.resolve_param(o.tie, u.sc, u.span, "tie")
        shape = b.param_shape(target)
        if len(shape) != 2 or shape[1] != d:
            raise EvalError(f"shape mismatch: '{label}' sees d={d} but tied weight '{target}' is "
                            f"{format_shape(shape)}", u.span, "a tied head needs the embedding's width")
        if o.vocab is not None and o.vocab != shape[0]:
            raise EvalError(f"shape mismatch: vocab={o.vocab} but tied weight '{target}' is "
                            f"{format_shape(shape)}", u.span)
        return shape[0], {}, {"weight": target}, u.syms.get("vocab") or b.param_syms(target)[0]
    if o.vocab is None:
        raise EvalError(f"'{label}' needs vocab, or tie= an embedding", u.span,
                        f"write {label}(vocab) or {label}(tie=wte)")
    return o.vocab, {"weight": (o.vocab, d)}, {}, u.syms.get("vocab")


def elaborate_lm_head(b, u):
    x = u.x
    d = hidden(x, "lm_head", u.span)
    vocab, params, tied, vsym = _vocab_projection(b, u, "lm_head", d)
    if u.o.bias:
        params["bias"] = (vocab,)
    return b.op(u.path, "linear", [x], x.shape[:-1] + (vocab,), u.sc, comp=u.path, kind="head",
                attrs={"in": d, "out": vocab, "bias": u.o.bias, "role": "lm_head", "softcap": u.o.softcap,
                       "scale": u.o.scale},
                params=params, tied=tied, span=u.span, sym=x.sym[:-1] + (vsym,))


def elaborate_classifier(b, u):
    hidden(u.x, "classifier", u.span)
    return linear(b, u.path, u.x, u.o.classes, bias=u.o.bias, u=u, kind="head",
                  attrs={"role": "classifier"}, out_sym=u.syms.get("classes"))


def elaborate_pooler(b, u):
    x = u.x
    d = hidden(x, "pooler", u.span)
    if len(x.shape) != 3:
        raise EvalError(f"'pooler' needs a sequence [B, T, d], got {format_shape(x.shape)}", u.span)
    first = b.op(f"{u.path}.first", "pool", [x], (x.shape[0], d), u.sc, comp=u.path, kind="head",
                 attrs={"mode": "first"}, span=u.span, sym=(x.sym[0], x.sym[-1]))
    y = linear(b, f"{u.path}.dense", first, d, bias=True, u=u, kind="head", out_sym=x.sym[-1])
    if u.o.act != "none":
        y = activation(b, f"{u.path}.act", y, u.o.act, u, "head")
    return y


def elaborate_mlm_head(b, u):
    x = u.x
    d = hidden(x, "mlm_head", u.span)
    h = linear(b, f"{u.path}.dense", x, d, bias=True, u=u, kind="head", out_sym=x.sym[-1])
    h = activation(b, f"{u.path}.act", h, u.o.act, u, "head")
    h = b.op(f"{u.path}.norm", "norm", [h], h.shape, u.sc, comp=u.path, kind="head",
             attrs={"type": "layer", "eps": u.o.eps, "bias": True},
             params={"weight": (d,), "bias": (d,)}, span=u.span, sym=h.sym)
    vocab, params, tied, vsym = _vocab_projection(b, u, "mlm_head", d)
    params["bias"] = (vocab,)
    return b.op(f"{u.path}.decoder", "linear", [h], h.shape[:-1] + (vocab,), u.sc, comp=u.path,
                kind="head", attrs={"in": d, "out": vocab, "bias": True, "role": "lm_head"},
                params=params, tied=tied, span=u.span, sym=h.sym[:-1] + (vsym,))


def elaborate_nsp_head(b, u):
    hidden(u.x, "nsp_head", u.span)
    if len(u.x.shape) != 2:
        raise EvalError(f"'nsp_head' needs the pooled output [B, d], got {format_shape(u.x.shape)}",
                        u.span, "put it after pooler (e.g. branch { pooler; nsp_head })")
    return linear(b, u.path, u.x, u.o.classes, bias=True, u=u, kind="head",
                  attrs={"role": "classifier"}, out_sym=u.syms.get("classes"))


# ----------------------------------------------------------------- torch

def torch_lm_head(ctx, c):
    a = c.node()["attrs"] if c.node() else c.options  # low_rank replaced the node: options say it
    x = c.ins[0]
    if a.get("scale"):  # T5 rescales the stream before its tied head
        x = f"{x} * {ctx.forward_arg(a['scale'], c.syms.get('scale'))}"
    call = f"{c.module}({x})"
    if a.get("softcap"):
        cap = ctx.forward_arg(a["softcap"], c.syms.get("softcap"))
        call = f"{cap} * torch.tanh({call} / {cap})"  # logit soft-capping
    out_sym = c.out_sym[-1] if c.out_sym else None
    return Lowered(linear_module(ctx, c, out_sym=out_sym), call)


def torch_classifier(ctx, c):
    return Lowered(linear_module(ctx, c, out_sym=c.syms.get("classes")), f"{c.module}({c.ins[0]})")


def torch_pooler(ctx, c):
    fn = c.node("act")["attrs"]["fn"] if c.node("act") else "none"
    h = "self.dense(x[:, 0])"
    source = f'''\
class {{name}}(nn.Module):
    """The first token's state through a dense layer and {fn} (BERT's pooler)."""

    def __init__(self, d):
        super().__init__()
        self.dense = nn.Linear(d, d)

    def forward(self, x):
        return {act(fn, h) if fn != "none" else h}  # (B, d)
'''
    return Lowered(f"{ctx.define('Pooler', source)}({ctx.arg(c.d, c.d_sym)})", f"{c.module}({c.ins[0]})")


def torch_mlm_head(ctx, c):
    dec = c.node("decoder")["attrs"]
    fn = c.node("act")["attrs"]["fn"]
    eps = c.node("norm")["attrs"]["eps"]
    source = f'''\
class {{name}}(nn.Module):
    """BERT's masked-LM head: dense, {fn}, LayerNorm, then the (tied) decoder to the vocabulary."""

    def __init__(self, d, vocab, eps=1e-12):
        super().__init__()
        self.dense = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d, eps=eps)
        self.decoder = nn.Linear(d, vocab)

    def forward(self, x):
        h = self.norm({act(fn, "self.dense(x)")})
        return self.decoder(h)  # (B, T, vocab)
'''
    args = ctx.call_args([(c.d, c.d_sym), (dec["out"], c.out_sym[-1] if c.out_sym else None)],
                         [("eps", eps, c.syms.get("eps"), 1e-12)])
    return Lowered(f"{ctx.define('MLMHead', source)}({args})", f"{c.module}({c.ins[0]})")


COMPONENTS = [
    Component("lm_head", LMHead, ("vocab",), "lm_head", "head", elaborate_lm_head, torch_lm_head,
              lambda o: "LM Head", refs=frozenset({"tie"})),
    Component("classifier", Classifier, ("classes",), "classifier", "head", elaborate_classifier,
              torch_classifier, lambda o: "Classifier"),
    Component("pooler", Pooler, (), "pooler", "head", elaborate_pooler, torch_pooler,
              lambda o: "Pooler"),
    Component("mlm_head", MLMHead, ("vocab",), "mlm_head", "head", elaborate_mlm_head, torch_mlm_head,
              lambda o: "MLM Head", refs=frozenset({"tie"})),
    Component("nsp_head", NSPHead, ("classes",), "nsp_head", "head", elaborate_nsp_head,
              torch_classifier, lambda o: "NSP Head"),
]
