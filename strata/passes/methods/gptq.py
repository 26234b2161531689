"""GPTQ (Frantar et al. 2022): quantize a linear's weight W [out, in] one input
column at a time, spreading each column's rounding error over the columns not
yet quantized so that ||W X - Q X|| stays small on the calibration inputs X.

    for each block of B columns (lazy batch updates):
        for column i of the block:
            q_i  = grid(w_i)                       (scale / zero of its group)
            e_i  = (w_i - q_i) / U[i, i]           (U: upper Cholesky of H^-1)
            W[:, i+1:block end] -= e_i U[i, i+1:block end]
        W[:, block end:] -= E U[block, block end:]  (one matmul per block)

With act_order=true the columns go in the order of decreasing H diagonal (the
inputs with the most energy first); the group scales are then fixed from the
weights before any update ("static groups"), as a group's columns are no longer
contiguous in that order.  Without it a group's scale is taken when the walk
reaches its first column (B is the group size), as the reference does.  The
grid is the scheme's own (grid.py): what comes out is exactly representable.
observer="mse" picks each group's range as the reference's
`Quantizer(mse=True)` does (Grid.mse_params) instead of its min and max.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.passes.methods.grid import Grid, QuantizedWeight
from strata.passes.methods.hessian import inverse_factor

if TYPE_CHECKING:
    import torch

__all__ = ["gptq"]

BLOCK = 128  # columns per lazy batch when the grid has no groups


def gptq(W: "torch.Tensor", H: "torch.Tensor", grid: Grid, *, act_order: bool = False,
         damp: float = 0.01, observer: str = "minmax") -> QuantizedWeight:
    """W [out, in] quantized on `grid` against the Hessian H [in, in]; observer="mse"
    takes each group's range from Grid.mse_params instead of its min and max."""
    import torch  # lazy: torch

    dtype = W.dtype
    W = W.double().clone()
    H = H.double()
    cols = W.shape[1]
    W[:, torch.diag(H) == 0] = 0  # dead inputs (inverse_factor says so again)
    # a pruned weight's zeros stay zeros (0 is on every grid): the updates skip them,
    # as llm-compressor's GPTQ does for a sparse weight
    keep = (W != 0).to(W.dtype) if bool((W == 0).any()) else None
    k = grid.columns(cols)
    static = act_order or grid.group is None  # scales fixed from the weights before updates
    params = grid.mse_params if observer == "mse" else grid.params
    if static:
        groups = [params(W[:, c:c + k]) for c in range(0, cols, k)]
    perm = torch.argsort(torch.diag(H), descending=True) if act_order else torch.arange(cols)
    if act_order:
        W, H = W[:, perm], H[perm][:, perm]
        keep = keep[:, perm] if keep is not None else None
    U, _ = inverse_factor(H, W, damp)
    Q = torch.zeros_like(W)
    step = k if not static else min(BLOCK, cols)
    scale = torch.zeros(W.shape[0], (cols + k - 1) // k, dtype=torch.float64)
    zero = None if grid.symmetric else torch.zeros_like(scale)
    for i1 in range(0, cols, step):
        i2 = min(i1 + step, cols)
        if not static:  # the group starts here: its scale from the weights as updated so far
            s, z = params(W[:, i1:i2])
            scale[:, i1 // k] = s[:, 0]
            if zero is not None:
                zero[:, i1 // k] = z[:, 0]
        W1, E1, U1 = W[:, i1:i2].clone(), torch.zeros(W.shape[0], i2 - i1, dtype=W.dtype), U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = int(perm[i1 + i])
            if static:
                s, z = groups[col // k]
            w = W1[:, i:i + 1]
            q = grid.quantize(w, s, z)
            Q[:, i1 + i] = q[:, 0]
            e = (w - grid.dequantize(q, s, z)) / U1[i, i]
            W1[:, i:] -= e @ U1[i:i + 1, i:] if keep is None else (e @ U1[i:i + 1, i:]) * keep[:, i1 + i:i2]
            E1[:, i] = e[:, 0]
        W[:, i2:] -= E1 @ U[i1:i2, i2:] if keep is None else (E1 @ U[i1:i2, i2:]) * keep[:, i2:]
    if act_order:
        Q = Q[:, torch.argsort(perm)]
    if static:
        scale = torch.cat([s for s, _ in groups], 1)
        zero = None if grid.symmetric else torch.cat([z for _, z in groups], 1)
    return grid.pack(Q, scale, zero, dtype)
