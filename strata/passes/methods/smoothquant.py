"""SmoothQuant (Xiao et al. 2022): int8 activations lose the most on the few
input channels with outliers; divide those channels by s and multiply the
weights' columns by s, so the weights (easy to quantize) carry part of the
range.  With migration strength alpha:

    s_j = max|x_j|^alpha / max_i |W_ij|^(1 - alpha)     (over every linear reading x)

s is folded into the norm before the linears (scale_fold.py): the float model
computes exactly what it did; only the quantized one changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["smooth_scale"]


def smooth_scale(Ws: list["torch.Tensor"], x_absmax: "torch.Tensor", alpha: float) -> "torch.Tensor":
    """s [in] (float64) for the weights `Ws` (each [out_i, in]) reading inputs of
    per-channel max |x| `x_absmax`."""
    import torch  # lazy: torch

    w_absmax = torch.stack([W.double().abs().amax(dim=0) for W in Ws]).amax(dim=0)
    s = x_absmax.double().clamp(min=1e-5) ** alpha / w_absmax.clamp(min=1e-5) ** (1 - alpha)
    return s.clamp(min=1e-5)
