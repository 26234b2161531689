"""AWQ (Lin et al. 2023): before rounding, scale up the input channels that
carry large activations, so that their weights land on the grid with less
relative error; the inverse scale is folded into the norm before the linears
(fold.py), so the float model is unchanged and only the rounding differs.

    s = mean|x|^alpha, normalised to sqrt(max * min) = 1
    alpha in 0, 0.05 .. 0.95 chosen to minimise  sum over the linears reading x of
        || grid(W diag(s)) diag(1/s) x - W x ||^2     on calibration rows x
    (alpha = 0 is plain round to nearest, so the choice is never worse on them)

The search is AWQ's scale search (auto_scale); its weight clipping search is
not done here.  The chosen weights then go through the scheme's own rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.passes.methods.grid import Grid

if TYPE_CHECKING:
    import torch

__all__ = ["awq_scale"]

GRID = 20  # alphas tried: 0, 1/20, ... 19/20, as AutoAWQ


def _fake(grid: Grid, W):
    return grid.rtn(W).weight


def awq_scale(Ws: list["torch.Tensor"], x: "torch.Tensor", x_mean: "torch.Tensor", grid: Grid
              ) -> tuple["torch.Tensor", float, float, float]:
    """(s [in], alpha, error with s, error of plain rounding) for the weights `Ws`
    (each [out_i, in]) reading rows x [n, in] whose mean |x| per channel is x_mean."""
    import torch  # lazy: torch

    x = x.float()
    ref = [x @ W.float().T for W in Ws]
    best = None
    for i in range(GRID):
        alpha = i / GRID
        s = x_mean.float().clamp(min=1e-4) ** alpha
        s = s / (s.max() * s.min()).sqrt()
        err = sum(float(((x / s) @ _fake(grid, W.float() * s).T - r).pow(2).sum()) for W, r in zip(Ws, ref))
        if i == 0:
            rtn = err
        if best is None or err < best[2]:
            best = (s, alpha, err)
    return best[0].to(torch.float64), best[1], best[2], rtn
