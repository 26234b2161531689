"""An objective's losses for one model, as *sums* with the number of items they sum over.

The loop divides each sum by its count over the whole global batch (all
micro-steps, all ranks), so the gradient is that of the mean over the global
batch however it is split: one process or N, one micro-step or many.

    loss = Loss(objective, model)
    out = loss.forward(model, batch)            # the model's outputs, a dict
    loss.terms(out, batch)                      # {"lm": sum of token losses}
    loss.counts(numpy_batch)                    # {"lm": tokens predicted}
"""

from __future__ import annotations

import torch

from strata.train.objectives.objective import Objective, accepts

__all__ = ["Loss"]


class Loss:
    """How one objective calls a model and scores its outputs (the objective
    says how; this keeps what the model's forward accepts)."""

    def __init__(self, objective: Objective, model):
        self.obj = objective
        self.kwargs = accepts(model)

    @property
    def term_names(self) -> list[str]:
        return self.obj.term_names

    def counts(self, batch) -> dict[str, int]:
        return self.obj.counts(batch)

    def forward(self, model, b: dict) -> dict:
        return self.obj.forward(model, b, self.kwargs)

    def primary(self, out: dict, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.obj.primary(out, b)

    def terms(self, out: dict, b: dict) -> dict[str, torch.Tensor]:
        return self.obj.terms(out, b)

    def correct(self, out: dict, b: dict) -> torch.Tensor:
        return self.obj.correct(out, b)
