"""Passes: one file per pass, each a `Pass` class holding its options schema,
its graph rewrite, its weight transform, its report and the hooks of every
later stage (lowering, diagram badges, cost, training, compressed storage; see
pass_base.py).  The registry below is what specs, `strata passes`, `strata schema`
and those stages read; `register(cls)` adds a pass defined elsewhere.

    >>> from strata.compiler import build_text
    >>> g = build_text('''
    ... model m { stack s(ids) { embedding(10, 8); attention(2); lm_head(10) } }
    ... passes { fuse_qkv }''')
    >>> h = apply_passes(g)
    >>> "s.attn.qkv" in h, h.graph.parameters == g.graph.parameters
    (True, True)
    >>> report(h)
    ['fuse_qkv: fused 3 q/k/v projections into 1 matmul']

The pipeline runs in the order a spec lists its passes; each pass records what
it did in g.graph.applied, which is how a checkpoint is carried across the
passes later (strata/passes/weight_transfer.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.compiler import cost, ir
from strata.compiler.ir_types import PASS_MARKS
from strata.errors import Diagnostic, SpecError
from strata.passes.pass_base import Pass, PassContext, PassError, Stored
import strata.plugins as plugins
from strata.compiler.select import select
from strata.passes.distill import Distill
from strata.passes.fuse_mlp import FuseMLP
from strata.passes.fuse_qkv import FuseQKV
from strata.passes.lora import LoRA
from strata.passes.low_rank import LowRank
from strata.passes.prune import Prune
from strata.passes.quantize import Quantize
from strata.plugins import PASSES, PassSpec

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["REGISTRY", "Pass", "PassContext", "PassError", "Stored", "apply_passes", "make_pass", "register", "unregister",
           "report"]

REGISTRY: dict[str, type[Pass]] = {p.name: p for p in [
    FuseQKV,    # q, k, v projections -> one qkv matmul + split
    FuseMLP,    # gate, up projections -> one gate_up matmul + split
    Quantize,   # int8 dynamic / int8, int4 weight-only / fp8 kernels after loading
    Prune,      # magnitude / Wanda masks, structured heads and neurons, 2:4
    LowRank,    # W [out, in] -> B [out, r] A [r, in] by truncated SVD
    LoRA,       # trainable low-rank adapters; the rest frozen
    Distill,    # record the teacher (graph unchanged; strata train distills)
]}
for _p in REGISTRY.values():  # what the dsl and the compiler read of each (strata/plugins.py)
    PASSES.register(_p.name, PassSpec(_p.name, _p.options, _p.positional))
    PASS_MARKS.update(_p.marks)
plugins.GRAPH_PASSES[:] = [lambda g: apply_passes(g, lint=False)]  # the compiler's selector check
cost.PASSES = REGISTRY  # the cost model asks the passes' hooks (the compiler cannot import them)


def register(cls: type[Pass]) -> type[Pass]:
    """Add a pass class to the registry (specs, the CLI, schema and every stage's
    hooks see it); returns it, so it can decorate the class."""
    REGISTRY[cls.name] = cls
    PASSES.register(cls.name, PassSpec(cls.name, cls.options, cls.positional))
    PASS_MARKS.update(cls.marks)
    return cls


def unregister(cls: type[Pass]) -> None:
    """Take a pass added by `register` out again (its marks with it)."""
    REGISTRY.pop(cls.name, None)
    PASSES.unregister(cls.name)
    for k in cls.marks:
        PASS_MARKS.pop(k, None)


def make_pass(name: str, options: dict) -> Pass:
    """A pass object from its registry name and options (validated here)."""
    cls = REGISTRY[name]
    return cls(cls.options(**options))


def _spec_error(e: PassError, entry: dict):
    sources = {}
    if "source" in entry:
        sources[entry["source"][0]] = entry["source"][1]
    elif entry.get("span") is not None and entry["span"].file:
        try:
            from pathlib import Path  # lazy: optional

            sources[entry["span"].file] = Path(entry["span"].file).read_text(encoding="utf-8")
        except OSError:
            pass
    return SpecError([Diagnostic(str(e), entry.get("span"))], sources)


def apply_passes(g: "nx.MultiDiGraph", *, lint: bool = True, ctx: PassContext | None = None,
                 on_pass=None) -> "nx.MultiDiGraph":
    """Apply g.graph.passes in order; the result records them in
    g.graph.applied (with what each did) and has an empty `passes` list.
    `ctx` carries weights and calibration data for the passes that use them;
    `on_pass(p, before, after)` is called after each pass (the weight pipeline)."""
    todo = list(g.graph.get("passes", []))
    if not todo:
        return g
    if "spec_params" not in g.graph:  # the shapes a checkpoint in the spec's own names has
        g.graph.spec_params = ir.state_dict_shapes(g)
    ctx = ctx or PassContext()
    for entry in todo:
        p = make_pass(entry["name"], entry["options"])
        ctx.graph = g
        try:
            on = entry["options"].get("on")
            if on is not None and not select(g, on):  # it named what no earlier pass made either
                raise PassError(f"pass '{p.name}': selector \"{on}\" matches no module (selectors are "
                                "module path globs like decoder.h.*.mlp, or component kinds like attention)")
            h = p.run(g, ctx)
            if on_pass is not None:
                on_pass(p, g, h)
        except PassError as e:
            raise _spec_error(e, entry) from None
        if lint:
            ir.lint(h)
        g = h
    g.graph.passes = []
    return g


def report(g: "nx.MultiDiGraph") -> list[str]:
    """One line per applied pass: what it did."""
    return [make_pass(a["name"], a["options"]).report(a["record"]) for a in g.graph.get("applied", [])]
