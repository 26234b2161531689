"""AWQ (Lin et al. 2023): before rounding, scale up the input channels that
carry large activations, so that their weights land on the grid with less
relative error; the inverse scale is folded into the norm before the linears
(scale_fold.py), so the float model is unchanged and only the rounding differs.

    s = mean|x|^alpha, normalised to sqrt(max * min) = 1
    alpha in 0, 0.05 .. 0.95 chosen to minimise, on calibration inputs x,
        || M(x; grid(W diag(s)) diag(1/s) for the linears reading x) - M(x; W) ||^2
    with M the module around those linears (below), or for a lone linear
        || grid(W diag(s)) diag(1/s) x - W x ||^2
    (alpha = 0 is plain round to nearest, so the choice is never worse on them)

That is AWQ's scale search (auto_scale), made for every norm's readers and
for the linear pairs whose scale folds exactly into the producer (up -> down,
v -> o; scale_fold.py).  Then its clipping search (auto_clip), for every linear but
q and k (whose error the softmax amplifies, as the reference skips them):

    per output row and group, m = max|w| * (1 - i/20), i = 0 .. 10
    chosen to minimise  || grid(clamp(w, -m, m)) x - w x ||^2   on 512 rows x

The clipped weights then go through the scheme's own rounding, so what is
stored is round to nearest of the chosen float weights.  The scale search's
loss is, as the reference's, the error at the output of the module around a
norm's readers, all quantized at once — the whole attention for q, k, v, the
whole MLP for gate and up (awq_scale_at, on the module rerun on its captured
calibration inputs) — and each linear's own output error for a pair (o after
v, down after up) or where no module holds the readers (awq_scale).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.passes.methods.grid import Grid

if TYPE_CHECKING:
    import torch

__all__ = ["awq_clip", "awq_scale", "awq_scale_at"]

GRID = 20  # alphas tried: 0, 1/20, ... 19/20, as AutoAWQ; clip ratios in steps of 1/20
MAX_SHRINK = 0.5  # clipping goes down to half the range at most (llm-awq's max_shrink)
CLIP_ROWS = 512  # input rows the clipping search weighs by (llm-awq's n_sample_token)


def _fake(grid: Grid, W):
    return grid.rtn(W).weight


def _search(x_mean: "torch.Tensor", error) -> tuple["torch.Tensor", float, float, float]:
    """(s, alpha, error(s), error at alpha 0) for the alpha of the grid with the
    least error(s), s = mean|x|^alpha normalised."""
    import torch  # lazy: torch

    best = None
    for i in range(GRID):
        alpha = i / GRID
        s = x_mean.float().clamp(min=1e-4) ** alpha
        s = s / (s.max() * s.min()).sqrt()
        err = error(s)
        if i == 0:
            rtn = err
        if best is None or err < best[2]:
            best = (s, alpha, err)
    return best[0].to(torch.float64), best[1], best[2], rtn


def awq_scale(Ws: list["torch.Tensor"], x: "torch.Tensor", x_mean: "torch.Tensor", grid: Grid
              ) -> tuple["torch.Tensor", float, float, float]:
    """(s [in], alpha, error with s, error of plain rounding) for the weights `Ws`
    (each [out_i, in]) reading rows x [n, in] whose mean |x| per channel is x_mean:
    the error is the sum of the linears' own output errors."""
    x = x.float()
    G = x.T @ x  # [in, in]: || x D^T ||^2 = sum((D G) * D), one product per alpha instead of n rows

    def error(s):
        err = 0.0
        for W in Ws:
            D = _fake(grid, W.float() * s) / s - W.float()
            err += float(((D @ G) * D).sum())
        return err
    return _search(x_mean, error)


def awq_scale_at(Ws: dict[str, "torch.Tensor"], x_mean: "torch.Tensor", grid: Grid, output
                 ) -> tuple["torch.Tensor", float, float, float]:
    """As awq_scale, the error measured where the reference measures it: at the
    output of the module around the linears `Ws` ({name: W [out_i, in]}, all
    quantized at once), output(replace) -> [tokens, d] being that module run on
    its calibration inputs with the weights `replace` (stream's PROBE)."""
    ref = output({})

    def error(s):
        y = output({n: _fake(grid, W.float() * s) / s for n, W in Ws.items()})
        return float((y - ref).double().pow(2).sum())
    return _search(x_mean, error)


def awq_clip(W: "torch.Tensor", x: "torch.Tensor", grid: Grid) -> tuple["torch.Tensor", float, float]:
    """(W clipped per output row and group [out, in], error, error unclipped):
    the clipping that minimises the output error of rounding on rows x [n, in]."""
    import torch  # lazy: torch

    W = W.float()
    x = x.float()[:: max(1, x.shape[0] // CLIP_ROWS)][:CLIP_ROWS]
    out, d_in = W.shape
    k = grid.columns(d_in)
    wg = W.view(out, d_in // k, k)                                  # [out, G, k]
    xg = x.view(x.shape[0], d_in // k, k)                           # [n, G, k]
    ref = torch.einsum("ogk,ngk->ogn", wg, xg)                      # per-group partial outputs
    top = wg.abs().amax(dim=2, keepdim=True)                        # [out, G, 1]
    best_err = torch.full((out, d_in // k), float("inf"))
    best = top.clone()
    for i in range(int(MAX_SHRINK * GRID) + 1):
        m = top * (1 - i / GRID)
        q = grid.rtn(torch.maximum(torch.minimum(wg, m), -m).view(out, d_in)).weight.view(out, -1, k)
        err = (torch.einsum("ogk,ngk->ogn", q, xg) - ref).pow(2).mean(dim=2)
        if i == 0:
            plain = float(err.sum())
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better[..., None], m, best)
    clipped = torch.maximum(torch.minimum(wg, best), -best).view(out, d_in)
    return clipped, float(best_err.sum()), plain
