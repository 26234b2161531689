"""What a component is, in one registration: its options (the schema both
surfaces validate against), its elaboration into IR ops, its PyTorch lowering
and its diagram title.

A component family lives in one module of this package (`attention.py`,
`feedforward.py`, ...) and ends with a list of `Component`s; `COMPONENTS` in
`strata.components` collects them.  The stages call the hooks and pass in what
the hooks need, so this package imports neither the compiler nor torch:

    elaborate(b, u)  ->  the Tensor the component produces, adding IR ops through
                         `b.op(...)` (b: the compiler's Elaborator; u: a `Use`)
    torch(ctx, c)    ->  `Lowered`: the constructor of its module and the
                         expression that calls it (ctx, c: from the torch emitter)
    title(options), detail(options)  ->  the lines of its diagram box

Facts a backend needs about a lowered component (fused q/k/v, gated MLP,
qk-norm, low-rank factors) are recorded by `elaborate` (and updated by
passes) in `u.facts`, which lands in `g.graph.components[path]["facts"]`;
backends read facts, never node names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict

from strata.errors import EvalError, format_shape

__all__ = ["Component", "EvalError", "Lowered", "Options", "Use", "activation", "format_shape",
           "hidden", "linear"]


class Options(BaseModel):
    """The options of one component, pass or train setting (validated by pydantic)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    # Options that name files: option -> the endings that make a value a path
    # (empty: any string).  They are resolved against the folder of the file the
    # option is written in (strata.compiler.paths), never the current folder.
    paths: ClassVar[dict[str, tuple[str, ...]]] = {}


class Use(NamedTuple):
    """One use of a component in a spec, as elaboration sees it."""

    path: str            # its module path: decoder.h.0.attn
    o: Any               # its validated Options
    syms: dict           # option -> symbolic form (strata.compiler.symbolic), where it has one
    x: Any               # the Tensor flowing in
    sc: Any              # the elaborator's Scope
    span: Any            # where the spec wrote it
    facts: dict          # filled by elaborate: what backends need to know


@dataclass(frozen=True)
class Lowered:
    """A component in generated PyTorch: `self.<attr> = <ctor>` in __init__ (none
    when ctor is None) and `<call>` in forward, an expression of its inputs."""

    ctor: str | None
    call: str | None
    note: str | None = None   # a comment for the __init__ line (e.g. a tie)


@dataclass(frozen=True)
class Component:
    name: str                        # the spec's word: attention, mlp, ...
    options: type[Options]
    positional: tuple[str, ...]
    default_name: str                # module name when the spec gives none (`as NAME`)
    category: str                    # embedding | position | attention | mlp | norm | ... | head
    elaborate: Callable[..., Any]
    torch: Callable[..., Lowered]
    title: Callable[[dict], str]     # how a diagram names a use, from its options: "Feed Forward"
    detail: Callable[[dict], str | None] = lambda o: None  # a diagram's second line: "SwiGLU, hidden 11008"
    refs: frozenset[str] = field(default_factory=frozenset)  # options naming modules / stacks
    # attrs its nodes carry beyond their op's own (strata/compiler/ir_types.py ATTRS):
    # name -> meaning; ir.lint accepts them on nodes of this kind
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        return (self.options.__doc__ or "").strip()


# ----------------------------------------------------------------- elaboration helpers

def hidden(x, label: str, span) -> int:
    """The feature width of the stream `x`, which must hold hidden states."""
    if x.dtype == "int64":
        raise EvalError(f"'{label}' needs hidden states but receives token ids {format_shape(x.shape)}",
                        span, "start the stack with embedding(vocab, d)")
    if len(x.shape) < 2:
        raise EvalError(f"'{label}' needs a tensor with a feature dimension, got {format_shape(x.shape)}",
                        span)
    return x.shape[-1]


def linear(b, path: str, x, out: int, *, bias: bool, u: Use, kind: str, comp: str | None = None,
           attrs: dict | None = None, out_sym=None):
    """A `linear` op y = x W^T (+ b): weight [out, in], bias [out]."""
    d_in = x.shape[-1]
    params = {"weight": (out, d_in)}
    if bias:
        params["bias"] = (out,)
    a = {"in": d_in, "out": out, "bias": bias, **(attrs or {})}
    return b.op(path, "linear", [x], x.shape[:-1] + (out,), u.sc, comp=comp or u.path, kind=kind,
                attrs=a, params=params, span=u.span, sym=x.sym[:-1] + (out_sym,))


def activation(b, path: str, x, fn: str, u: Use, kind: str):
    return b.op(path, "activation", [x], x.shape, u.sc, comp=u.path, kind=kind, attrs={"fn": fn},
                span=u.span, sym=x.sym)
