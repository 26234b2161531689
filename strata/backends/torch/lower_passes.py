"""The passes' marks on the IR, lowered into the generated file as tables and
steps a reader can see:

    LOW_RANK = {"decoder.h.*.mlp.down": 64}          low_rank: build() factorizes
    LORA = {"decoder.h.*.attn.q": dict(rank=8, ...)} lora: build() adds adapters
    QUANTIZE = {"decoder.h.*.mlp.up": dict(scheme="int8_dynamic")}
                                                     quantize(model), after loading
    SPARSE_2_4 = ["decoder.h.0.mlp.up", ...]         sparsify(model), after loading

`*` stands for any layer index (a pattern is collapsed only when every layer
of the repeat carries the same mark).  Marks are read from node attributes the
passes set (`low_rank`, `lora`, `quant_scheme`) and from g.graph["sparse_2_4"];
structured pruning needs nothing here (it changed the sizes themselves).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strata.backends.torch import pysafe
from strata.passes._rewrite import fold_layers as patterns
from strata.passes.text import pass_text

__all__ = ["PassLowering", "lower_passes"]

# Runtime helpers each step needs, in the order they appear in the file.
NEEDS = {
    "factorize": ("named_linears", "set_module", "LowRankLinear", "factorize"),
    "add_adapters": ("named_linears", "set_module", "LoRALinear", "add_adapters"),
    "quantize_linears": ("named_linears", "set_module", "_torchao", "_in_dtype", "_ao_dynamic",
                         "QuantizedWeight", "rtn", "_ao_linear", "_int4_tensor", "_quantize",
                         "quantize_linears"),
    "sparsify_2_4": ("sparsify_2_4",),
}


# What each pass became in the file, for its docstring.
WHERE = {"fuse_qkv": "one matmul for q, k, v (qkv / kv)", "fuse_mlp": "one matmul for gate and up",
         "quantize": "QUANTIZE; quantize(model) once weights are loaded",
         "low_rank": "LOW_RANK; build() factorizes", "lora": "LORA; build() adds the adapters",
         "distill": "strata train distills", "magnitude": "the zeros are in the weights",
         "wanda": "the zeros are in the weights", "structured": "the sizes are the pruned ones",
         "2:4": "SPARSE_2_4; sparsify(model) once weights are loaded",
         "sparsegpt": "the zeros and updated weights are in the weights"}


def pass_lines(g) -> list[str]:
    """One docstring line per applied pass: as the spec writes it, and where it is."""
    out = []
    for a in g.graph.get("applied", []):
        label = pass_text(a["name"], a["options"])
        key = a["options"].get("method", a["name"]) if a["name"] == "prune" else a["name"]
        out.append(f"    {pysafe.text(label)}  -- {WHERE[key]}")
    return out


@dataclass
class PassLowering:
    tables: list[str] = field(default_factory=list)      # module-level constants, before build()
    build_steps: list[str] = field(default_factory=list)  # lines of build() after the model is made
    after: list[str] = field(default_factory=list)       # functions after build()

    def __bool__(self) -> bool:
        return bool(self.tables)


def _table(name: str, comment: str, rows: dict[str, str]) -> str:
    lines = [f"{name} = {{  # {comment}"]
    lines += [f"    {pysafe.literal(k)}: {v}," for k, v in rows.items()]
    return "\n".join(lines) + "\n}\n"


def _need(out, step: str) -> str:
    for h in NEEDS[step]:
        out.runtime(h)
    return step


def lower_passes(g, out) -> PassLowering:
    """Tables and steps for the passes applied to `g`, helpers marked on `out`."""
    low = PassLowering()
    ranks, adapters, quant = {}, {}, {}
    for n, d in g.nodes(data=True):
        a = d["attrs"]
        if d["op"] != "linear":
            continue
        if a.get("low_rank") == "a":
            ranks[n.rpartition(".")[0]] = a["rank"]
        if a.get("lora"):
            adapters[n] = a["lora"]
        if a.get("quant_scheme"):
            quant[n] = a["quant_scheme"], a.get("group_size")
    if ranks:
        rows = {k: str(v) for k, v in patterns(g, ranks).items()}
        low.tables.append(_table("LOW_RANK", "low_rank: these linears become b(a(x)), of this rank "
                                 "(* = any layer)", rows))
        low.build_steps.append(f"    {_need(out, 'factorize')}(model, LOW_RANK)")
    if adapters:
        rows = {k: "dict(rank={rank}, alpha={alpha}, dropout={dropout})".format(**v)
                for k, v in patterns(g, adapters).items()}
        low.tables.append(_table("LORA", "lora: trainable adapters on these linears (* = any layer)", rows))
        low.build_steps.append(f"    {_need(out, 'add_adapters')}(model, LORA)")
    if quant:
        rows = {k: f"dict(scheme={pysafe.literal(s)}" + (f", group_size={gs})" if s == "int4_weight" else ")")
                for k, (s, gs) in patterns(g, quant).items()}
        low.tables.append(_table("QUANTIZE", "quantize: these linears' kernels (* = any layer)", rows))
        fn = _need(out, "quantize_linears")
        low.after.append(
            "def quantize(model, torch_compile=False, packed=None):\n"
            '    """Quantize the linears of QUANTIZE in place, with the fastest kernel for the\n'
            "    device the model is on (torch_compile=True: the fastest once torch.compile\n"
            "    fuses it); call it once float weights are loaded:\n"
            "    `model.load_state_dict(...); quantize(model)`.  packed: {linear path:\n"
            "    QuantizedWeight} integers to run as given (a compressed checkpoint's), the\n"
            '    others rounded to nearest.  model.quantization names the kernels that ran."""\n'
            f"    return {fn}(model, QUANTIZE, torch_compile, packed)\n")
    sparse = g.graph.get("sparse_2_4") or []
    if sparse:
        low.tables.append("SPARSE_2_4 = [  # prune(method=\"2:4\"): two of every four weights kept\n"
                          + "".join(f"    {pysafe.literal(n)},\n" for n in sparse) + "]\n")
        fn = _need(out, "sparsify_2_4")
        low.after.append(
            "def sparsify(model):\n"
            '    """Run the 2:4-pruned linears of SPARSE_2_4 on semi-structured sparse kernels\n'
            '    (CUDA compute capability >= 8.0); call it once the pruned weights are loaded."""\n'
            f"    return {fn}(model, SPARSE_2_4)\n")
    return low
