"""The quantization arithmetic, in one place: a linear's weight as integers and
the scales (and zero points) that bring them back.

    rtn(weight, scheme, group_size) -> QuantizedWeight(q, scale, zero, group_size)

    scheme        q                      scale                     zero           weight ~
    int8_dynamic  int8 [out, in]         fp32 [out, 1]             None           q * scale
    int8_static   (symmetric, per output row; -128..127; int8_static also
    int8_weight   carries input_scale fp32 [1]: its activations' one scale)
    int4_weight   int8 [out, in] -8..7   bf16 [out, in / group]    int8 -8..7     (q - zero) * scale
                  (asymmetric, groups of `group_size` along the input;
                  group_size None: one group a row, per channel)

These are the conventions of the `compressed-tensors` format (its symmetric
int8 channel scheme and its asymmetric W4A16 group scheme: scale = range /
(qmax - qmin), zero point rounded into the integer range), so what strata stores
is what transformers and vLLM read.  The int4 scale is rounded to bf16 before
the integers are chosen, since bf16 is what the CPU / CUDA int4 kernels compute
with: the stored scale is the one that runs.

A calibration method (GPTQ, AWQ) that chooses its own integers hands a
QuantizedWeight per linear to `strata compress` (state[name + QUANTIZED] in the
compress state); the packer stores it and the kernels run it as given.  Without
one, round-to-nearest (`rtn`) is used.

torch only, no strata import: the code generator copies these definitions
into generated files, whose `quantize(model)` uses them.

    >>> import torch
    >>> qw = rtn(torch.tensor([[1.0, -2.0], [0.5, 0.25]]), "int8_weight")
    >>> qw.q.tolist(), [round(s, 4) for s in qw.scale.flatten().tolist()]
    ([[64, -127], [127, 64]], [0.0157, 0.0039])
"""

from dataclasses import dataclass

import torch

# The key under which a method's chosen integers for linear NAME travel in the
# compress state: state[NAME + QUANTIZED] = QuantizedWeight(...).
QUANTIZED = ".quantized"


@dataclass
class QuantizedWeight:
    """A linear's weight as integers: weight ~ (q - zero) * scale, each scale
    (and zero) covering `group_size` inputs of one output row (group_size =
    in_features: one per row).  q: int8 [out, in]; scale: [out, in / group_size];
    zero: int8 like scale, or None (symmetric)."""

    q: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor | None
    group_size: int
    bits: int = 8
    # int8_static: the one scale of the layer's int8 activations, fp32 [1]
    # (x_q = clamp(round(x / input_scale), -128, 127)), chosen from calibration data
    input_scale: torch.Tensor | None = None

    def dequantize(self, dtype=torch.float32):
        """The float weight these integers stand for, [out, in]."""
        q = self.q.to(torch.float32).unflatten(1, (-1, self.group_size))   # (out, groups, group)
        if self.zero is not None:
            q = q - self.zero.to(torch.float32).unsqueeze(-1)
        return (q * self.scale.to(torch.float32).unsqueeze(-1)).flatten(1).to(dtype)


def rtn(weight, scheme, group_size=None):
    """Round-to-nearest integers for `weight` ([out, in], float) under `scheme`
    (int8_dynamic / int8_static / int8_weight: symmetric per row; int4_weight:
    asymmetric, groups of `group_size` inputs, or one a row when it is None)."""
    w = weight.detach().to(torch.float32)
    if scheme in ("int8_dynamic", "int8_static", "int8_weight"):
        amax = w.abs().amax(dim=1, keepdim=True)                            # (out, 1)
        scale = (amax / 127.5).clamp(min=torch.finfo(torch.float32).eps)
        q = (w / scale).round().clamp(-128, 127).to(torch.int8)
        return QuantizedWeight(q, scale, None, w.shape[1], 8)
    if scheme != "int4_weight":
        raise ValueError(f"no integer form for quantization scheme {scheme!r}")
    group_size = group_size or w.shape[1]
    g = w.unflatten(1, (-1, group_size))                                     # (out, groups, group)
    lo = g.amin(dim=-1).clamp(max=0.0)
    hi = g.amax(dim=-1).clamp(min=0.0)
    scale = ((hi - lo) / 15.0).clamp(min=1e-6).to(torch.bfloat16)           # (out, groups)
    s = scale.to(torch.float32)
    zero = ((-lo / s).round() - 8).clamp(-8, 7)
    q = ((g / s.unsqueeze(-1)).round() + zero.unsqueeze(-1)).clamp(-8, 7)
    return QuantizedWeight(q.flatten(1).to(torch.int8), scale, zero.to(torch.int8), group_size, 4)
