"""Weights through passes (torch).

A checkpoint is in the spec's own names: those of the spec compiled with
`passes=[]`.  Each applied pass recorded what it did (g.graph.applied), and
its `convert` / `revert` carry a state dict across it, so a whole pipeline is
replayed in order one way and undone in reverse the other:

    spec names ──convert, pass by pass──► the compiled model's names and shapes
    model names ──revert, last pass first──► spec names

`transform` runs the passes themselves with the weights flowing through, for
the passes that choose from the weights (structured pruning keeps the largest
heads, `low_rank(energy=...)` picks ranks, Wanda and ASVD read calibration
activations).

In code::

    g, state = transform(build_file("m.arch"), load_file("w.safetensors"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.passes import PassContext, PassError, apply_passes, make_pass
from strata.passes.pass_base import listed

if TYPE_CHECKING:
    import networkx as nx
    import torch

__all__ = ["to_model_names", "to_spec_names", "transform"]


def transform(g0: "nx.MultiDiGraph", state: dict | None, *, calibration=None, runner=None,
              quantized: dict | None = None, initial: bool = False,
              merge: str | None = None) -> tuple["nx.MultiDiGraph", dict | None]:
    """Apply g0's passes with `state` (in g0's names, or None) flowing through;
    return the graph after them and the state in its names.  `quantized`, when
    given, receives the integers a calibration method chose per linear
    ({name: strata.passes.qparams.QuantizedWeight}: GPTQ's), for the packer.
    `runner` runs the model on the calibration ids (PassContext.runner).
    initial: `state` is the spec's initialisation (PassContext.initial); merge: how
    the caller, which kept LoRA adapters, merges them instead (PassContext.merge)."""
    ctx = PassContext(state=state, calibration=calibration, runner=runner, initial=initial, merge=merge)

    def step(p, before, after):
        if ctx.state is not None:
            held = {n: ctx.state.get(f"{n}.weight") for n in ctx.quantized}
            ctx.state = p.convert(after.graph.applied[-1]["record"], ctx.state, ctx)
            # integers an earlier quantize chose (GPTQ's; int8_static's, with the activation
            # scales) no longer stand for a weight a later pass changed.  apply_passes refuses
            # a later pass that rewrites them in the graph; this one changed their values
            # only (a later SmoothQuant or AWQ folding its scales into them)
            changed = [n for n, w in held.items() if _changed(w, ctx.state.get(f"{n}.weight"))]
            if changed:
                static = any(ctx.quantized[n].input_scale is not None for n in changed)
                raise PassError(f"{p.label()}: it changes the weights of {listed(changed)}, whose integers"
                                + (" and activation scales" if static else "")
                                + " an earlier quantize chose from calibration data: they would be lost",
                                f"list {p.label()} before that quantize, which then chooses from the weights "
                                "as this one leaves them")

    g = apply_passes(g0, ctx=ctx, on_pass=step)
    if quantized is not None:
        quantized.update({n: qw.stored() for n, qw in ctx.quantized.items()})
    return g, ctx.state


def _changed(before, after) -> bool:
    """Whether a weight tensor is not what it was (None: the state did not hold it)."""
    import torch  # lazy: torch

    if after is before or before is None:
        return False
    return after is None or after.shape != before.shape or not torch.equal(after, before)


def to_model_names(g: "nx.MultiDiGraph", state: dict[str, "torch.Tensor"], *, calibration=None,
                   runner=None) -> dict[str, "torch.Tensor"]:
    """A spec-named state dict in the names (and shapes) of the model compiled from `g`."""
    ctx = PassContext(calibration=calibration, runner=runner)
    for a in g.graph.get("applied", []):
        state = make_pass(a["name"], a["options"]).convert(a["record"], state, ctx)
    return state


def to_spec_names(g: "nx.MultiDiGraph", state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    """The compiled model's state dict in the spec's own names (passes undone)."""
    for a in reversed(g.graph.get("applied", [])):
        state = make_pass(a["name"], a["options"]).revert(a["record"], state)
    return state
