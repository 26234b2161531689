"""prune: remove weights.  Four methods, each doing what it says:

    magnitude   zero the `amount` fraction of smallest |W|, per layer
                (scope=layer) or over all selected layers at once (scope=global)
    wanda       zero, in each output row, the `amount` fraction of smallest
                |W_ij| * ||X_j|| (Sun et al. 2023), X from calibration batches
    structured  remove whole attention heads (key/value groups under GQA) and
                MLP neurons: the dimensions shrink in the IR, the summary, the
                diagram and the generated code, so the model gets faster
    sparsegpt   SparseGPT (Frantar & Alistarh 2023): the `amount` fraction (or,
                with pattern="2:4", 2 of every 4) removed where the calibration
                Hessian says it costs least, the weights left updated to make up
                for it (strata/passes/methods/sparsegpt.py; --calibration data)
    2:4         keep the 2 largest of every 4 consecutive weights, for the
                semi-structured sparse kernels of CUDA GPUs (compute capability
                >= 8.0); refused elsewhere, where it would only store zeros

Masks are baked into the weights (zeros; the kept weights are unchanged) when
they load, so a checkpoint saved from the pruned model is an ordinary one.
Structured pruning keeps the most important heads / neurons (largest weight
norms; with activation_aware=true, the largest expected output on calibration
data); its checkpoint transform gathers their rows and columns, and saving
scatters them back into the spec's own shapes with zeros elsewhere: the pruned
model computes exactly what that masked model computes.
"""

from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from strata.components.component_base import Options
from strata.passes._rewrite import PassError, copy_graph, weight_linears
import strata.passes.prune_structured as S
from strata.passes.pass_base import Pass, Stored, held_by
from strata.passes.sparse_storage import KEPT, kept_count, layout_bytes, sparse_layout
from strata.passes.methods.apply import calibrated_prune, magnitude_masks
from strata.passes.text import pass_text
from strata.passes.lora import LoRA, left_alone

if TYPE_CHECKING:
    import networkx as nx


class PruneOptions(Options):
    """Prune weights: magnitude or Wanda masks (zeros in the weights), structured
    removal of attention heads and MLP neurons (smaller dimensions), or 2:4
    semi-structured sparsity (CUDA sm80+)."""

    amount: float = Field(gt=0, lt=1, description="the fraction removed")
    method: Literal["magnitude", "wanda", "structured", "2:4", "sparsegpt"] = Field(
        "magnitude", description="smallest |W|; smallest |W|*||X|| per row; whole heads and neurons; 2 of 4; "
        "SparseGPT's masks and weight update (reads --calibration data)")
    pattern: Literal["2:4", "4:8"] | None = Field(None, description="sparsegpt: remove n of every m "
                                                  "consecutive weights of a row (semi-structured)")
    scope: Literal["layer", "global"] = Field("layer", description="magnitude: one threshold per "
                                               "layer or one over all selected layers")
    on: str | None = Field(None, description="module path glob or component kind; default all")
    activation_aware: bool = Field(False, description="structured: keep the heads and neurons whose "
                                   "outputs carry most on calibration data instead of those with the "
                                   "largest weights (needs calibration data)")


def _masked_count(numel: int, amount: float) -> int:
    return int(numel * amount)


class Prune(Pass):
    name = "prune"
    options = PruneOptions
    positional = ("amount",)
    carried = ("density", "prune_method")  # what is left of a fused or factored linear's weights
    # not carried: a fused or factored linear's count is no longer one mask's
    marks = {KEPT: "weights its one prune mask keeps (a compressed checkpoint stores that many)"}

    @property
    def acts_on_values(self) -> bool:  # masks change weight values; structured only shapes
        return self.o.method != "structured"

    @property
    def reads_activations(self) -> bool:
        o = self.o
        return o.method in ("wanda", "sparsegpt") or (o.method == "structured" and o.activation_aware)

    def run(self, graph: "nx.MultiDiGraph", ctx=None) -> "nx.MultiDiGraph":
        o = self.o
        if o.activation_aware and o.method != "structured":
            raise PassError(f"{self.label()}: activation_aware chooses which heads and neurons "
                            "method=structured keeps; wanda and sparsegpt read activations already")
        if o.method == "structured":
            if o.activation_aware and ctx is not None:
                ctx.need_calibration(self.label())
            g, record = S.shrink(graph, o.amount, o.on, self.label(), getattr(ctx, "merge", None))
            return self.done(g, record)
        if o.method == "2:4" and o.amount != 0.5:
            raise PassError(f"{self.label()}: 2:4 sparsity removes exactly half the weights; "
                            "write prune(0.5, method=\"2:4\")")
        if o.pattern is not None and (o.method != "sparsegpt" or o.amount != 0.5):
            raise PassError(f"{self.label()}: pattern= is SparseGPT's n:m mask, which removes half the "
                            "weights: write prune(0.5, method=sparsegpt, pattern=\"2:4\")")
        if o.method == "sparsegpt" and ctx is not None:
            ctx.need_calibration(self.label())
        if o.scope == "global" and o.method != "magnitude":
            raise PassError(f"{self.label()}: scope=global ranks magnitudes across layers; "
                            f"{o.method} compares weights within a layer")
        g = copy_graph(graph)
        selected = weight_linears(g, o.on)
        # a mask under adapters is no sparsity: merged, B·A fills the zeros (the report says so)
        adapted = [n for n in selected if LoRA.adapter(g.nodes[n].attrs)]
        nodes = [n for n in selected if n not in adapted]
        if not nodes:
            raise PassError(f"{self.label()}: the selection holds no linear layer of its own"
                            + (" (layers with LoRA adapters are left alone)" if adapted else ""))
        removed = 0
        for n in nodes:
            a = g.nodes[n].attrs
            out, d_in = g.nodes[n].params["weight"]
            m = 4 if o.method == "2:4" else int(o.pattern.split(":")[1]) if o.pattern else 1
            if d_in % m:
                raise PassError(f"{self.label()}: '{n}' has {d_in} input features, not a multiple of {m}")
            # the count a compressed checkpoint stores (sparse_storage): known for one mask of a
            # layer's own; a second mask or scope=global leaves it unknown, and the layer dense
            kept = None if "density" in a or o.scope == "global" else \
                kept_count(o.method, out, d_in, o.amount, o.pattern)
            a.pop(KEPT, None) if kept is None else a.update({KEPT: kept})
            # what is left of the layer: an earlier prune's density times this one's
            a["density"] = round(a.get("density", 1.0) * (1 - o.amount), 6)
            a["prune_method"] = o.method
            removed += _masked_count(out * d_in, o.amount)
        g.graph.nonzero_parameters = g.graph.get("nonzero_parameters", g.graph.parameters) - removed
        if o.method == "2:4" or o.pattern == "2:4":  # the semi-structured kernels run it
            g.graph["sparse_2_4"] = sorted(set(g.graph.get("sparse_2_4", [])) | set(nodes))
        return self.done(g, {"layers": nodes, "removed": removed, "density": {}, "adapted": adapted})

    def convert(self, record: dict, state: dict, ctx) -> dict:
        if self.o.method == "structured":
            stats = None
            if self.o.activation_aware and ctx is not None and ctx.measures:
                readers = sorted({n for r in record["components"].values() for n in r["cols"]})
                stats = ctx.activation_stats(readers, self.label())
            return S.gather(record, state, stats, chosen=self.o.activation_aware)
        if self.o.method == "sparsegpt":
            if not ctx.measures:  # renaming a checkpoint (load_state): SparseGPT's zeros stay, as the
                return magnitude_masks(self.o, record, state)  # same count of smallest; an initialisation too
            return calibrated_prune(self.o, record, state, ctx)
        import torch  # lazy: torch

        out = dict(state)
        nodes = [n for n in record["layers"] if f"{n}.weight" in out]
        amount = self.o.amount
        norms = {}  # Wanda on a checkpoint being renamed (its zeros stay) or an initialisation: |W| per row
        if self.o.method == "wanda" and ctx is not None and ctx.measures:
            norms = {n: s["sq"].sqrt() for n, s in ctx.activation_stats(nodes, self.label()).items()}
        masks = {}
        if self.o.method == "magnitude" and self.o.scope == "global":
            scores = torch.cat([out[f"{n}.weight"].abs().flatten().float() for n in nodes])
            k = _masked_count(scores.numel(), amount)
            flat = torch.ones(scores.numel(), dtype=torch.bool)
            flat[scores.argsort()[:k]] = False
            for n, piece in zip(nodes, flat.split([out[f"{n}.weight"].numel() for n in nodes])):
                masks[n] = piece.view_as(out[f"{n}.weight"])
        for n in nodes:
            w = out[f"{n}.weight"]
            if n in masks:
                keep = masks[n]
            elif self.o.method == "magnitude":
                keep = torch.ones(w.numel(), dtype=torch.bool)
                keep[w.abs().flatten().float().argsort()[:_masked_count(w.numel(), amount)]] = False
                keep = keep.view_as(w)
            elif self.o.method == "wanda":  # per output row, as Wanda compares
                score = w.abs().float() * (norms[n][None, :].to(w.device) if n in norms else 1.0)
                k = _masked_count(w.shape[1], amount)
                keep = torch.ones_like(w, dtype=torch.bool)
                keep.scatter_(1, score.argsort(dim=1)[:, :k], False)
            else:  # 2:4: the two largest of every four consecutive weights in a row
                groups = w.abs().float().view(w.shape[0], -1, 4)
                keep = torch.zeros_like(groups, dtype=torch.bool)
                keep.scatter_(2, groups.topk(2, dim=2).indices, True)
                keep = keep.view_as(w)
            out[f"{n}.weight"] = w * keep.to(w.dtype)
            record["density"][n] = round(float(keep.float().mean()), 6)
        return out

    def revert(self, record: dict, state: dict) -> dict:
        return S.scatter(record, state) if self.o.method == "structured" else state

    def report(self, record: dict) -> str:
        if self.o.method == "structured":
            return S.report(record)
        n = len(record["layers"])
        s = f"prune ({self.o.method}): {record['removed']:,} weights zeroed in {n} linear{'s' * (n != 1)}"
        d = list(record["density"].values())
        if d:
            s += f", density {min(d):.3f}" + (f"-{max(d):.3f}" if max(d) != min(d) else "")
        errors = record.get("error") or {}
        if errors:
            e = sum(v["sparsegpt"] for v in errors.values()) / len(errors)
            r = sum(v["magnitude"] for v in errors.values()) / len(errors)
            s += f"; output error {e:.4f} (magnitude mask: {r:.4f}) on the calibration data"
        return s + left_alone(record.get("adapted", []), "merged adapters would fill the zeros")

    # ------------------------------------------------------------------ later stages
    WHERE = {"magnitude": "the zeros are in the weights", "wanda": "the zeros are in the weights",
             "structured": "the sizes are the pruned ones",
             "2:4": "SPARSE_2_4; sparsify(model) once weights are loaded",
             "sparsegpt": "the zeros and updated weights are in the weights"}

    def where(self) -> str:
        return self.WHERE[self.o.method]

    @classmethod
    def lower(cls, g, low) -> None:
        """2:4 masks: SPARSE_2_4 and sparsify(model), run once the pruned weights
        are loaded (other masks are zeros in the weights; structured pruning
        changed the sizes themselves)."""
        sparse = g.graph.get("sparse_2_4") or []
        if not sparse:
            return
        low.after_load(
            "SPARSE_2_4 = [  # prune(method=\"2:4\"): two of every four weights kept\n"
            + "".join(f"    {low.literal(n)},\n" for n in sparse) + "]\n",
            "def sparsify(model):\n"
            '    """Run the 2:4-pruned linears of SPARSE_2_4 on semi-structured sparse kernels\n'
            '    (CUDA compute capability >= 8.0); call it once the pruned weights are loaded."""\n'
            "    return {fn}(model, SPARSE_2_4)\n", ("sparsify_2_4",))

    @classmethod
    def device_problem(cls, g, device) -> str | None:
        """2:4 kernels: CUDA compute capability >= 8.0."""
        if not g.graph.get("sparse_2_4") or str(device).split(":")[0] == "meta":
            return None
        import torch  # lazy: torch

        dev = torch.device(device)
        if dev.type != "cuda" or torch.cuda.get_device_capability(dev) < (8, 0):
            said = next((pass_text(a["name"], a["options"]) for a in g.graph.get("applied", [])
                         if a["name"] == cls.name and "2:4" in (a["options"].get("method"),
                                                                a["options"].get("pattern"))),
                        'prune(0.5, method="2:4")')  # the pass as the spec wrote it
            return (f"{said} runs on the semi-structured sparse kernels of CUDA GPUs "
                    f"of compute capability >= 8.0, not on {dev.type}; on this device use "
                    "prune(method=structured) for speed or magnitude for sparsity")
        return None

    @classmethod
    def badges(cls, attrs: dict) -> list[str]:
        if attrs.get("density") is None:  # what is left of the weights
            return []
        return [f"pruned {round((1 - attrs['density']) * 100, 4):g}%"
                + (" 2:4" if attrs.get("prune_method") == "2:4" else "")]

    def details(self, record: dict) -> dict:
        """Densities after masks; heads and neurons kept by structured pruning."""
        out = super().details(record)
        if record.get("density"):
            out["density"] = record["density"]
        if record.get("adapted"):
            out["adapted"] = record["adapted"]
        if record.get("components"):
            out["kept"] = {c: {"kept": r["keep"], "of": r["of"]} for c, r in record["components"].items()}
        return out

    @classmethod
    def sparse_layout(cls, d: dict, params: dict | None = None, itemsize: int = 4) -> tuple[str, int] | None:
        """(layout, kept weights) of node `d` (params: name -> shape, default its own)
        stored sparse (strata/passes/sparse_storage.py), or None: dense (not a linear
        masked by exactly one prune whose count is known, quantized, factored, with
        adapters, tied, or the layout not smaller for weights of `itemsize` bytes:
        4 where the spec alone is known, as `strata summary` counts)."""
        a, params = d["attrs"], d["params"] if params is None else params
        kept = a.get(KEPT)
        if kept is None or d["op"] != "linear" or "weight" in d["tied"] or held_by(a) or "weight" not in params \
                or set(params) - {"weight", "bias"}:
            return None
        return sparse_layout(kept, *params["weight"], a.get("prune_method") == "2:4", itemsize)

    @classmethod
    def weight_bytes(cls, d: dict, params: dict) -> int | None:
        """A masked linear a compressed checkpoint stores in a bitmask layout: its
        kept weights, bitmask and row offsets (strata/passes/sparse_storage.py)."""
        found = cls.sparse_layout(d, params)
        if found is None:
            return None
        (rows, cols), (fmt, kept) = params["weight"], found
        return layout_bytes(fmt, rows, cols, kept) + 4 * sum(prod(s) for k, s in params.items() if k != "weight")

    def stored(self, entry, g, adapters="merge") -> Stored:
        """Masks are zeros in the weights (2:4 keeps its kernels); structured
        pruning is the written sizes.  Where the bitmask layout is smaller, an
        unstructured mask is written as prune(amount) (magnitude: SparseGPT's and
        Wanda's zeros are the smallest weights, so it leaves them as they are),
        whose count of kept weights the file stores."""
        label, method = self.label(), self.o.method
        if method == "structured":
            return Stored(notes=[f"{label}: the sizes below are the pruned ones"], structured=entry["record"])
        if method == "sparsegpt" and self.o.pattern == "2:4":  # the kernels; zeros in place
            return Stored(kept=[pass_text("prune", {"amount": 0.5, "method": "2:4"})],
                          notes=[f"{label}: SparseGPT's 2:4 zeros and updated weights are in its weights"])
        if method == "2:4":
            return Stored(kept=[label])
        line = self.report(entry["record"]).split(": ", 1)[1]
        amount = 0.5 if self.o.pattern else self.o.amount  # n:m keeps half
        layers = [n for n in entry["record"]["layers"] if n in g]
        sparse = [n for n in layers if self.sparse_layout(g.nodes[n])]
        # magnitude's count must be the mask's (Wanda's, int(amount * cols) a row, may be fewer)
        same = all(g.nodes[n].attrs[KEPT] == kept_count("magnitude", *g.nodes[n].params["weight"], amount)
                   for n in sparse)
        if not sparse or not same:
            plain = [n for n in layers if KEPT in g.nodes[n].attrs and not held_by(g.nodes[n].attrs)]
            why = ("scope=global: its count a layer is not in the spec" if self.o.scope == "global" else
                   "its count a row is not magnitude's" if not same else "a bitmask would not be smaller"
                   if plain else "its linears are quantized, fused or factored after it")
            return Stored(notes=[f"{label}: the zeros are in its weights ({line}; stored dense: {why})"])
        text = pass_text("prune", {"amount": amount, **({"on": self.o.on} if self.o.on else {})})
        return Stored(kept=[text], notes=[f"{label}: its zeros are stored sparse-bitmask ({line})"])
