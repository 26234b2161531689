"""`strata export --to hf` of a quantized `strata compress` output, its
quantized linears in the compressed-tensors form, which transformers loads with
the `compressed-tensors` package (and vLLM serves, for a family): a family
spec whose passes are quantize passes alone becomes the family's own folder
(`family_tensors`); any other spec custom code, the module compiled without its
quantize passes and the integers under its own names (`code_tensors`).

    compress output (packed, model names)              Hugging Face folder
    decoder.layers.0.attn.q.weight        int8   ──►   model.layers.0.self_attn.q_proj.weight        (int-quantized)
    decoder.layers.0.attn.q.weight_scale  fp32   ──►   model.layers.0.self_attn.q_proj.weight_scale
    decoder.layers.0.mlp.up.weight_packed int32  ──►   model.layers.0.mlp.up_proj.weight_packed      (pack-quantized:
      int8_weight, int4_weight)
      .weight_scale bf16, .weight_zero_point int32, .weight_shape int64   ──►   the same suffixes
    every float tensor                           ──►   the family's names (strata.interop.hf.checkpoint_reader.unconvert)
    config.json                                  ──►   + quantization_config, targets in the family's names

A quantized linear keeps its integers only where the family stores it as one
tensor of its own (Llama's q_proj); one the family fuses or transposes (GPT-2's
c_attn, Falcon's query_key_value) has no place for them: refused, naming it.
The integers are copied, never re-rounded, so transformers computes with
exactly the weights strata's kernels hold.  torch-only; transformers is not
imported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from strata.backends.torch.packed import ct_format, is_packed, quantization_config, read_packed
from strata.compiler.ir import state_dict_shapes
from strata.errors import UsageError
from strata.interop.hf.config import Config, HFImportError
from strata.interop.hf.checkpoint_reader import check, unconvert
from strata.passes import PassContext, apply_passes
from strata.passes.quantize import Quantize
from strata.safetensors_file import WeightsError

class ExportError(UsageError):
    """A model the target cannot take: one line naming the component and the reason."""


# the schemes whose integers strata packs (strata.backends.torch.packed)
SCHEMES = ("int8_dynamic", "int8_static", "int8_weight", "int4_weight")
SUFFIXES = ("weight", "weight_scale", "weight_packed", "weight_zero_point", "weight_shape", "input_scale")


@dataclass
class PackedCheckpoint:
    graph: object           # the graph after the spec's passes (quant_scheme on each quantized linear)
    quantized: dict         # linear (the model's name) -> scheme
    tensors: dict           # the file's tensors, the model's names
    floats: dict            # the float tensors in the spec's names (quantized weights dequantized)


def only_quantize(g) -> bool:
    """Whether the spec's passes are quantize passes and masks alone (names and
    shapes unchanged: a compressed model's prune(amount), whose zeros its file
    stores sparse and an export writes dense)."""
    passes = g.graph.get("passes") or []
    return bool(passes) and all(p["name"] == "quantize" or (p["name"] == "prune" and p["options"].get(
        "method", "magnitude") == "magnitude") for p in passes)


def read_packed_checkpoint(g0, path: Path) -> PackedCheckpoint | None:
    """The packed checkpoint at `path` for graph `g0` (passes pending), or None
    when it is a float one."""


    tensors = load_file(str(path))
    if not is_packed(tensors):
        return None
    g = apply_passes(g0, ctx=PassContext())
    marked = {n: s[0] for n, d in g.nodes(data=True) if (s := Quantize.scheme_of(d.attrs))}
    for n, scheme in marked.items():
        if scheme not in SCHEMES:
            raise ExportError(f"{n}: quantize({scheme}) has no compressed-tensors form strata writes "
                              f"({', '.join(SCHEMES)}); export the float model")
    try:
        qweights, rest = read_packed(dict(tensors), g, str(path))
    except WeightsError as e:
        raise ExportError(str(e)) from None
    floats = {k: v for k, v in rest.items()}
    floats.update({f"{n}.weight": qw.dequantize() for n, qw in qweights.items()})
    if only_quantize(g0):  # the model's names are the spec's
        problems = check(floats, state_dict_shapes(g0))
        if problems:
            raise ExportError(f"{path}: the weights do not fit the spec: {'; '.join(problems[:3])}")
    return PackedCheckpoint(g, marked, tensors, floats)


def code_tensors(packed: PackedCheckpoint, state: dict, ties: dict) -> tuple[dict, dict]:
    """(the custom-code repository's tensors, the quantization_config) for the
    float module whose state dict is `state` (the spec's other passes applied,
    the quantize passes not): each quantized linear's integers under `model.`,
    every other tensor from the checkpoint.  ties: tied name -> saved name."""
    where = {k.rsplit(".", 1)[0] for k in packed.tensors if k.rsplit(".", 1)[-1] in SUFFIXES[1:]}
    out = {}
    for n in packed.quantized:
        if f"{n}.weight" not in state:
            raise ExportError(f"{n}: quantized, and the module without its quantize pass has no linear {n}")
        out.update(_module_tensors(f"model.{n}", packed.quantized[n], {
            s: packed.tensors[f"{n}.{s}"] for s in SUFFIXES if f"{n}.{s}" in packed.tensors}))
    for k, v in state.items():
        owner = k.rsplit(".", 1)[0]
        if owner in packed.quantized and k.endswith(".weight"):
            continue
        # floats: a pruned linear's weight made dense from its sparse-bitmask tensors
        t = packed.floats.get(k, packed.floats.get(ties.get(k, k)))
        if t is None or owner in where - set(packed.quantized) or tuple(t.shape) != tuple(v.shape):
            got = "missing" if t is None else f"{list(t.shape)}"
            raise ExportError(f"{k}: the compressed checkpoint's is {got}; the model's is {list(v.shape)}")
        out[f"model.{k}"] = (t.to(v.dtype) if t.is_floating_point() else t).clone()  # (a tie: its own copy)
    cfg = _config(packed, {n: f"model.{n}" for n in packed.quantized})
    return {k: v.contiguous() for k, v in out.items()}, cfg


def family_tensors(match, packed: PackedCheckpoint) -> tuple[dict, dict]:
    """(the family's tensors, quantized ones as compressed-tensors stores them;
    the compressed-tensors quantization_config, targets in the family's names)."""


    m = match.family.mapping(Config(match.config), match.layout, set())
    users: dict[str, int] = {}
    for theirs, _ in m.renames.values():
        users[theirs] = users.get(theirs, 0) + 1
    modules = {}
    for n in packed.quantized:
        theirs, fn = m.renames.get(f"{n}.weight", (None, None))
        if theirs is None or fn is not None or users[theirs] > 1 or not theirs.endswith(".weight"):
            how = "has no weight of its own" if theirs is None else f"stores it in {theirs}" + (
                " with others" if theirs and users[theirs] > 1 else " transformed")
            raise ExportError(f"{n}: quantized, but the {match.config['model_type']} layout {how}; "
                              "compressed-tensors needs one linear per module: leave it float "
                              f"(quantize(..., on=...) without {n.rsplit('.', 1)[-1]}) or export as float")
        modules[n] = theirs.removesuffix(".weight")
    float_map = replace(m, renames={k: v for k, v in m.renames.items()
                                    if k.removesuffix(".weight") not in packed.quantized or not k.endswith(".weight")})
    rest = {k: v for k, v in packed.floats.items() if k in float_map.renames}
    dtype = next((v.dtype for k, v in rest.items() if v.is_floating_point()), torch.float32)
    try:
        out = unconvert({k: v.to(dtype) for k, v in rest.items()}, float_map)
    except HFImportError as e:
        raise ExportError(str(e)) from None
    for n, module in modules.items():
        out.update(_module_tensors(module, packed.quantized[n], {
            s: packed.tensors[f"{n}.{s}"] for s in SUFFIXES if f"{n}.{s}" in packed.tensors}))
    return out, _config(packed, modules)


def _config(packed: PackedCheckpoint, modules: dict) -> dict:
    """The compressed-tensors quantization_config, targets named by `modules`
    (linear -> module name in the exported model); None when nothing is
    quantized (a pruned model's zeros, exported dense)."""
    if not packed.quantized:
        return None

    cfg = quantization_config(packed.graph)
    if cfg is None:
        raise ExportError("the quantization config needs compressed-tensors: pip install 'strata[compress]'")
    for group in cfg["config_groups"].values():  # the formats are the file's (packed.ct_format)
        group["targets"] = [modules[t] for t in group["targets"]]
    if any(g["weights"].get("symmetric") is False for g in cfg["config_groups"].values()):
        if len(cfg["config_groups"]) > 1:
            raise ExportError(
                f"{next(n for n, s in packed.quantized.items() if s == 'int4_weight')}: int4_weight beside "
                "other schemes: transformers cannot load an asymmetric int4 group among others (its "
                "compressed route mis-shapes the zero point, its dequantizing route takes one scheme for "
                "the whole model); quantize with one int4 group, or int8 schemes alone")
        # transformers (5.25, compressed-tensors 0.20.1) builds an asymmetric group's
        # zero point unpacked ([out, groups]) before loading and then refuses the
        # packed [out / 8, groups] one the format defines: its load-time
        # dequantization reads the format right.  On CPU the compressed route
        # decompresses at the first forward anyway; vLLM does not read the key.
        cfg["dequantize"] = True
    return cfg


def _module_tensors(module: str, scheme: str, t: dict) -> dict:
    """One quantized linear's tensors under its Hugging Face module name, in its
    scheme's compressed-tensors format (packed.ct_format: what strata stores; a
    file from before strata packed int8_weight, int8 [out, in], is packed here
    into int32, 4 per word, as pack-quantized holds it).  compressed-tensors
    infers the same format from the scheme when a group names none."""

    if ct_format(scheme) == "pack-quantized" and "weight" in t:
        from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32  # lazy: optional

        q = t.pop("weight")
        t.update(weight_packed=pack_to_int32(q, 8), weight_shape=torch.tensor(list(q.shape), dtype=torch.int64))
    return {f"{module}.{k}": v.contiguous() for k, v in t.items()}
