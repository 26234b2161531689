"""What generated models run for their passes: low-rank factors, LoRA adapters,
quantized and 2:4-sparse kernels.

Like runtime.py, this is real, tested code that the code generator copies into
generated files (`runtime_source.py`); each definition uses only `math`,
`torch`, `nn` and `F` at import, and imports torchao inside the function that
needs it, so a generated file without quantization runs with torch alone.

Tables in the generated file name modules by path, `*` standing for any layer
index (`decoder.h.*.mlp.up`); `build()` applies the structural steps
(`factorize`, `add_adapters`) and `quantize(model)` / `sparsify(model)` run
after float weights are loaded.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from strata.passes.qparams import QuantizedWeight, rtn  # copied into generated files with the rest


def named_linears(model, table):
    """[(name, module, value)] for the modules whose name matches a pattern of
    `table` (`*` = one layer index); every pattern must match something."""
    found, used = [], set()
    for name, module in model.named_modules():
        for pattern, value in table.items():
            parts, have = pattern.split("."), name.split(".")
            if len(parts) == len(have) and all(p == h or (p == "*" and h.isdigit()) for p, h in zip(parts, have)):
                found.append((name, module, value))
                used.add(pattern)
    missing = [p for p in table if p not in used]
    if missing:
        raise RuntimeError(f"no module named {missing[0]!r} in this model: it was not built from this file")
    return found


def set_module(model, name, module):
    """Put `module` at dotted path `name` (layer indices included) of `model`."""
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


class LowRankLinear(nn.Module):
    """A linear layer factored to rank r by the low_rank pass: b(a(x)), W = B A."""

    def __init__(self, d_in, rank, d_out, bias=False):
        super().__init__()
        self.a = nn.Linear(d_in, rank, bias=False)
        self.b = nn.Linear(rank, d_out, bias=bias)

    def forward(self, x):
        return self.b(self.a(x))


def factorize(model, ranks):
    """Replace each linear named in `ranks` (path -> rank) by a LowRankLinear; the
    factors start random with the product's spread equal to the layer's (loading
    a checkpoint replaces them by its truncated SVD)."""
    for name, linear, rank in named_linears(model, ranks):
        w = linear.weight
        low = LowRankLinear(linear.in_features, rank, linear.out_features, bias=linear.bias is not None)
        low = low.to(device=w.device, dtype=w.dtype)
        if w.device.type != "meta":
            with torch.no_grad():
                std = math.sqrt(float(w.std()) / math.sqrt(rank))  # std(B A) = std(W)
                low.a.weight.normal_(0.0, std)
                low.b.weight.normal_(0.0, std)
                if linear.bias is not None:
                    low.b.bias.copy_(linear.bias)
        set_module(model, name, low)
    return model


class LoRALinear(nn.Linear):
    """y = x W^T + b + (alpha / rank) * dropout(x) A^T B^T: a frozen linear layer with
    a trainable low-rank adapter (LoRA); B starts at zero."""

    def __init__(self, d_in, d_out, bias=True, rank=8, alpha=8.0, dropout=0.0):
        super().__init__(d_in, d_out, bias=bias)
        self.lora_a = nn.Parameter(torch.empty(rank, d_in))
        self.lora_b = nn.Parameter(torch.zeros(d_out, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank
        self.lora_dropout = nn.Dropout(dropout)

    @classmethod
    def around(cls, linear, rank, alpha, dropout=0.0):
        """An adapter around `linear`, sharing its weight and bias Parameters."""
        with torch.device("meta"):
            lora = cls(linear.in_features, linear.out_features, linear.bias is not None, rank, alpha, dropout)
        w = linear.weight
        lora.weight, lora.bias = linear.weight, linear.bias
        lora.lora_a = nn.Parameter(torch.empty(rank, w.shape[1], device=w.device, dtype=w.dtype))
        lora.lora_b = nn.Parameter(torch.zeros(w.shape[0], rank, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(lora.lora_a, a=math.sqrt(5))
        return lora

    def forward(self, x):
        adapter = F.linear(F.linear(self.lora_dropout(x), self.lora_a), self.lora_b)
        return F.linear(x, self.weight, self.bias) + self.scale * adapter


def add_adapters(model, adapters):
    """Give each linear named in `adapters` (path -> dict(rank, alpha, dropout)) a
    LoRA adapter; it keeps its own weight and bias Parameters."""
    for name, linear, cfg in named_linears(model, adapters):
        set_module(model, name, LoRALinear.around(linear, **cfg))
    return model


def _torchao():
    """torchao's quantization API, imported quietly (its CUDA-only extensions log
    a warning each on a CPU build)."""
    import logging

    quiet = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        import torchao.quantization as tq
    except ImportError:
        raise RuntimeError("quantization needs torchao: pip install torchao") from None
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    return tq


def _in_dtype(module, dtype):
    """Run `module` in `dtype` (int4 / fp8 kernels take bf16 activations) and give
    its output back in the caller's dtype."""
    module.register_forward_pre_hook(lambda m, args: (args[0].to(dtype),) + tuple(args[1:]))
    module.register_forward_hook(lambda m, args, out: out.to(m.act_dtype))


class StaticInt8Linear(nn.Module):
    """int8_static on the CPU in eager mode: the input rounded to int8 on its one
    calibrated scale, an int8 x int8 -> int32 product (torch._int_mm, exact), then
    y = acc * (input_scale * weight_scale[row]) + bias.  q: int8 [out, in];
    weight_scale: fp32 [out]; input_scale: fp32 [1].  torchao's Int8Tensor
    computes the same rounding but in eager CPU mode runs slower than float."""

    def __init__(self, q, weight_scale, input_scale, bias=None, dtype=torch.float32):
        super().__init__()
        self.in_features, self.out_features = q.shape[1], q.shape[0]
        self.register_buffer("q", q.contiguous())
        self.register_buffer("weight_scale", weight_scale.reshape(-1).to(torch.float32))
        self.register_buffer("input_scale", input_scale.reshape(1).to(torch.float32))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.act_dtype = dtype

    def integers(self):
        """The integers and scales it runs (QuantizedWeight)."""
        return QuantizedWeight(self.q, self.weight_scale[:, None], None, self.in_features, 8, self.input_scale)

    def forward(self, x):
        rows = x.reshape(-1, self.in_features).to(torch.float32)
        xq = torch.round(rows / self.input_scale).clamp_(-128, 127).to(torch.int8)
        y = torch._int_mm(xq, self.q.t()).to(torch.float32) * (self.input_scale * self.weight_scale)
        if self.bias is not None:
            y = y + self.bias.to(torch.float32)
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)


def _flat_inputs(module):
    """Run `module` on its input as rows [-1, in] (torchao's static activation
    scale has the input's rank) and give the output back in the input's shape."""
    def flat(m, args):
        m.lead_shape = args[0].shape[:-1]
        return (args[0].reshape(-1, args[0].shape[-1]),) + tuple(args[1:])
    module.register_forward_pre_hook(flat)
    module.register_forward_hook(lambda m, args, out: out.reshape(*m.lead_shape, out.shape[-1]))


def _ao_dynamic():
    """torch.ao's dynamic quantization, where it exists and has a CPU engine."""
    import warnings

    engine = torch.backends.quantized.engine
    if engine not in ("x86", "fbgemm"):
        return None
    with warnings.catch_warnings():  # torch.ao.quantization warns that it is deprecated
        warnings.simplefilter("ignore")
        try:
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError:
            return None
    return quantize_dynamic, per_channel_dynamic_qconfig, engine


def _ao_linear(linear, qw):
    """A torch.ao dynamic int8 linear running the integers `qw` (symmetric, per row)."""
    import warnings

    with warnings.catch_warnings():  # torch.ao's quantized tensors warn that they are deprecated
        warnings.simplefilter("ignore")
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        weight = torch._make_per_channel_quantized_tensor(
            qw.q, qw.scale.flatten().to(torch.float64), torch.zeros(qw.q.shape[0], dtype=torch.int64), 0)
        out = DynamicLinear(linear.in_features, linear.out_features, bias_=linear.bias is not None,
                            dtype=torch.qint8)
        out.set_weight_bias(weight, None if linear.bias is None else linear.bias.detach().float())
    return out


def _int4_tensor(qw, device, shape):
    """torchao's int4 weight (tinygemm layout, bf16) running the integers `qw`:
    tinygemm computes (u - 8) * scale + z with u = q + 8 in 0..15, so z = -zero * scale."""
    from torchao.quantization.utils import pack_tinygemm_scales_and_zeros

    u = qw.q.to(torch.int32) + 8                                               # (out, in), 0..15
    scale = qw.scale.to(torch.bfloat16)                                        # (out, groups)
    z = (-qw.zero.to(torch.float32) * scale.to(torch.float32)).to(torch.bfloat16)
    # the kernels take groups of 32..256 inputs: a wider group (one a row, per
    # channel) runs as equal groups of the largest of these that divides it
    group = next(s for s in (256, 128, 64, 32, qw.group_size) if qw.group_size % s == 0)
    scale = scale.repeat_interleave(qw.group_size // group, dim=1)             # (out, in / group)
    z = z.repeat_interleave(qw.group_size // group, dim=1)
    block = [1, group]
    if device.type == "cpu":
        from torchao.prototype.quantization.int4.int4_opaque_tensor import Int4OpaqueTensor

        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(u.cpu(), 1)
        return Int4OpaqueTensor(packed, pack_tinygemm_scales_and_zeros(scale, z, torch.bfloat16).cpu(),
                                block, torch.Size(shape))
    from torchao.quantization import Int4TilePackedTo4dTensor

    n, k = shape  # the CUDA kernel takes inputs padded to 1024 and outputs to 8; pads compute 0
    pn, pk = -n % 8, -k % 1024
    u = F.pad(u, (0, pk, 0, pn), value=8)
    scale = F.pad(scale, (0, pk // group, 0, pn), value=1.0)
    z = F.pad(z, (0, pk // group, 0, pn), value=0.0)
    u = u.to(device)
    packed = torch.ops.aten._convert_weight_to_int4pack((u[:, ::2] << 4 | u[:, 1::2]).to(torch.uint8), 8)
    return Int4TilePackedTo4dTensor(packed, pack_tinygemm_scales_and_zeros(scale, z, torch.bfloat16).to(device),
                                    block, torch.Size(shape))


def _quantize(model, scheme, group_size, names, device, torch_compile=False, packed=None):
    """Run the linears `names` of `model` on `scheme`'s kernels, on the integers
    packed[name] (a QuantizedWeight: a compressed checkpoint's, or a calibration
    method's) or else on round-to-nearest ones (rtn); return the kernel used."""
    packed = packed or {}
    chosen = set(names)
    eager_cpu = device.type == "cpu" and not torch_compile  # torch.compile fuses torchao's best
    if scheme == "fp8":
        if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
            raise RuntimeError("fp8 quantization needs a CUDA GPU of compute capability >= 8.9 "
                               "(Ada, Hopper): use int8_dynamic or int8_weight")
        tq = _torchao()
        for name in names:
            m = model.get_submodule(name)
            m.act_dtype = m.weight.dtype
            m.to(torch.bfloat16)
            _in_dtype(m, torch.bfloat16)
        tq.quantize_(model, tq.Float8DynamicActivationFloat8WeightConfig(set_inductor_config=False),
                     filter_fn=lambda m, fqn: fqn in chosen)
        return "torchao Float8DynamicActivationFloat8WeightConfig"
    if scheme not in ("int8_dynamic", "int8_static", "int8_weight", "int4_weight"):
        raise RuntimeError(f"unknown quantization scheme {scheme!r}")
    if scheme == "int8_static":
        missing = [n for n in names if getattr(packed.get(n), "input_scale", None) is None]
        if missing:  # the activations' scales are data, not something rounding can choose
            raise RuntimeError(f"int8_static: {missing[0]} has no activation scale; it is chosen from "
                               "calibration data (strata compress --calibration, compile(..., calibration=ids)) "
                               "and a compressed checkpoint holds it (NAME.input_scale)")
    ao = _ao_dynamic() if scheme == "int8_dynamic" and eager_cpu else None
    int_mm = scheme == "int8_static" and eager_cpu and hasattr(torch, "_int_mm")
    if ao is None:
        tq = _torchao()
    for name in names:
        m = model.get_submodule(name)
        qw = packed.get(name)
        if qw is None:
            qw = rtn(m.weight, scheme, group_size)
        qw = QuantizedWeight(qw.q.to(m.weight.device), qw.scale.to(m.weight.device),
                             None if qw.zero is None else qw.zero.to(m.weight.device), qw.group_size, qw.bits,
                             None if qw.input_scale is None else qw.input_scale.to(m.weight.device))
        if ao is not None:
            set_module(model, name, _ao_linear(m, qw))
            continue
        if int_mm:
            set_module(model, name, StaticInt8Linear(qw.q, qw.scale, qw.input_scale, m.bias, m.weight.dtype))
            continue
        if scheme == "int4_weight":
            m.act_dtype = m.weight.dtype
            m.to(torch.bfloat16)
            _in_dtype(m, torch.bfloat16)
            w = _int4_tensor(qw, m.weight.device, tuple(m.weight.shape))
        else:
            from torchao.quantization.granularity import PerRow, PerTensor
            from torchao.quantization.quantize_.workflows.int8.int8_tensor import (
                Int8Tensor, QuantizeTensorToInt8Kwargs)

            act = QuantizeTensorToInt8Kwargs(granularity=PerRow()) if scheme == "int8_dynamic" else None
            static = None
            if scheme == "int8_static":  # one scale for every activation: torchao takes it [1, 1], inputs 2-D
                act = QuantizeTensorToInt8Kwargs(granularity=PerTensor())
                static = qw.input_scale.to(torch.float32).reshape(1, 1)
                _flat_inputs(m)
            w = Int8Tensor(qw.q, qw.scale.to(torch.float32), [1, qw.q.shape[1]], m.weight.dtype,
                           act_quant_kwargs=act, act_quant_scale=static)
        m.weight = nn.Parameter(w, requires_grad=False)
    if ao is not None:
        return f"torch.ao dynamic int8 ({ao[2]}, per-channel weights)"
    if scheme == "int8_dynamic":
        return "torchao Int8Tensor (dynamic int8 activations, per-row int8 weights)"
    if int_mm:
        return "int8 x int8 torch._int_mm (static per-tensor int8 activations, per-row int8 weights)"
    if scheme == "int8_static":
        return "torchao Int8Tensor (static per-tensor int8 activations, per-row int8 weights)"
    if scheme == "int8_weight":
        return "torchao Int8Tensor (per-row int8 weights)"
    where = "CPU" if device.type == "cpu" else "tinygemm"
    return f"torchao int4 ({where}, group {group_size}, bf16 activations)"


def quantize_linears(model, table, torch_compile=False, packed=None):
    """Quantize the linears named in `table` (path -> dict(scheme, group_size)) in
    place, with the fastest kernel for the device the model is on (in eager mode,
    or under torch.compile when `torch_compile`); packed: {linear path:
    QuantizedWeight} integers to run as given (a compressed checkpoint's), the
    others rounded to nearest.  Records the kernels in `model.quantization` and
    returns the model."""
    groups = {}
    for name, _, q in named_linears(model, table):
        groups.setdefault((q["scheme"], q.get("group_size")), []).append(name)
    device = next(model.parameters()).device
    used = []
    for (scheme, group_size), names in groups.items():
        kernel = _quantize(model, scheme, group_size, names, device, torch_compile, packed)
        used.append(f"{scheme}: {len(names)} linear{'s' * (len(names) != 1)} on {kernel}")
    model.quantization = used
    return model


def sparsify_2_4(model, names):
    """Store the 2:4-pruned weights of the linears `names` in PyTorch's
    semi-structured sparse format (CUDA compute capability >= 8.0, fp16 / bf16)."""
    device = next(model.parameters()).device
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 0):
        raise RuntimeError("2:4 sparsity runs on the semi-structured kernels of CUDA GPUs of compute "
                           "capability >= 8.0; elsewhere it only stores zeros: use prune(method=structured) "
                           "for a faster model, or magnitude for a sparser one")
    from torch.sparse import to_sparse_semi_structured

    for name in names:
        m = model.get_submodule(name)
        if m.weight.dtype not in (torch.float16, torch.bfloat16):
            raise RuntimeError(f"2:4 kernels take fp16 or bf16 weights; {name} is {m.weight.dtype}: "
                               "compile with dtype=torch.bfloat16")
        m.weight = nn.Parameter(to_sparse_semi_structured(m.weight), requires_grad=False)
    model.sparsity = [f"2:4: {len(names)} linears on torch.sparse semi-structured kernels"]
    return model
