"""Compressed checkpoints: quantized linears stored as the integers they run on,
in the `compressed-tensors` layout (what transformers and vLLM load).

A packed file is in the compiled model's own names (the module that holds the
integers: `decoder.h.0.attn.qkv`, a low-rank layer's `.a` / `.b` factors), like
a compressed-tensors checkpoint, with per quantized linear:

    int8_dynamic, int8_static   NAME.weight        int8 [out, in]
      (int-quantized)           NAME.weight_scale  fp32 [out, 1]
                                NAME.input_scale   fp32 [1]   (int8_static: its activations' scale)
    int8_weight                 NAME.weight_packed int32 [out, in / 4]   (4 values per int32)
      (pack-quantized)          NAME.weight_scale  fp32 [out, 1]
                                NAME.weight_shape  int64 [2]
    int4_weight                 NAME.weight_packed int32 [out, in / 8]   (8 values per int32)
      (pack-quantized)          NAME.weight_scale  bf16 [out, in / group]  ([out, 1] per channel)
                                NAME.weight_zero_point int32 [out / 8, in / group] (packed along rows)
                                NAME.weight_shape  int64 [2]
                                NAME.bias          bf16 (the int4 kernel's)

(`ct_format` decides each scheme's format, for the file, the report's
quantization_config and `strata export --to hf` alike; a file from before
int8_weight was packed, NAME.weight int8, still loads.)

pruned float linears as their kept weights and bitmask (`sparse-bitmask`,
strata/backends/torch/sparse_packed.py; a quantized and pruned one keeps its
integers' layout), and every other tensor as the model holds it.  The safetensors metadata says
`compression: compressed-tensors` (`format` stays `pt`, as transformers wants);
`strata compress` puts the `quantization_config` (the library's own json form)
in OUT/report.json.

In code::

    state = packed_state(model); qweights, rest = read_packed(tensors, model.strata_graph, path)
"""

from __future__ import annotations

import torch

from strata.backends.torch.model_tensors import quantized_modules, tied_names
from strata.backends.torch.sparse_packed import SUFFIXES as SPARSE, read_sparse, sparse_state
from strata.passes.qparams import QuantizedWeight
from strata.passes.quantize import Quantize
from strata.safetensors_file import WeightsError

__all__ = ["FORMAT", "ct_format", "is_packed", "packed_state", "quantization_config", "read_packed"]

FORMAT = "compressed-tensors"
SUFFIXES = ("weight_scale", "weight_packed", "weight_zero_point", "weight_shape")
# The compressed-tensors format of each scheme: the one transformers decompresses
# and vLLM has a kernel for (W8A8 int: int-quantized; weight-only int8 / int4,
# W8A16 / W4A16: pack-quantized, 4 / 8 values per int32).
_FORMATS = {"int8_dynamic": "int-quantized", "int8_static": "int-quantized", "int8_weight": "pack-quantized",
            "int4_weight": "pack-quantized"}


def ct_format(scheme: str) -> str:
    """The compressed-tensors format a quantized linear of `scheme` is stored in.

    >>> ct_format("int8_weight"), ct_format("int8_dynamic")
    ('pack-quantized', 'int-quantized')
    """
    return _FORMATS[scheme]


def _ct():
    """compressed-tensors' int32 packing, imported lazily (optional extra `compress`)."""
    try:
        from compressed_tensors.compressors.pack_quantized.helpers import (  # lazy: torch
            pack_to_int32,
            unpack_from_int32,
        )
    except ImportError:
        raise WeightsError("compressed checkpoints need compressed-tensors: "
                           "pip install 'strata[compress]'") from None
    return pack_to_int32, unpack_from_int32


def is_packed(names) -> bool:
    """Whether a checkpoint with these tensor names holds packed (quantized) or
    sparse-stored (pruned) linears."""
    return any(k.rsplit(".", 1)[-1] in SUFFIXES + SPARSE for k in names)


def quantized_weight(m: torch.nn.Module, group_size: int | None) -> QuantizedWeight | None:
    """The integers a quantized linear runs on, read back from its kernel (None:
    not a kernel strata builds from integers, e.g. fp8)."""
    if callable(getattr(m, "integers", None)):  # strata's StaticInt8Linear
        return m.integers()
    if callable(getattr(m, "weight", None)) and hasattr(m, "_packed_params"):  # torch.ao dynamic int8
        w = m.weight()
        return QuantizedWeight(w.int_repr(), w.q_per_channel_scales().to(torch.float32).unsqueeze(1),
                               None, w.shape[1], 8)
    w = m.weight
    name = type(w).__name__
    if name == "Int8Tensor":
        static = getattr(w, "act_quant_scale", None)
        return QuantizedWeight(w.qdata, w.scale, None, w.shape[1], 8,
                               None if static is None else static.reshape(1).to(torch.float32))
    if name in ("Int4OpaqueTensor", "Int4TilePackedTo4dTensor"):
        from torchao.quantization.utils import (  # lazy: torch
            pack_tinygemm_scales_and_zeros,
            unpack_tinygemm_scales_and_zeros,
        )

        n, k = w.shape
        groups = k // group_size
        scale, z = (t.squeeze(-1) for t in unpack_tinygemm_scales_and_zeros(w.scale_and_zero))
        scale, z = scale[:n, :groups], z[:n, :groups]
        # the integers u = q + 8 read off the kernel: with scale 1 and z 8 it computes u exactly
        pad_n, pad_k = w.scale_and_zero.shape[1], w.scale_and_zero.shape[0]
        unit = pack_tinygemm_scales_and_zeros(torch.ones(pad_n, pad_k, dtype=torch.bfloat16),
                                              torch.full((pad_n, pad_k), 8.0, dtype=torch.bfloat16),
                                              torch.bfloat16).to(w.device)
        probe = type(w)(w.qdata, unit, w.block_size, w.shape)
        eye = torch.eye(k, dtype=torch.bfloat16, device=w.device)
        with torch.no_grad():
            u = torch.nn.functional.linear(eye, probe).T                       # (out, in), 0..15
        zero = (-z.float() / scale.float()).round()                             # z = -zero * scale in bf16
        return QuantizedWeight((u.float() - 8).to(torch.int8).cpu(), scale.cpu(), zero.to(torch.int8).cpu(),
                               group_size, 4)
    return None


def pack(name: str, qw: QuantizedWeight, scheme: str) -> dict[str, torch.Tensor]:
    """The compressed-tensors tensors of one quantized linear of `scheme`."""
    if ct_format(scheme) == "int-quantized":
        out = {f"{name}.weight": qw.q.contiguous(), f"{name}.weight_scale": qw.scale.contiguous()}
        if scheme == "int8_static":
            out[f"{name}.input_scale"] = qw.input_scale.reshape(1).to(torch.float32).contiguous()
        return out
    pack_to_int32, _ = _ct()
    if qw.bits == 8:  # symmetric: no zero point
        return {f"{name}.weight_packed": pack_to_int32(qw.q.cpu().contiguous(), 8),
                f"{name}.weight_scale": qw.scale.contiguous(),
                f"{name}.weight_shape": torch.tensor(list(qw.q.shape), dtype=torch.int64)}
    return {f"{name}.weight_packed": pack_to_int32(qw.q.cpu(), 4),
            f"{name}.weight_scale": qw.scale.contiguous(),
            f"{name}.weight_zero_point": pack_to_int32(qw.zero.cpu().contiguous(), 4, packed_dim=0),
            f"{name}.weight_shape": torch.tensor(list(qw.q.shape), dtype=torch.int64)}


def packed_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors in its own names, each quantized linear as its packed
    integers, each pruned one its graph stores sparse in its bitmask layout (tied
    weights once, under the first name)."""
    g = model.strata_graph
    ties = tied_names(model)
    quantized = quantized_modules(model)
    out = {}
    for q in quantized:
        scheme, group_size = (Quantize.scheme_of(g.nodes[q].attrs) if q in g else None) or (None, None)
        qw = quantized_weight(model.get_submodule(q), group_size)
        if qw is None:
            raise WeightsError(f"{q}: {scheme} has no packed form yet; save the float "
                               "model and quantize when compiling")
        out.update(pack(q, qw, scheme or ("int4_weight" if qw.bits == 4 else "int8_dynamic")))
        bias = model.get_submodule(q).bias
        bias = bias() if callable(bias) else bias
        if bias is not None:
            out[f"{q}.bias"] = bias.detach()
    for k, v in model.state_dict().items():
        if k in ties or any(k.startswith(q + ".") for q in quantized):
            continue
        out[k] = v.detach()
    return {k: v.contiguous() for k, v in sparse_state(out, g).items()}


def read_packed(tensors: dict, g, where: str) -> tuple[dict[str, QuantizedWeight], dict]:
    """Split a packed checkpoint (in the model's names) into {linear: QuantizedWeight}
    and the other tensors, checked against the quantized linears of `g` (the graph
    after passes): a tensor that disagrees is one WeightsError naming it."""
    marked = {n: s for n, d in g.nodes(data=True) if (s := Quantize.scheme_of(d.attrs))}
    rest = read_sparse(tensors, g, where)  # pruned linears' dense weights
    out: dict[str, QuantizedWeight] = {}
    for n, (scheme, group_size) in marked.items():
        out[n] = _take(rest, n, scheme, _weight_shape(g, n), group_size, where)
    # a linear the spec runs in float but the file holds packed: its float weight is what the integers say
    for n in sorted({k.rsplit(".", 1)[0] for k in rest if k.rsplit(".", 1)[-1] in SUFFIXES}):
        if n not in g or "weight" not in g.nodes[n].params:
            raise WeightsError(f"{where}: {n} holds packed weights; the model has no linear {n}")
        shape = _weight_shape(g, n)
        scheme = "int4_weight" if f"{n}.weight_zero_point" in rest else "int8_weight"  # int4 is asymmetric
        scale = rest.get(f"{n}.weight_scale")
        gs = shape[1] // scale.shape[-1] if scheme == "int4_weight" and scale is not None and scale.ndim == 2 \
            and scale.shape[-1] and shape[1] % scale.shape[-1] == 0 else None
        rest[f"{n}.weight"] = _take(rest, n, scheme, shape, gs, where).dequantize()
    return out, rest


def _weight_shape(g, n: str) -> tuple[int, int]:
    d = g.nodes[n]
    if "weight" in d.params:
        return tuple(d.params["weight"])
    node, _, name = d.tied["weight"].rpartition(".")  # a tied head's copy: the embedding's shape
    return tuple(g.nodes[node].params[name])


def _take(rest: dict, n: str, scheme: str, shape: tuple[int, int], gs: int | None, where: str) -> QuantizedWeight:
    """Pop linear n's packed tensors from `rest`, checked against its [rows, cols]."""
    rows, cols = shape
    gs = gs or cols
    int8 = scheme != "int4_weight"
    int8_packed = int8 and f"{n}.weight_packed" in rest  # int8_weight as pack-quantized stores it
    want = ({f"{n}.weight_packed": ((rows, -(-cols // 4)), torch.int32), f"{n}.weight_shape": ((2,), torch.int64),
             f"{n}.weight_scale": ((rows, 1), torch.float32)} if int8_packed else
            {f"{n}.weight": ((rows, cols), torch.int8), f"{n}.weight_scale": ((rows, 1), torch.float32)}
            if int8 else
            {f"{n}.weight_packed": ((rows, -(-cols // 8)), torch.int32),
             f"{n}.weight_scale": ((rows, cols // gs), torch.bfloat16),
             f"{n}.weight_zero_point": ((-(-rows // 8), cols // gs), torch.int32),
             f"{n}.weight_shape": ((2,), torch.int64)})
    for k, (s, dtype) in want.items():
        t = rest.get(k)
        if t is None:
            raise WeightsError(f"{where}: {k} is missing: {n} is {scheme} in the spec; the file does "
                               "not hold its packed weights")
        if tuple(t.shape) != s or t.dtype != dtype:
            raise WeightsError(f"{where}: {k} is {str(t.dtype).removeprefix('torch.')} "
                               f"{list(t.shape)}; {n} ({scheme}, {rows}x{cols}) needs "
                               f"{str(dtype).removeprefix('torch.')} {list(s)}")
    # a scale multiplies every integer of its row or group: NaN or infinity there (a damaged
    # file, or a diverged model compressed) would make the model's outputs NaN, unseen until used
    scale = rest[f"{n}.weight_scale"]
    if not bool(torch.isfinite(scale).all()):
        raise WeightsError(f"{where}: {n}.weight_scale holds NaN or infinity; a scale must be a finite "
                           "number (compress the model again from finite float weights)")
    if scheme == "int8_static":
        return QuantizedWeight(rest.pop(f"{n}.weight"), rest.pop(f"{n}.weight_scale"), None, cols, 8,
                               _input_scale(rest, n, where))
    if int8 and not int8_packed:
        return QuantizedWeight(rest.pop(f"{n}.weight"), rest.pop(f"{n}.weight_scale"), None, cols, 8)
    if rest[f"{n}.weight_shape"].tolist() != [rows, cols]:
        raise WeightsError(f"{where}: {n}.weight_shape is {rest[f'{n}.weight_shape'].tolist()}; "
                           f"the spec's {n} is {rows}x{cols}")
    _, unpack_from_int32 = _ct()
    if int8:
        q = unpack_from_int32(rest.pop(f"{n}.weight_packed"), 8, torch.Size((rows, cols))).to(torch.int8)
        rest.pop(f"{n}.weight_shape")
        return QuantizedWeight(q, rest.pop(f"{n}.weight_scale"), None, cols, 8)
    q = unpack_from_int32(rest.pop(f"{n}.weight_packed"), 4, torch.Size((rows, cols)))
    zero = unpack_from_int32(rest.pop(f"{n}.weight_zero_point"), 4, torch.Size((rows, cols // gs)), packed_dim=0)
    rest.pop(f"{n}.weight_shape")
    return QuantizedWeight(q, rest.pop(f"{n}.weight_scale"), zero, gs, 4)


def _input_scale(rest: dict, n: str, where: str) -> torch.Tensor:
    """Pop int8_static linear n's activation scale: fp32 [1], finite and positive."""
    t = rest.get(f"{n}.input_scale")
    if t is None:
        raise WeightsError(f"{where}: {n}.input_scale is missing: {n} is int8_static in the spec, whose "
                           "activations' scale the file must hold")
    if tuple(t.shape) != (1,) or t.dtype != torch.float32:
        raise WeightsError(f"{where}: {n}.input_scale is {str(t.dtype).removeprefix('torch.')} {list(t.shape)}; "
                           "int8_static needs float32 [1]")
    if not (bool(torch.isfinite(t).all()) and float(t) > 0):
        raise WeightsError(f"{where}: {n}.input_scale is {float(t)}; an activation scale must be a finite "
                           "positive number")
    return rest.pop(f"{n}.input_scale")


def quantization_config(g) -> dict | None:
    """The compressed-tensors `quantization_config` (its own json form) for the
    quantized linears of `g`, or None when none is quantized."""
    try:
        from compressed_tensors.quantization import QuantizationConfig, QuantizationScheme  # lazy: torch
    except ImportError:
        return None
    groups: dict[tuple, list[str]] = {}
    for n, d in g.nodes(data=True):
        s = Quantize.scheme_of(d.attrs)
        if s is not None and s[0] in ("int8_dynamic", "int8_static", "int8_weight", "int4_weight"):
            if Quantize.per_channel(d.attrs):
                s = (s[0], "channel")  # one scale a row: compressed-tensors' channel strategy
            groups.setdefault(s, []).append(n)
    if not groups:
        return None
    schemes = {}
    for i, ((scheme, gs), names) in enumerate(sorted(groups.items(), key=str)):
        if scheme == "int4_weight" and gs == "channel":
            weights = dict(num_bits=4, type="int", symmetric=False, strategy="channel")
        elif scheme == "int4_weight":
            weights = dict(num_bits=4, type="int", symmetric=False, strategy="group", group_size=gs)
        else:
            weights = dict(num_bits=8, type="int", symmetric=True, strategy="channel")
        acts = (dict(num_bits=8, type="int", symmetric=True, strategy="token", dynamic=True)
                if scheme == "int8_dynamic" else
                dict(num_bits=8, type="int", symmetric=True, strategy="tensor", dynamic=False)
                if scheme == "int8_static" else None)
        # each group says its own format: compressed-tensors reads it per module
        schemes[f"group_{i}"] = QuantizationScheme(targets=names, weights=weights, input_activations=acts,
                                                   format=ct_format(scheme))
    formats = {ct_format(s) for s, _ in groups}
    fmt = formats.pop() if len(formats) == 1 else "mixed-precision"
    cfg = QuantizationConfig(config_groups=schemes, format=fmt, quantization_status="compressed")
    return cfg.model_dump(mode="json", exclude_none=True)
