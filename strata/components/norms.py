"""Normalisation layers: LayerNorm and RMSNorm."""

from __future__ import annotations

from pydantic import Field, PositiveFloat

from strata.components.component_base import Component, Lowered, Options, hidden


class LayerNorm(Options):
    eps: PositiveFloat = 1e-5
    bias: bool = True


class RMSNorm(Options):
    """x / rms(x) * weight, in float32."""

    eps: PositiveFloat = 1e-6
    unit_offset: bool = Field(False, description="scale by 1 + weight, the weight starting at 0 "
                              "(Gemma; HF's Gemma RMSNorm)")


def elaborate_layernorm(b, u):
    d = hidden(u.x, "layernorm", u.span)
    params = {"weight": (d,), "bias": (d,)} if u.o.bias else {"weight": (d,)}
    return b.op(u.path, "norm", [u.x], u.x.shape, u.sc, comp=u.path, kind="norm",
                attrs={"type": "layer", "eps": u.o.eps, "bias": u.o.bias}, params=params, span=u.span,
                sym=u.x.sym)


def elaborate_rmsnorm(b, u):
    d = hidden(u.x, "rmsnorm", u.span)
    if u.o.unit_offset:  # initialised to 0, not 1: the scale is 1 + weight
        u.facts["zero_init"] = ["weight"]
    return b.op(u.path, "norm", [u.x], u.x.shape, u.sc, comp=u.path, kind="norm",
                attrs={"type": "rms", "eps": u.o.eps, "unit_offset": u.o.unit_offset},
                params={"weight": (d,)}, span=u.span, sym=u.x.sym)


def torch_layernorm(ctx, c):
    a = c.node()["attrs"]
    args = ctx.call_args([(c.d, c.d_sym)], [("eps", a["eps"], c.syms.get("eps"), 1e-5),
                                            ("bias", a["bias"], c.syms.get("bias"), True)])
    return Lowered(f"nn.LayerNorm({args})", f"{c.module}({c.ins[0]})")


def torch_rmsnorm(ctx, c):
    a = c.node()["attrs"]
    args = ctx.call_args([(c.d, c.d_sym)], [("eps", a["eps"], c.syms.get("eps"), 1e-6)])
    cls = ctx.runtime("OffsetRMSNorm" if a.get("unit_offset") else "RMSNorm")
    return Lowered(f"{cls}({args})", f"{c.module}({c.ins[0]})")


def _detail(default_eps: float):
    """A norm's diagram detail: ε where it is not the family's default, Gemma's offset."""
    def detail(o: dict) -> str | None:
        parts = [f"ε={o['eps']:g}"] if o.get("eps", default_eps) != default_eps else []
        if o.get("unit_offset"):
            parts.append("scale 1 + w")
        return ", ".join(parts) or None
    return detail


COMPONENTS = [
    Component("layernorm", LayerNorm, (), "ln", "norm", elaborate_layernorm, torch_layernorm,
              lambda o: "LayerNorm", _detail(LayerNorm.model_fields["eps"].default)),
    Component("rmsnorm", RMSNorm, (), "norm", "norm", elaborate_rmsnorm, torch_rmsnorm,
              lambda o: "RMSNorm", _detail(RMSNorm.model_fields["eps"].default)),
]
