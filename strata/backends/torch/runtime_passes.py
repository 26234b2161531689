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


def _quantize(model, scheme, group_size, names, device, torch_compile=False):
    """Quantize the linears `names` of `model` with `scheme`; return the kernel used."""
    import warnings

    chosen = set(names)
    eager_cpu = device.type == "cpu" and not torch_compile  # torch.compile fuses torchao's best
    if scheme == "int8_dynamic" and eager_cpu and (ao := _ao_dynamic()) is not None:
        quantize_dynamic, qconfig, engine = ao
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(model, {n: qconfig for n in names}, dtype=torch.qint8, inplace=True)
        return f"torch.ao dynamic int8 ({engine}, per-channel weights)"
    tq = _torchao()
    if scheme == "int8_dynamic":
        config, kernel = tq.Int8DynamicActivationInt8WeightConfig(set_inductor_config=False), \
            "torchao Int8DynamicActivationInt8WeightConfig"
    elif scheme == "int8_weight":
        config, kernel = tq.Int8WeightOnlyConfig(set_inductor_config=False), "torchao Int8WeightOnlyConfig"
    elif scheme == "int4_weight" and device.type == "cuda":
        config = tq.Int4WeightOnlyConfig(group_size=group_size, int4_packing_format="tile_packed_to_4d")
        kernel = f"torchao Int4WeightOnlyConfig (tinygemm, group {group_size}, bf16 activations)"
    elif scheme == "int4_weight":
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

        config = PrototypeInt4WeightOnlyConfig(group_size=group_size, set_inductor_config=False)
        kernel = f"torchao PrototypeInt4WeightOnlyConfig (CPU, group {group_size}, bf16 activations)"
    elif scheme == "fp8":
        if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
            raise RuntimeError("fp8 quantization needs a CUDA GPU of compute capability >= 8.9 "
                               "(Ada, Hopper): use int8_dynamic or int8_weight")
        config, kernel = tq.Float8DynamicActivationFloat8WeightConfig(set_inductor_config=False), \
            "torchao Float8DynamicActivationFloat8WeightConfig"
    else:
        raise RuntimeError(f"unknown quantization scheme {scheme!r}")
    if scheme in ("int4_weight", "fp8"):  # these kernels take bf16 weights and activations
        for name in names:
            m = model.get_submodule(name)
            m.act_dtype = m.weight.dtype
            m.to(torch.bfloat16)
            _in_dtype(m, torch.bfloat16)
    tq.quantize_(model, config, filter_fn=lambda m, fqn: fqn in chosen)
    return kernel


def quantize_linears(model, table, torch_compile=False):
    """Quantize the linears named in `table` (path -> dict(scheme, group_size)) in
    place, with the fastest kernel for the device the model is on (in eager mode,
    or under torch.compile when `torch_compile`); records the kernels in
    `model.quantization` and returns the model."""
    groups = {}
    for name, _, q in named_linears(model, table):
        groups.setdefault((q["scheme"], q.get("group_size")), []).append(name)
    device = next(model.parameters()).device
    used = []
    for (scheme, group_size), names in groups.items():
        kernel = _quantize(model, scheme, group_size, names, device, torch_compile)
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
