"""The integer grids the quantize schemes store, as torchao computes them from a
float weight W [out, in] (round to nearest, "RTN"); GPTQ and AWQ choose weights
on the same grid, so what they pick is what the kernels run.

    int8_weight / int8_dynamic   symmetric per output row: scale = max|W_row| / 127.5,
                                 q = clamp(round(W / scale), -128, 127), W ~ q * scale
                                 (torchao Int8WeightOnlyConfig; torch.ao per-channel int8)
    int4_weight                  asymmetric per group of `group_size` inputs, the
                                 tinygemm layout: scale = (max - min) / 15, zero =
                                 min + 8 * scale, q = clamp(round((W - zero) / scale) + 8, 0, 15),
                                 W ~ (q - 8) * scale + zero

`QuantizedWeight` is what a calibrated method hands on per linear: the integer
values, the scales and zero points (None for symmetric schemes) and the float
weight they decode to.  The float weight goes into the state dict (today's
float path re-quantizes it with torchao); the integers are kept keyed by the
linear's name (PassContext.quantized) for a packer that stores them as they are.

    >>> import torch
    >>> g = Grid("int4_weight", 4)
    >>> w = torch.tensor([[0.0, 6.0, 30.0, 11.0]])
    >>> s, z = g.params(w)          # scale 2, zero 16
    >>> q = g.quantize(w, s, z)
    >>> q.int().tolist(), g.dequantize(q, s, z).tolist()
    ([[0, 3, 15, 6]], [[0.0, 6.0, 30.0, 12.0]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["Grid", "QuantizedWeight"]

EPS = 1e-6  # torchao's smallest scale for these schemes


@dataclass
class QuantizedWeight:
    """One linear's weight on its scheme's grid.  q: int8 [out, in] (int4 values
    0..15 held in int8); scale, zero: float [out, in // group] (int8: [out, 1],
    zero None); weight: the float [out, in] they decode to."""

    scheme: str
    group_size: int | None
    q: "torch.Tensor"
    scale: "torch.Tensor"
    zero: "torch.Tensor | None"
    weight: "torch.Tensor"


class Grid:
    """The grid of `scheme` (int8_weight, int8_dynamic, int4_weight) with `group_size`
    inputs per scale (int4 only; int8 scales whole rows)."""

    def __init__(self, scheme: str, group_size: int | None = None):
        if scheme not in ("int8_weight", "int8_dynamic", "int4_weight"):
            raise ValueError(f"no integer grid for {scheme!r}")
        self.scheme = scheme
        self.symmetric = scheme != "int4_weight"
        self.group = group_size if scheme == "int4_weight" else None
        self.qmin, self.qmax = (-128, 127) if self.symmetric else (0, 15)

    def params(self, w: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor | None"]:
        """(scale, zero) of the columns `w` [out, k] as ONE group per row (k <= group):
        each [out, 1]."""
        if self.symmetric:
            amax = w.abs().amax(dim=1, keepdim=True)
            return (amax / ((self.qmax - self.qmin) / 2)).clamp(min=EPS), None
        lo, hi = w.amin(dim=1, keepdim=True), w.amax(dim=1, keepdim=True)
        scale = ((hi - lo) / (self.qmax - self.qmin)).clamp(min=EPS)
        return scale, lo + scale * ((self.qmax + self.qmin + 1) / 2)

    def quantize(self, w, scale, zero):
        """Integer values of `w` [out, k] with per-row (scale, zero) [out, 1]."""
        import torch

        if self.symmetric:
            return torch.clamp(torch.round(w / scale), self.qmin, self.qmax)
        mid = (self.qmax + self.qmin + 1) / 2
        return torch.clamp(torch.round((w - zero) / scale) + mid, self.qmin, self.qmax)

    def dequantize(self, q, scale, zero):
        if self.symmetric:
            return q * scale
        return (q - (self.qmax + self.qmin + 1) / 2) * scale + zero

    def fake(self, w, scale, zero):
        """`w` rounded to the grid (quantize then dequantize)."""
        return self.dequantize(self.quantize(w, scale, zero), scale, zero)

    def columns(self, d_in: int) -> int:
        """Columns per scale: the group size, or the whole row."""
        return self.group or d_in

    def rtn(self, w: "torch.Tensor") -> QuantizedWeight:
        """Round to nearest: what torchao stores for `w` [out, in]."""
        import torch

        k = self.columns(w.shape[1])
        qs, ss, zs = [], [], []
        for c in range(0, w.shape[1], k):
            s, z = self.params(w[:, c:c + k])
            qs.append(self.quantize(w[:, c:c + k], s, z))
            ss.append(s)
            zs.append(z)
        return self.pack(torch.cat(qs, 1), torch.cat(ss, 1), None if self.symmetric else torch.cat(zs, 1),
                         w.dtype)

    def pack(self, q, scale, zero, dtype) -> QuantizedWeight:
        """A QuantizedWeight from integer values [out, in] and per-group scale, zero [out, groups]."""
        import torch

        k = q.shape[1] // scale.shape[1]
        s = scale.repeat_interleave(k, dim=1)
        z = None if zero is None else zero.repeat_interleave(k, dim=1)
        return QuantizedWeight(self.scheme, self.group, q.to(torch.int8), scale.to(dtype),
                               None if zero is None else zero.to(dtype),
                               self.dequantize(q, s, z).to(dtype))
