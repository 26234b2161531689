"""The integer grids the quantize schemes store (strata/passes/qparams.py: the
compressed-tensors conventions the packer writes and the kernels run), for a
float weight W [out, in]; GPTQ and AWQ choose weights on the same grid, so what
they pick is what is stored and run.

    int8_weight / int8_dynamic   symmetric per output row: scale = max|W_row| / 127.5
    / int8_static
                                 (fp32), q = clamp(round(W / scale), -128, 127),
                                 W ~ q * scale
    int4_weight                  asymmetric per group of `group_size` inputs: lo, hi =
                                 min(W, 0), max(W, 0); scale = (hi - lo) / 15 rounded
                                 to bf16, zero = clamp(round(-lo / scale) - 8, -8, 7),
                                 q = clamp(round(W / scale) + zero, -8, 7),
                                 W ~ (q - zero) * scale

`QuantizedWeight` is what a calibrated method hands on per linear: the integer
values, the scales and zero points (None for symmetric schemes) and the float
weight they decode to.  The float weight goes into the state dict; the integers
(`stored()`: qparams' QuantizedWeight) reach the packer through
`transform(..., quantized=)`, so the file holds exactly the method's choice.

    >>> import torch
    >>> g = Grid("int4_weight", 4)
    >>> w = torch.tensor([[0.0, 6.0, 30.0, 11.0]])
    >>> s, z = g.params(w)          # scale 2, zero -8
    >>> q = g.quantize(w, s, z)
    >>> q.int().tolist(), g.dequantize(q, s, z).tolist()
    ([[-8, -5, 7, -2]], [[0.0, 6.0, 30.0, 12.0]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["Grid", "QuantizedWeight"]

EPS4 = 1e-6  # the smallest int4 scale (qparams.rtn); int8's is fp32's eps
MSE_GRID, MSE_MAX_SHRINK, MSE_NORM = 100, 0.8, 2.4  # GPTQ's reference Quantizer(mse=True)


@dataclass
class QuantizedWeight:
    """One linear's weight on its scheme's grid.  q: int8 [out, in] (int4 values
    -8..7 held in int8); scale, zero: float [out, in // group] (int8: [out, 1],
    zero None); weight: the float [out, in] they decode to."""

    scheme: str
    group_size: int | None
    q: "torch.Tensor"
    scale: "torch.Tensor"
    zero: "torch.Tensor | None"
    weight: "torch.Tensor"
    input_scale: "torch.Tensor | None" = None  # int8_static: its activations' one scale, fp32 [1]

    def stored(self):
        """The same integers as the packer and the kernels take them
        (strata.passes.qparams.QuantizedWeight: int8 scales fp32, int4 scales
        bf16 and zero points int8 — exact: the grid's values are those)."""
        import torch  # lazy: torch

        from strata.passes.qparams import QuantizedWeight as Stored  # lazy: torch

        if self.zero is None:
            return Stored(self.q, self.scale.to(torch.float32), None, self.q.shape[1], 8, self.input_scale)
        return Stored(self.q, self.scale.to(torch.bfloat16), self.zero.to(torch.int8),
                      self.group_size or self.q.shape[1], 4)  # None: one group a row


class Grid:
    """The grid of `scheme` (int8_weight, int8_dynamic, int8_static, int4_weight) with
    `group_size` inputs per scale (int4 only; int8 scales whole rows)."""

    def __init__(self, scheme: str, group_size: int | None = None):
        if scheme not in ("int8_weight", "int8_dynamic", "int8_static", "int4_weight"):
            raise ValueError(f"no integer grid for {scheme!r}")
        self.scheme = scheme
        self.symmetric = scheme != "int4_weight"
        self.group = group_size if scheme == "int4_weight" else None
        self.qmin, self.qmax = (-128, 127) if self.symmetric else (-8, 7)

    def params(self, w: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor | None"]:
        """(scale, zero) of the columns `w` [out, k] as ONE group per row (k <= group):
        each [out, 1], in w's dtype, with the values qparams.rtn stores."""
        import torch  # lazy: torch

        if self.symmetric:
            amax = w.abs().amax(dim=1, keepdim=True).to(torch.float32)
            return (amax / 127.5).clamp(min=torch.finfo(torch.float32).eps).to(w.dtype), None
        lo = w.amin(dim=1, keepdim=True).clamp(max=0.0).to(torch.float32)
        hi = w.amax(dim=1, keepdim=True).clamp(min=0.0).to(torch.float32)
        scale = ((hi - lo) / 15.0).clamp(min=EPS4).to(torch.bfloat16).to(torch.float32)
        zero = ((-lo / scale).round() - 8).clamp(-8, 7)
        return scale.to(w.dtype), zero.to(w.dtype)

    def mse_params(self, w: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor | None"]:
        """params() of the range shrunk by the factor (1, 0.99, .. 0.21) that rounds each
        row of `w` [out, k] with the least sum |error|^2.4: the search of GPTQ's
        reference `Quantizer(mse=True)` (grid 100, maxshrink 0.8, norm 2.4) and
        llm-compressor's mse observer.  Shrinking clips the largest weights so that
        the rest fall on a finer grid; 1 is tried first, so the error is never
        above min/max's."""
        import torch  # lazy: torch

        best_s, best_z = self.params(w)
        best = (self.fake(w, best_s, best_z) - w).abs().float().pow(MSE_NORM).sum(1, keepdim=True)
        for i in range(1, int(MSE_MAX_SHRINK * MSE_GRID)):
            s, z = self.params(w * (1 - i / MSE_GRID))  # the range scaled: min, max and absmax alike
            err = (self.fake(w, s, z) - w).abs().float().pow(MSE_NORM).sum(1, keepdim=True)
            better = err < best
            best = torch.where(better, err, best)
            best_s = torch.where(better, s, best_s)
            if best_z is not None:
                best_z = torch.where(better, z, best_z)
        return best_s, best_z

    def quantize(self, w, scale, zero):
        """Integer values of `w` [out, k] with per-row (scale, zero) [out, 1]."""
        import torch  # lazy: torch

        if self.symmetric:
            return torch.clamp(torch.round(w / scale), self.qmin, self.qmax)
        return torch.clamp(torch.round(w / scale) + zero, self.qmin, self.qmax)

    def dequantize(self, q, scale, zero):
        if self.symmetric:
            return q * scale
        return (q - zero) * scale

    def fake(self, w, scale, zero):
        """`w` rounded to the grid (quantize then dequantize)."""
        return self.dequantize(self.quantize(w, scale, zero), scale, zero)

    def columns(self, d_in: int) -> int:
        """Columns per scale: the group size, or the whole row."""
        return self.group or d_in

    def rtn(self, w: "torch.Tensor") -> QuantizedWeight:
        """Round to nearest: what torchao stores for `w` [out, in]."""
        import torch  # lazy: torch

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
        import torch  # lazy: torch

        k = q.shape[1] // scale.shape[1]
        s = scale.repeat_interleave(k, dim=1)
        z = None if zero is None else zero.repeat_interleave(k, dim=1)
        return QuantizedWeight(self.scheme, self.group, q.to(torch.int8), scale.to(dtype),
                               None if zero is None else zero.to(dtype),
                               self.dequantize(q, s, z).to(dtype))
