"""SparseGPT (Frantar & Alistarh 2023): prune a linear's weight W [out, in] and
update the weights that stay so that ||W X - W' X|| stays small on the
calibration inputs X: GPTQ's column walk with "set to zero" in place of
"round to the grid".

    for each block of B columns:
        mask: the smallest w^2 / U[j, j]^2 of the block (unstructured: the
              block's share of the fraction; n:m: the n smallest of every m
              consecutive weights in a row, chosen as the walk reaches them)
        for column i: e_i = (w_i - masked w_i) / U[i, i]; W[:, i+1:] -= e_i U[i, i+1:]

The count removed is exact: int(amount * out * in) in all (each block removes
its cumulative share), or exactly n of every m.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.passes.methods.hessian import inverse_factor

if TYPE_CHECKING:
    import torch

__all__ = ["sparsegpt"]

BLOCK = 128


def sparsegpt(W: "torch.Tensor", H: "torch.Tensor", amount: float, *, nm: tuple[int, int] | None = None,
              damp: float = 0.01) -> tuple["torch.Tensor", "torch.Tensor"]:
    """(W' [out, in] with its zeros, keep mask [out, in] bool).  nm=(n, m): n of
    every m consecutive weights in a row removed (2:4 is (2, 4)); else the
    fraction `amount` of all weights."""
    import torch  # lazy: torch

    dtype = W.dtype
    W = W.double().clone()
    rows, cols = W.shape
    U, _ = inverse_factor(H, W, damp)
    d = torch.diag(U)
    removed = torch.zeros_like(W, dtype=torch.bool)
    step = BLOCK if nm is None else BLOCK - BLOCK % nm[1]
    for i1 in range(0, cols, step):
        i2 = min(i1 + step, cols)
        W1, E1, U1 = W[:, i1:i2].clone(), torch.zeros(rows, i2 - i1, dtype=W.dtype), U[i1:i2, i1:i2]
        M1 = torch.zeros_like(W1, dtype=torch.bool)
        if nm is None:  # this block's share of the exact total
            k = int(amount * rows * i2) - int(amount * rows * i1)
            score = (W1 ** 2 / d[i1:i2][None, :] ** 2).flatten()
            M1.view(-1)[torch.topk(score, k, largest=False).indices] = True
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                score = W1[:, i:i + nm[1]] ** 2 / d[i1 + i:i1 + i + nm[1]][None, :] ** 2
                M1.scatter_(1, i + torch.topk(score, nm[0], dim=1, largest=False).indices, True)
            w = W1[:, i:i + 1]
            e = (w * M1[:, i:i + 1]) / U1[i, i]   # the removed part, scaled
            W1[:, i:] -= e @ U1[i:i + 1, i:]
            W1[:, i] = W1[:, i] * ~M1[:, i]        # exactly zero where removed
            E1[:, i] = e[:, 0]
        W[:, i1:i2] = W1
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
        removed[:, i1:i2] = M1
    return W.to(dtype) * ~removed, ~removed
