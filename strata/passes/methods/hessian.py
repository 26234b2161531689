"""The inverse Hessian both GPTQ and SparseGPT walk through, from H = 2 X^T X / n
over a linear's calibration inputs X [n, in] (Frantar et al. 2022, 2023).

Columns that never see a non-zero input are "dead": their weights are zeroed
and H gets a 1 on their diagonal.  `damp` times the mean diagonal is added
before inverting (the papers' percdamp = 0.01), so H is positive definite even
for fewer rows than inputs.  What the loops read is the upper Cholesky factor U
of H^-1 (H^-1 = U^T U): its row i holds the OBS update of the columns after i.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["inverse_factor"]


def inverse_factor(H: "torch.Tensor", W: "torch.Tensor", damp: float = 0.01
                   ) -> tuple["torch.Tensor", "torch.Tensor"]:
    """(U, dead): U the upper Cholesky factor of (H + damp * mean(diag H) I)^-1,
    float64 [in, in]; dead a bool [in] of the columns to zero in W."""
    import torch  # lazy: torch

    H = H.double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H.diagonal().add_(damp * torch.diag(H).mean())
    L = torch.linalg.cholesky(H)
    Hinv = torch.cholesky_inverse(L)
    return torch.linalg.cholesky(Hinv, upper=True), dead
