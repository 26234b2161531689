"""Plain layers: dropout, linear, activation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from strata.components.component_base import Component, Lowered, Options, activation, hidden, linear
from strata.components.feedforward import ACT_NAMES, act


class Dropout(Options):
    p: float = Field(ge=0, lt=1)


class Linear(Options):
    out: PositiveInt
    bias: bool = True


class Activation(Options):
    fn: Literal["relu", "gelu", "gelu_tanh", "silu", "tanh"]


def elaborate_dropout(b, u):
    hidden(u.x, "dropout", u.span)
    return b.op(u.path, "dropout", [u.x], u.x.shape, u.sc, comp=u.path, kind="dropout",
                attrs={"p": u.o.p}, span=u.span, sym=u.x.sym)


def elaborate_linear(b, u):
    hidden(u.x, "linear", u.span)
    return linear(b, u.path, u.x, u.o.out, bias=u.o.bias, u=u, kind="linear", out_sym=u.syms.get("out"))


def elaborate_activation(b, u):
    hidden(u.x, "activation", u.span)
    return activation(b, u.path, u.x, u.o.fn, u, "activation")


def torch_dropout(ctx, c):
    return Lowered(f"nn.Dropout({ctx.arg(c.node()['attrs']['p'], c.syms.get('p'))})",
                   f"{c.module}({c.ins[0]})")


def linear_module(ctx, c, *, out_sym=None) -> str:
    """nn.Linear for a linear-like component (a low_rank pass factors it in build())."""
    a = c.node()["attrs"]
    return f"nn.Linear({ctx.call_args([(a['in'], c.d_sym), (a['out'], out_sym)], [('bias', bool(a['bias']), c.syms.get('bias'), True)])})"


def torch_linear(ctx, c):
    return Lowered(linear_module(ctx, c, out_sym=c.syms.get("out")), f"{c.module}({c.ins[0]})")


def torch_activation(ctx, c):
    return Lowered(None, act(c.node()["attrs"]["fn"], c.ins[0]))


COMPONENTS = [
    Component("dropout", Dropout, ("p",), "drop", "dropout", elaborate_dropout, torch_dropout,
              lambda o: "Dropout", lambda o: f"p={o['p']}"),
    Component("linear", Linear, ("out",), "linear", "linear", elaborate_linear, torch_linear,
              lambda o: "Linear"),
    Component("activation", Activation, ("fn",), "act", "activation", elaborate_activation,
              torch_activation, lambda o: "Activation", lambda o: ACT_NAMES.get(o["fn"], o["fn"])),
]
