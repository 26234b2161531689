"""lora: low-rank adapters on linear layers (Hu et al. 2021).

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T,   A [r, in], B [out, r]

W and b stay frozen; only A and B train under `strata train`.  The IR keeps
each adapted linear and adds its two parameters (`<name>.lora_a`,
`<name>.lora_b`: state_dict keys `decoder.h.0.attn.q.lora_a`), so parameter
counts, the summary's trainable count and the generated `LoRALinear`s agree.
B starts at zero, so an adapted model computes what the base model computes.

Saving a model with adapters writes the spec's own names: the adapters merged
into W (W + alpha/r * B A), which is what the model computes;
`strata.backends.torch.workflows.adapters` saves and loads the adapters on their own, and merges
them into a plain model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import Field, PositiveFloat, PositiveInt

from strata.components.component_base import Options
from strata.passes._rewrite import PassError, copy_graph, weight_linears
from strata.passes.pass_base import Pass, Stored, held_by


def left_alone(adapted: list[str], why: str) -> str:
    """What a pass that passes over the linears carrying adapters adds to its report
    line (prune, low_rank: `strata compress --adapters keep` keeps them), else "".

        >>> left_alone(["h.0.attn.q", "h.0.attn.v"], "merged adapters would fill the zeros")
        '; 2 linears with LoRA adapters left alone (merged adapters would fill the zeros)'
    """
    if not adapted:
        return ""
    return f"; {len(adapted)} linear{'s' * (len(adapted) != 1)} with LoRA adapters left alone ({why})"


# what either pass says when it meets the other in one spec's passes: each refuses
# the other's linears (adapters on integers cannot merge; integers under adapters
# cannot train), and strata compress merges a LoRA run's adapters before it quantizes
APART = ("lora and quantize do not share a spec's passes: train with lora, then quantize the run's "
         "weights with strata compress, which merges the adapters first")

if TYPE_CHECKING:
    import networkx as nx


# The adapters' parameter names end so (state_dict keys: decoder.h.0.attn.q.lora_a).
SUFFIXES = (".lora_a", ".lora_b")


class LoRAOptions(Options):
    """Add trainable low-rank adapters (LoRA) to linear layers; the rest freezes."""

    rank: PositiveInt = Field(description="the adapters' rank r")
    alpha: PositiveFloat | None = Field(None, description="scale alpha / rank; default: rank (scale 1)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter's input")
    on: str | None = Field(None, description="module path glob or component kind; default all")


class LoRA(Pass):
    name = "lora"
    options = LoRAOptions
    positional = ("rank",)
    adds_adapters = True

    @property
    def alpha(self) -> float:
        return float(self.o.alpha if self.o.alpha is not None else self.o.rank)

    def run(self, graph: "nx.MultiDiGraph", ctx=None) -> "nx.MultiDiGraph":
        o = self.o
        g = copy_graph(graph)
        nodes = weight_linears(g, o.on)
        if not nodes:
            raise PassError(f"{self.label()}: the selection holds no linear layer of its own")
        for n in nodes:
            d = g.nodes[n]
            if why := held_by(d.attrs):
                raise PassError(f"{self.label()}: '{n}' is {why}", APART)
            if d.attrs.get("lora"):
                raise PassError(f"{self.label()}: '{n}' already has adapters")
            out, d_in = d.params["weight"]
            d.params["lora_a"] = (o.rank, d_in)
            d.params["lora_b"] = (out, o.rank)
            d.attrs["lora"] = {"rank": o.rank, "alpha": self.alpha, "dropout": o.dropout}
        added = sum(o.rank * sum(g.nodes[n].params["weight"]) for n in nodes)
        return self.done(g, {"linears": nodes, "adapter_parameters": added})

    def convert(self, record: dict, state: dict, ctx) -> dict:
        """Fresh adapters (A as nn.Linear initialises, B zero) where the state has none."""
        import torch  # lazy: torch

        out = dict(state)
        for n in record["linears"]:
            w = out.get(f"{n}.weight")
            if w is None or f"{n}.lora_a" in out:
                continue
            a = torch.empty(self.o.rank, w.shape[1], dtype=w.dtype, device=w.device)
            torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            out[f"{n}.lora_a"] = a
            out[f"{n}.lora_b"] = torch.zeros(w.shape[0], self.o.rank, dtype=w.dtype, device=w.device)
        return out

    def revert(self, record: dict, state: dict) -> dict:
        """Merge: W + alpha/r * B A, adapters dropped."""
        out = dict(state)
        scale = self.alpha / self.o.rank
        for n in record["linears"]:
            a, b = out.pop(f"{n}.lora_a", None), out.pop(f"{n}.lora_b", None)
            if a is None or b is None or f"{n}.weight" not in out:
                continue
            w = out[f"{n}.weight"]
            out[f"{n}.weight"] = (w.float() + scale * (b.float() @ a.float())).to(w.dtype)
        return out

    def report(self, record: dict) -> str:
        n = len(record["linears"])
        return (f"lora: rank-{self.o.rank} adapters (alpha {self.alpha:g}) on {n} linear"
                f"{'s' * (n != 1)}: {record['adapter_parameters']:,} trainable parameters")

    # ------------------------------------------------------------------ later stages
    lowered = "LORA; build() adds the adapters"

    @classmethod
    def lower(cls, g, low) -> None:
        """LORA = {linear: dict(rank, alpha, dropout)}; build() adds the adapters."""
        adapters = {n: d.attrs["lora"] for n, d in g.nodes(data=True)
                    if d.op == "linear" and d.attrs.get("lora")}
        if adapters:
            rows = {k: "dict(rank={rank}, alpha={alpha}, dropout={dropout})".format(**v)
                    for k, v in low.patterns(g, adapters).items()}
            low.at_build(low.table("LORA", "lora: trainable adapters on these linears (* = any layer)", rows),
                         "    {fn}(model, LORA)", ("named_linears", "set_module", "LoRALinear", "add_adapters"))

    @classmethod
    def badges(cls, attrs: dict) -> list[str]:
        return [f"LoRA r={attrs['lora']['rank']}"] if attrs.get("lora") else []

    # What the other passes and the backend read of an adapted linear's marks.
    @classmethod
    def adapter(cls, attrs: dict) -> dict | None:
        """{rank, alpha, dropout} of the adapter this pass put on a linear, or None."""
        return attrs.get("lora")

    @classmethod
    def unadapted(cls, attrs: dict, params: dict) -> tuple[dict, dict]:
        """(attrs, params) of an adapted linear without its adapter."""
        return ({k: v for k, v in attrs.items() if k != "lora"},
                {k: v for k, v in params.items() if "." + k not in SUFFIXES})

    @classmethod
    def trainable(cls, g) -> int | None:
        """Only the adapters train."""
        return sum(math.prod(s) for _, d in g.nodes(data=True) for k, s in d.params.items()
                   if k.startswith("lora_")) or None

    @classmethod
    def prepare_training(cls, net, kit) -> list[str]:
        """Freeze all but the adapters (workflows.adapters.mark_trainable does the same)."""
        names = [n for n, _ in net.named_parameters() if n.endswith(SUFFIXES)]
        if not names:
            return []
        for n, p in net.named_parameters():
            p.requires_grad_(n.endswith(SUFFIXES))
        n = sum(p.numel() for p in net.parameters() if p.requires_grad)
        return [f"lora: only the adapters train ({len(names)} tensors, {n:,} parameters)"]

    def stored(self, entry, g, adapters="merge") -> Stored:
        """Merged into the weights (the serving form), or kept as adapters."""
        if adapters == "keep":
            return Stored(kept=[self.label()])
        return Stored(notes=[f"{self.label()}: the adapters are merged into its weights"], merge=True)
