"""low_rank: replace a linear W [out, in] by two of rank r:

    y = x W^T  ->  y = (x A^T) B^T,  A = `<name>.a` [r, in],  B = `<name>.b` [out, r]

The original node is removed; `<name>.a` takes its input and `<name>.b` (which
keeps the bias) feeds its consumers, so state_dict keys read `q.a.weight`,
`q.b.weight`, `q.b.bias`.  Parameters change by r*(in + out) - in*out per layer.

The weights are carried over by truncated SVD, W ~ U_r S_r V_r^T with
B = U_r S_r^1/2 and A = S_r^1/2 V_r^T: the best rank-r approximation in the
Frobenius norm (Eckart-Young), whose relative error sqrt(sum_{i>r} s_i^2) / ||W||
is reported per layer.  `energy=f` picks, per layer, the smallest rank keeping
a fraction f of sum s_i^2 (so it needs the weights).  `activation_aware=true`
(ASVD, Yuan et al. 2023) first scales W's input channels by the mean |x| the
calibration data sends into them, so the SVD keeps what the activations use:
W S = U S' V^T, A = S'^1/2 V^T S^-1.

Layers where the factors hold no fewer parameters than W, and tied weights,
are left alone; a selection that leaves nothing to factor is an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, PositiveInt, model_validator

from strata.compiler import ir
from strata.components.component_base import Options
from strata.passes._rewrite import (
    PassError,
    Splices,
    copy_graph,
    fold_layers,
    rename_output,
    weight_linears,
)
from strata.passes.pass_base import Pass, PassContext, Stored, carried_marks, drop_misfit_marks
from strata.passes.text import pass_text
from strata.passes.lora import LoRA, left_alone

if TYPE_CHECKING:
    import networkx as nx

ASVD_ALPHA = 0.5  # the exponent of ASVD's activation scaling (the paper's default)


class LowRankOptions(Options):
    """Replace linear layers W [out, in] by two factors B [out, r] A [r, in], the
    truncated SVD of the weights, to a rank or a retained-energy fraction."""

    rank: PositiveInt | None = Field(None, description="the rank of every factored layer")
    energy: float | None = Field(None, gt=0, le=1, description="per layer, the smallest rank keeping "
                                 "this fraction of the squared singular values (needs weights)")
    on: str | None = Field(None, description="module path glob or component kind; default all")
    activation_aware: bool = Field(False, description="ASVD: scale input channels by calibration "
                                   "activations before the SVD (needs calibration data)")

    @model_validator(mode="after")
    def _one_size(self):
        if (self.rank is None) == (self.energy is None):
            raise ValueError("give either rank or energy")
        return self


def _scales(stats: dict) -> "object":
    """ASVD's per-input-channel scale: (mean |x|)^alpha, kept away from zero."""
    s = (stats["abs"] / max(stats["n"], 1)).clamp_min(1e-6) ** ASVD_ALPHA
    return s / s.mean()


def _svd(w, scale=None):
    import torch  # lazy: torch

    m = w.float() if scale is None else w.float() * scale[None, :]
    return torch.linalg.svd(m, full_matrices=False)


class LowRank(Pass):
    name = "low_rank"
    options = LowRankOptions
    positional = ("rank",)

    @property
    def reads_activations(self) -> bool:
        return self.o.activation_aware

    def run(self, graph: "nx.MultiDiGraph", ctx=None) -> "nx.MultiDiGraph":
        ctx = ctx or PassContext()
        g = copy_graph(graph)
        selected = weight_linears(g, self.o.on)
        adapted = [n for n in selected if LoRA.adapter(g.nodes[n].attrs)]  # the report says so
        nodes = [n for n in selected if n not in adapted]
        if not nodes:
            raise PassError(f"{self.label()}: the selection holds no linear layer of its own "
                            "(tied heads and layers with adapters are left alone)")
        scales = {}
        # measured on weights only: a graph alone (summary, diagram) or an initialisation
        # (strata train) is factored by plain SVD, calibrated when trained weights compile
        if self.o.activation_aware and ctx.state is not None and not ctx.initial:
            stats = ctx.activation_stats(nodes, "low_rank(activation_aware=true)")
            scales = {n: _scales(stats[n]) for n in nodes}
            ctx.cache[self] = scales
        factored, skipped, splices, dropped = {}, 0, Splices(), {}
        for n in nodes:
            out, d_in = g.nodes[n].params["weight"]
            r = self.o.rank if self.o.rank is not None else self._energy_rank(n, ctx, scales.get(n))
            if r * (out + d_in) >= out * d_in or r >= min(out, d_in):
                skipped += 1
                continue
            g = _factor(g, n, r, splices)
            factored[n] = {"rank": r, "in": d_in, "out": out}
            for f in (f"{n}.a", f"{n}.b"):  # a factor too narrow for the layer's kernel runs in float
                if why := drop_misfit_marks(g.nodes[f].attrs):
                    dropped[f] = why
        if not factored:
            raise PassError(f"{self.label()}: no selected linear layer gets smaller at "
                            + (f"rank {self.o.rank}" if self.o.rank else f"energy {self.o.energy}")
                            + " (the factors would hold as many parameters as the layer)")
        return self.done(splices.apply(g), {"factored": factored, "skipped": skipped, "error": {},
                                            "kept_float": dropped, "adapted": adapted})

    def _energy_rank(self, n: str, ctx, scale) -> int:
        w = ctx.need_state(f"low_rank(energy={self.o.energy})")[f"{n}.weight"]  # a graph alone has none: no torch
        import torch  # lazy: torch

        s2 = _svd(w, scale).S.double() ** 2
        kept = torch.cumsum(s2, 0) / s2.sum()
        return int(torch.searchsorted(kept, torch.tensor(self.o.energy, dtype=kept.dtype)).item()) + 1

    def convert(self, record: dict, state: dict, ctx) -> dict:
        out = dict(state)
        scales = ctx.cache.get(self, {}) if ctx is not None else {}
        measure = self.o.activation_aware and not scales and not (ctx is not None and ctx.initial)
        # weights loading into the factored model (a checkpoint renamed, a resumed run) need no
        # scales when they are of rank r already (factors multiplied back): any SVD gives them back
        renaming = measure and (ctx is None or ctx.graph is None)
        if measure and not renaming:
            stats_nodes = list(record["factored"])
            scales = {n: _scales(s) for n, s in ctx.activation_stats(stats_nodes, "low_rank").items()}
        for n, f in record["factored"].items():
            w = out.pop(f"{n}.weight", None)
            if w is None:
                continue
            r, scale = f["rank"], scales.get(n)
            u, s, vh = _svd(w, scale)
            root = s[:r].sqrt()
            b = u[:, :r] * root                    # B [out, r]
            a = root[:, None] * vh[:r]             # A [r, in]
            if scale is not None:
                a = a / scale[None, :]
            out[f"{n}.b.weight"], out[f"{n}.a.weight"] = b.to(w.dtype), a.to(w.dtype)
            if f"{n}.bias" in out:
                out[f"{n}.b.bias"] = out.pop(f"{n}.bias")
            err = (w.float() - b @ a).norm() / w.float().norm().clamp_min(1e-12)
            if renaming and err > 1e-4:
                raise PassError("low_rank(activation_aware=true) needs calibration data when the "
                                "weights load: compile(spec, weights=..., calibration=...)")
            record["error"][n] = round(float(err), 6)
        return out

    def revert(self, record: dict, state: dict) -> dict:
        out = dict(state)
        for n in record["factored"]:
            b, a = out.pop(f"{n}.b.weight", None), out.pop(f"{n}.a.weight", None)
            if b is None or a is None:
                continue
            out[f"{n}.weight"] = (b.float() @ a.float()).to(b.dtype)
            if f"{n}.b.bias" in out:
                out[f"{n}.bias"] = out.pop(f"{n}.b.bias")
        return out

    def report(self, record: dict) -> str:
        f = record["factored"]
        ranks = sorted({x["rank"] for x in f.values()})
        before = sum(x["in"] * x["out"] for x in f.values())
        after = sum(x["rank"] * (x["in"] + x["out"]) for x in f.values())
        rank = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {ranks[0]}-{ranks[-1]}"
        s = (f"low_rank: factored {len(f)} linear{'s' * (len(f) != 1)} ({rank}): "
             f"{before:,} -> {after:,} weights")
        errs = list(record["error"].values())
        if errs:
            s += f", relative error mean {sum(errs) / len(errs):.3f}, max {max(errs):.3f}"
        if record["skipped"]:
            s += f"; {record['skipped']} left whole (no saving)"
        s += left_alone(record.get("adapted", []), "a linear is factored or adapted, not both")
        kept = record.get("kept_float") or {}
        if kept:
            reasons = sorted(set(kept.values()))
            s += (f"; {len(kept)} factor{'s' * (len(kept) != 1)} kept in float: {', '.join(reasons[:3])}"
                  + (" ..." if len(reasons) > 3 else ""))
        return s

    # ------------------------------------------------------------------ later stages
    lowered = "LOW_RANK; build() factorizes"

    @classmethod
    def lower(cls, g, low) -> None:
        """LOW_RANK = {linear: rank}; build() factors those linears (the file's
        model is made whole, so weights load in either form)."""
        ranks = {n.rpartition(".")[0]: d.attrs["rank"] for n, d in g.nodes(data=True)
                 if d.op == "linear" and d.attrs.get("low_rank") == "a"}
        if ranks:
            rows = {k: str(v) for k, v in low.patterns(g, ranks).items()}
            low.at_build(low.table("LOW_RANK", "low_rank: these linears become b(a(x)), of this rank "
                                   "(* = any layer)", rows), "    {fn}(model, LOW_RANK)",
                         ("named_linears", "set_module", "LowRankLinear", "factorize"))

    @classmethod
    def badges(cls, attrs: dict) -> list[str]:
        return [f"low-rank r={attrs['rank']}"] if attrs.get("low_rank") == "a" else []

    # What the emitter and the other passes read of the factors' marks.
    @classmethod
    def factor(cls, attrs: dict) -> str | None:
        """"a" or "b" for a factor of a linear this pass split (x -> a -> b), else None."""
        return attrs.get("low_rank")

    @classmethod
    def whole(cls, a_attrs: dict, b_attrs: dict) -> dict:
        """The attrs of the linear before it was split into `a` and `b` (the
        generated model initialises it whole; build() factors it)."""
        attrs = {k: v for k, v in b_attrs.items() if k not in ("low_rank", "rank")}
        attrs["in"] = a_attrs["in"]
        return attrs

    def details(self, record: dict) -> dict:
        """The rank of each factored linear; the linears left alone for their adapters."""
        out = super().details(record)
        if record.get("factored"):
            out["ranks"] = {n: f["rank"] for n, f in record["factored"].items()}
        if record.get("adapted"):
            out["adapted"] = record["adapted"]
        return out

    def stored(self, entry, g, adapters="merge") -> Stored:
        """Ranks an energy fraction chose are written as the ranks themselves; the
        factors activation-aware SVD chose are in the weights, so the written pass
        reads no activations when the output is loaded again."""
        if self.o.energy is not None:
            return Stored(kept=explicit_low_rank(g, entry["record"]))
        if self.o.activation_aware:
            return Stored(kept=[pass_text(self.name, {**self.o.model_dump(), "activation_aware": False})])
        return Stored(kept=[self.label()])


def _factor(g: "nx.MultiDiGraph", n: str, rank: int, splices: Splices) -> "nx.MultiDiGraph":
    d = g.nodes[n]
    out, d_in = d.params["weight"]
    (src, e_in), = ir.operands(g, n)
    a, b = f"{n}.a", f"{n}.b"
    carried = carried_marks()
    marks = {k: v for k, v in d.attrs.items() if k in carried}
    common = {"scope": d.scope, "component": d.component, "kind": d.kind, "span": d["span"]}
    ir.add_node(g, a, "linear", attrs={"in": d_in, "out": rank, "bias": False, "rank": rank,
                                       "low_rank": "a", "role": d.attrs.get("role"), **marks},
                params={"weight": (rank, d_in)}, **common)
    params_b = {"weight": (out, rank)}
    if "bias" in d.params:
        params_b["bias"] = d.params["bias"]
    attrs_b = {k: v for k, v in d.attrs.items() if k != "in"}
    ir.add_node(g, b, "linear", attrs={**attrs_b, "in": rank, "rank": rank, "low_rank": "b"},
                params=params_b, **common)
    if "sym" in d:
        g.nodes[b].sym = d["sym"]
    ir.connect(g, src, a, e_in["shape"], e_in["dtype"], 0)
    ir.connect(g, a, b, e_in["shape"][:-1] + (rank,), "float", 0)
    for _, dst, e in list(g.out_edges(n, data=True)):
        g.add_edge(b, dst, **e)
    rename_output(g, n, b)
    splices.add([n], n, [a, b])
    return g


def explicit_low_rank(g: "nx.MultiDiGraph", record: dict) -> list[str]:
    """low_rank passes with the ranks an energy fraction chose, one per rank and
    module pattern (`low_rank(48, on="decoder.h.*.mlp.up")`): what a spec writes."""
    folded = fold_layers(g, {n: f["rank"] for n, f in record["factored"].items()})
    return [f'low_rank({r}, on="{n}")' for n, r in folded.items()]
