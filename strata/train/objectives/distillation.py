"""Distillation, a wrapper of any objective: the spec's `distill(teacher, weights=..., temperature=T, alpha=a)`
pass trains this (student) model against a teacher's logits:

    loss = a * KL(softmax(teacher / T) || softmax(student / T)) * T^2  +  (1 - a) * task loss

over the vocabulary (or the classes) at every position the task predicts.  The
teacher (strata.train.teacher) is compiled from its own spec with its weights,
frozen and kept in eval mode.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F

from strata.errors import UsageError
from strata.train.objectives import Loss
from strata.train.objectives.objective import IGNORE

__all__ = ["DistillLoss", "kd_sum"]


def kd_sum(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """sum over rows of KL(softmax(teacher/T) || softmax(student/T)) * T^2 (Hinton et al.);
    student, teacher: (N, C)."""
    s = F.log_softmax(student.float() / temperature, dim=-1)
    t = F.log_softmax(teacher.float() / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="sum") * temperature ** 2


class DistillLoss:
    """The task's loss terms scaled by (1 - alpha), plus the distillation term."""

    def __init__(self, task: Loss, teacher, teacher_loss: Loss, temperature: float, alpha: float):
        self.task, self.teacher, self.t_loss = task, teacher, teacher_loss
        self.T, self.alpha = temperature, alpha
        self.obj = task.obj

    @property
    def term_names(self) -> list[str]:
        return ["distill"] + self.task.term_names

    def counts(self, batch) -> dict:
        c = self.task.counts(batch)
        return {"distill": c[self.task.term_names[0]], **c}

    def forward(self, model, b):
        return self.task.forward(model, b)

    def terms(self, out: dict, b: dict) -> dict[str, torch.Tensor]:
        task = self.task.terms(out, b)
        with torch.no_grad():
            t_logits, _ = self.t_loss.primary(self.t_loss.forward(self.teacher, b), b)
        s_logits, labels = self.task.primary(out, b)
        if s_logits.shape[-1] != t_logits.shape[-1]:
            raise UsageError(f"distill: the teacher predicts {t_logits.shape[-1]} classes, the "
                             f"student {s_logits.shape[-1]}: they must share the vocabulary")
        keep = labels != IGNORE
        kd = kd_sum(s_logits[keep], t_logits[keep], self.T)
        return {"distill": self.alpha * kd, **{k: (1 - self.alpha) * v for k, v in task.items()}}

    def correct(self, out, b):
        return self.task.correct(out, b)
