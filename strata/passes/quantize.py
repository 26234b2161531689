"""quantize: run chosen linear layers on integer (or fp8) weights.

The pass marks the linears (attrs quant, quant_scheme, group_size); the torch
backend writes them into the generated file as a `QUANTIZE` table and a
`quantize(model)` step that runs after float weights are loaded, picking the
kernel for the device the model is on (strata/backends/torch/runtime_passes.py):

    int8_dynamic  int8 weights, activations quantized per token at run time.
                  CPU: torch.ao's dynamic quantized linear (fbgemm / x86), about
                  3x faster than fp32 in eager mode; torchao's
                  Int8DynamicActivationInt8WeightConfig elsewhere (and on CPU
                  when torch.ao's is gone), which is fast under torch.compile.
    int8_static   int8 weights and int8 activations with one static scale a
                  layer, chosen from calibration data (the largest |x| the
                  layer read / 127: SmoothQuant's W8A8 static, compressed-tensors'
                  tensor strategy with dynamic=false).  CPU eager: an int8 x int8
                  product (torch._int_mm, StaticInt8Linear); elsewhere torchao's
                  Int8Tensor with a static activation scale.  Needs --calibration
                  (or a compressed checkpoint that holds the scales).
    int8_weight   int8 weights, float activations (torchao Int8WeightOnlyConfig):
                  a quarter of the memory, the speed of the float matmul.
    int4_weight   int4 weights in groups of `group_size` along the input, or one
                  scale and zero point a row (group_size=channel) (torchao:
                  Int4WeightOnlyConfig on CUDA, PrototypeInt4WeightOnlyConfig on
                  CPU), bf16 activations inside the layer.
    fp8           fp8 weights and activations (torchao
                  Float8DynamicActivationFloat8WeightConfig), CUDA compute
                  capability >= 8.9 only; refused elsewhere with the alternative.

Calibrated methods (strata/passes/methods/; calibration data required):

    method=gptq     int4_weight / int8_weight: GPTQ's column-by-column rounding
                    with error feedback (act_order=true: inputs by decreasing
                    activation energy; observer=mse: each group's range shrunk
                    to round it with the least error; sequential=false: a block's
                    linears measured at once in float, not each after the
                    linears before it are quantized)
    method=awq      int4_weight / int8_weight: AWQ's activation-aware scales,
                    folded into the norm (or linear) before, and its clipping
    smooth=alpha    int8_dynamic / int8_static: SmoothQuant's migration of
                    activation outliers into the weights, folded into the norm
    method=rtn      round to nearest (the default; no calibration)

    auto, bits=B    each linear int4_weight, int8_weight or float, chosen from
                    its sensitivity on the calibration data under an average of
                    B stored bits per weight (strata/passes/quant_budget.py)

The options and which go together are strata/passes/quantize_options.py.

`qat=true` asks `strata train` to train with fake quantization of the same
scheme (torchao QATConfig prepare -> train -> convert; strata/backends/torch/workflows/qat.py).
A tied head (its weight is the embedding's) is quantized only when the
selector names it (`on="decoder.lm_head"`): it then multiplies by a quantized
copy while the embedding lookup keeps the float table, so the bytes grow by the
copy.  The weight bytes the summary prints are those of torchao's layout
(strata.compiler.cost.weight_bytes).
"""

from __future__ import annotations

from math import gcd, prod
from typing import TYPE_CHECKING

from strata.compiler.cost import node_weight_bytes, stored_weight_bytes
from strata.passes._rewrite import PassError, copy_graph, selected_nodes, weight_linears
from strata.passes.pass_base import Pass, Stored, listed
from strata.passes.methods.apply import calibrated_quantize
from strata.passes.quant_budget import explicit_passes
from strata.passes.quant_schemes import INT4_MIN_GROUP, INT4_ROWS, SCHEMES, device_problem, int4_unfit
from strata.passes.quantize_options import QuantizeOptions
from strata.passes.quantize_auto import auto_quantize, auto_report
from strata.passes.text import pass_text
from strata.passes.lora import APART, LoRA

if TYPE_CHECKING:
    import networkx as nx

class Quantize(Pass):
    name = "quantize"
    options = QuantizeOptions
    positional = ("scheme",)
    carried = ("quant", "quant_scheme", "quant_bits", "group_size", "qat")  # a fused or factored linear stays quantized (and trains so)

    def run(self, graph: "nx.MultiDiGraph", ctx=None) -> "nx.MultiDiGraph":
        o = self.o
        self._check_method()
        if ctx is not None and self.calibrated:
            ctx.need_calibration(self.label())
        g = copy_graph(graph)
        nodes = weight_linears(g, o.on)
        if o.on is not None and o.scheme != "auto":  # a tied head named by the selector runs on an int8 copy
            nodes += [n for n in selected_nodes(g, o.on) if "weight" in g.nodes[n].tied]
        adapted = [n for n in nodes if LoRA.adapter(g.nodes[n].attrs)]
        if adapted:
            merge = getattr(ctx, "merge", None)
            raise PassError(f"{self.label()}: '{adapted[0]}' carries LoRA adapters",
                            f"merge them first: {merge} (the default) merges them into the weights, and "
                            "quantize then runs on plain linears" if merge else APART)
        if not nodes:
            raise PassError(f"{self.label()}: the selection holds no linear layer of its own "
                            "(a tied head's weight is the embedding's)")
        if o.scheme == "auto":
            return auto_quantize(self, graph, g, nodes, ctx)
        kept: dict[str, str] = {}
        if o.scheme == "int4_weight":
            bad = [n for n in nodes if g.nodes[n].attrs["in"] % self._divisor]
            if bad and (o.strict or len(bad) == len(nodes)):
                raise PassError(self._misfit(g, nodes, bad))
            # as llm-compressor's `ignore`: these stay float, and the report says so
            kept = self.int4_misfits(g, nodes)
            rows = [n for n in kept if n not in bad]  # torchao's int4 packing takes whole tiles of rows
            if rows and o.strict:
                raise PassError(f"{self.label()}: '{rows[0]}' has {g.nodes[rows[0]]['attrs']['out']} output "
                                f"features; int4 kernels need a multiple of {INT4_ROWS}")
            nodes = [n for n in nodes if n not in kept]
            if not nodes:
                raise PassError(f"{self.label()}: no selected layer fits int4 ({next(iter(kept.values()))})")
        before = sum(node_weight_bytes(g.nodes[n], g) for n in nodes)
        for n in nodes:
            self.mark(g.nodes[n].attrs, o.scheme)
        after = sum(node_weight_bytes(g.nodes[n], g) for n in nodes)
        tied = [n for n in nodes if "weight" in g.nodes[n].tied]
        return self.done(g, {"linears": nodes, "tied": tied, "bytes_before": before, "bytes_after": after,
                             "kept_float": kept})

    def mark(self, attrs: dict, scheme: str) -> None:
        """Mark a linear's `attrs` to run on `scheme` (this pass's group size, qat)."""
        label, bits = SCHEMES[scheme]
        attrs.update(quant=label, quant_scheme=scheme, quant_bits=bits)
        if scheme == "int4_weight":
            attrs["group_size"] = self.o.group_size
        if self.o.qat:
            attrs["qat"] = True

    def int4_misfits(self, g, nodes: list[str]) -> dict[str, str]:
        """{linear: why int4 cannot hold it} (a width not a multiple of the group size,
        or outputs not whole tiles of torchao's packing)."""
        return {n: why for n in nodes
                if (why := int4_unfit(g.nodes[n].attrs, self.o.group_size))}

    @property
    def group_option(self) -> int | None:
        """Inputs per int4 scale as the arithmetic takes it (None: one group a row)."""
        return None if self.o.group_size == "channel" else self.o.group_size

    @property
    def _divisor(self) -> int:
        """What an int4 layer's width must be a multiple of."""
        return INT4_MIN_GROUP if self.o.group_size == "channel" else self.o.group_size

    @property
    def calibrated(self) -> bool:
        """Whether the pass reads activations: a method, SmoothQuant, or int8_static's scales."""
        return self.o.method != "rtn" or self.o.smooth is not None or self.o.scheme == "int8_static"

    @property
    def reads_activations(self) -> bool:
        return self.calibrated or self.o.scheme == "auto"

    def _check_method(self) -> None:
        o = self.o
        if o.method != "rtn" and o.scheme not in ("int4_weight", "int8_weight"):
            raise PassError(f"{self.label()}: method={o.method} chooses weights on an int4_weight or "
                            f"int8_weight grid, not {o.scheme}" + (
                                f"; for {o.scheme}, smooth=0.5 (SmoothQuant)"
                                if o.scheme in ("int8_dynamic", "int8_static") else ""))
        if o.smooth is not None and o.scheme not in ("int8_dynamic", "int8_static"):
            raise PassError(f"{self.label()}: smooth= migrates activation outliers for int8_dynamic and "
                            f"int8_static, whose activations are quantized; {o.scheme} keeps them float")
        if o.act_order and o.method != "gptq":
            raise PassError(f"{self.label()}: act_order is GPTQ's column order: write method=gptq")
        if o.sequential is not None and o.method != "gptq":
            raise PassError(f"{self.label()}: sequential is GPTQ's order of measuring: write method=gptq")
        if o.observer != "minmax" and o.method != "gptq":
            raise PassError(f"{self.label()}: observer={o.observer} chooses GPTQ's group ranges: write "
                            "method=gptq" + (" (awq searches its own clipping)" if o.method == "awq" else ""))
        if o.qat and self.calibrated:
            raise PassError(f"{self.label()}: qat trains with plain rounding; calibrated methods "
                            "apply to trained weights (strata compress)")

    # ------------------------------------------------------------------ later passes
    def claims(self, record: dict) -> list[str]:
        """Its selection: the linears it quantized, and those int4 kept in float."""
        return list(record.get("linears", [])) + list(record.get("kept_float") or {}) + [
            n for n, x in (record.get("auto") or {}).get("layers", {}).items() if x["scheme"] == "float"]

    def chosen_from_data(self) -> tuple[str, str] | None:
        """(what, how) this pass chose from the weights and calibration data where it
        stands in the pipeline; None for round to nearest, which rounds once the
        weights are loaded, after every pass (a later rewrite is rounded as it is)."""
        o = self.o
        if o.scheme == "auto":
            return "schemes", "chose by their sensitivity on calibration data"
        if o.scheme == "int8_static":
            return "int8 weights and activation scales (input_scale)", "chose from calibration data"
        if o.method in ("gptq", "awq"):
            what = "integers" if o.method == "gptq" else "scaled and clipped weights"
            return what, f"chose by {o.method.upper()} on calibration data"
        if o.smooth is not None:
            return "smoothing scales", "chose by SmoothQuant on calibration data"
        return None

    def conflict(self, record: dict, later: Pass, nodes: list[str], where: str) -> tuple[str, str] | None:
        """A second quantize of the same linears, or a later rewrite of linears whose
        quantization was chosen from calibration data, is refused: the first would be
        overridden or half kept (a second scheme's misfits kept the first's), the
        second would lose what calibration chose (int8_static: its activation scales,
        and the model could not run)."""
        nodes = [n for n in nodes if n not in (record.get("kept_float") or {})
                 and (record.get("auto") or {}).get("layers", {}).get(n, {}).get("scheme") != "float"]
        if not nodes:
            return None
        be = "is" if len(nodes) == 1 else "are"
        if later.name == self.name:
            return (f"{listed(nodes)} {be} already quantized by {self.label()}{where}; a linear runs one scheme",
                    "use on= to give each quantize its own layers (e.g. on=\"attention\" for one and "
                    "on=\"mlp\" for the other)")
        chose = self.chosen_from_data()
        if chose is None:
            return None
        lost = " (the model could not run without them)" if self.o.scheme == "int8_static" else ""
        return (f"it rewrites {listed(nodes)}, whose {chose[0]} {self.label()}{where} {chose[1]}: "
                f"a rewrite after the quantize loses them{lost}",
                f"put quantize last: list {later.label()} before {self.label()}")

    def convert(self, record: dict, state: dict, ctx) -> dict:
        # ctx.graph is None when a checkpoint is only renamed into the compiled
        # model's names (load_state): the weights hold the method's choice already
        if not self.calibrated or not ctx.measures:  # an initialisation: rounded to nearest when run
            return state
        return calibrated_quantize(self.o, record, state, ctx)

    def _misfit(self, g, nodes: list[str], bad: list[str]) -> str:
        o = self.o
        widths = {g.nodes[n].attrs["in"] for n in nodes}
        common = 0
        for w in widths:
            common = gcd(common, w)
        fits = [s for s in (256, 128, 64, 32) if common % s == 0]
        if o.group_size == "channel":
            return (f"{self.label()}: '{bad[0]}' has {g.nodes[bad[0]]['attrs']['in']} input features, "
                    f"not a multiple of {INT4_MIN_GROUP}: the int4 kernels run a row as groups of "
                    f"{INT4_MIN_GROUP} to 256" + ("" if o.strict else
                                                  " (no selected layer fits, so nothing would be quantized)"))
        return (f"{self.label()}: '{bad[0]}' has {g.nodes[bad[0]]['attrs']['in']} input "
                f"features, not a multiple of group_size={o.group_size}"
                + (f"; group_size={fits[0]} fits every selected layer" if fits else
                   "; no int4 group size fits every selected layer: select fewer layers")
                + ("" if o.strict else " (no selected layer fits, so nothing would be quantized)"))

    def report(self, record: dict) -> str:
        n = len(record["linears"])
        mib = 2 ** 20
        if record.get("auto"):
            return auto_report(record)
        how = f"{self.o.scheme}, {self.o.method}" if self.o.method != "rtn" else self.o.scheme
        how += f", smooth {self.o.smooth}" if self.o.smooth is not None else ""
        s = (f"quantize ({how}): {n} linear{'s' * (n != 1)}, "
             f"{record['bytes_before'] / mib:.1f} MiB -> {record['bytes_after'] / mib:.1f} MiB")
        kept = record.get("kept_float") or {}
        if kept:
            reasons = sorted(set(kept.values()))
            s += (f"; {len(kept)} linear{'s' * (len(kept) != 1)} kept in float: {', '.join(reasons[:3])}"
                  + (" ..." if len(reasons) > 3 else ""))
        errors = record.get("error") or {}
        if errors:
            e = sum(v[self.o.method] for v in errors.values()) / len(errors)
            r = sum(v["rtn"] for v in errors.values()) / len(errors)
            s += f"; output error {e:.4f} (rounding to nearest: {r:.4f}) on the calibration data"
        if record.get("skipped"):
            why = sorted(set(record["skipped"].values()))
            s += f"; {len(record['skipped'])} left to plain rounding: {'; '.join(why)}"
        if record.get("tied"):
            s += (f" (the tied {', '.join(record['tied'])} multiplies by a quantized copy of its "
                  "embedding, which stays float)")
        return s

    # ------------------------------------------------------------------ later stages
    lowered = "QUANTIZE; quantize(model) once weights are loaded"

    @classmethod
    def lower(cls, g, low) -> None:
        """QUANTIZE = {linear: dict(scheme, group_size)} and quantize(model), which
        the compiled model runs once its float weights are loaded."""
        quant = {n: cls.scheme_of(d.attrs) for n, d in g.nodes(data=True)
                 if d.op == "linear" and d.attrs.get("quant_scheme")}
        if not quant:
            return
        rows = {k: f"dict(scheme={low.literal(s)}" + (f", group_size={gs})" if s == "int4_weight" else ")")
                for k, (s, gs) in low.patterns(g, quant).items()}
        low.after_load(
            low.table("QUANTIZE", "quantize: these linears' kernels (* = any layer)", rows),
            "def quantize(model, torch_compile=False, packed=None):\n"
            '    """Quantize the linears of QUANTIZE in place, with the fastest kernel for the\n'
            "    device the model is on (torch_compile=True: the fastest once torch.compile\n"
            "    fuses it); call it once float weights are loaded:\n"
            "    `model.load_state_dict(...); quantize(model)`.  packed: {linear path:\n"
            "    QuantizedWeight} integers to run as given (a compressed checkpoint's), the\n"
            '    others rounded to nearest.  model.quantization names the kernels that ran."""\n'
            "    return {fn}(model, QUANTIZE, torch_compile, packed)\n",
            ("named_linears", "set_module", "_torchao", "_in_dtype", "_flat_inputs", "_ao_dynamic", "QuantizedWeight",
             "rtn", "StaticInt8Linear",
             "_ao_linear", "_int4_tensor", "_quantize", "quantize_linears"))

    @classmethod
    def device_problem(cls, g, device) -> str | None:
        for n, d in g.nodes(data=True):
            why = device_problem(d.attrs["quant_scheme"], device) if d.attrs.get("quant_scheme") else None
            if why:
                return f"{n}: {why}"
        return None

    @classmethod
    def badges(cls, attrs: dict) -> list[str]:
        return [attrs["quant"] + (" (QAT)" if attrs.get("qat") else "")] if attrs.get("quant") else []

    # What the later stages read of a linear's marks (packed storage, QAT, export,
    # recovery, other passes), so that only this file knows their keys.
    @classmethod
    def holds(cls, attrs: dict) -> str | None:
        return "quantized" if attrs.get("quant") else None

    @classmethod
    def misfit(cls, attrs: dict) -> str | None:
        """An int4 linear whose new width is not whole groups, or whose outputs are
        not whole tiles (a low-rank factor): it stays float."""
        if attrs.get("quant_scheme") != "int4_weight":
            return None
        why = int4_unfit(attrs, attrs.get("group_size"))
        return f"int4: {why}" if why else None

    @classmethod
    def scheme_of(cls, attrs: dict) -> tuple[str, int | None] | None:
        """(scheme, weights per scale group or None) of a linear this pass
        quantized (per channel: its width); None for one it left alone."""
        if not attrs.get("quant_scheme"):
            return None
        group = attrs.get("group_size")
        return attrs["quant_scheme"], attrs["in"] if group == "channel" else group

    @classmethod
    def per_channel(cls, attrs: dict) -> bool:
        """Whether an int4 linear has one scale a row (group_size=channel)."""
        return attrs.get("quant_scheme") == "int4_weight" and attrs.get("group_size") == "channel"

    @classmethod
    def fake_quantized(cls, attrs: dict) -> tuple[str, int | None] | None:
        """(scheme, group size) of a linear trained with fake quantization (qat=true)."""
        return cls.scheme_of(attrs) if attrs.get("qat") else None

    @classmethod
    def weight_bytes(cls, d: dict, params: dict) -> int | None:
        """The compressed-tensors layout (strata/backends/torch/packed.py): int8, a
        byte a weight and an fp32 scale per row; int4, half a byte a weight (8 to an
        int32), a bf16 scale and a 4-bit zero point per group (zero points 8 rows to
        an int32), its int64 [2] shape and its bias in bf16; fp8, as int8."""
        a = d["attrs"]
        q = a.get("quant_scheme") if d["op"] == "linear" else None
        if q is None:
            return None
        total = 0
        for k, s in params.items():
            n = prod(s)
            if k.startswith("lora_"):
                total += 4 * n
            elif k == "weight":
                total += stored_weight_bytes(s[0], s[1], q, cls.scheme_of(a)[1])
            else:  # bias
                total += (2 if q == "int4_weight" else 4) * n
        return total

    @classmethod
    def prepare_training(cls, net, kit) -> list[str]:
        """qat=true: the marked linears train with fake quantization of their scheme."""
        if not kit.qat_linears(net):
            return []
        kit.prepare_qat(net)
        return [f"qat: {len(net.qat_prepared)} linears train with fake quantization"]

    @classmethod
    def finish_training(cls, net, kit) -> None:
        """After the last step the fake-quantized linears run their real kernels."""
        if getattr(net, "qat_prepared", None):
            kit.convert_qat(net)

    def details(self, record: dict) -> dict:
        """Per-layer errors, and for quantize(auto) the scheme, bits and
        sensitivity of each linear."""
        out = super().details(record)
        if record.get("auto"):
            out["auto"] = record["auto"]
        return out

    def stored(self, entry, g, adapters="merge") -> Stored:
        """A calibrated method's weights are stored as the integers it chose, under a
        plain quantize pass (rounding them again changes nothing); quantize(auto)
        as the plain passes of the scheme it chose for each linear."""
        if self.o.scheme == "auto":
            return Stored(kept=explicit_passes(g, entry["record"], self.o.group_size),
                          notes=[f"{self.label()}: the scheme it chose for each linear "
                                 "(report.json: passes[].auto)"])
        if not self.calibrated:
            return Stored(kept=[self.label()])
        plain = pass_text(self.name, {**self.o.model_dump(), "method": "rtn", "act_order": False, "observer": "minmax",
                                        "sequential": None, "smooth": None})
        return Stored(kept=[plain], notes=[f"{self.label()}: its weights are the method's, stored as the "
                                           "integers it chose"])
