"""Distillation, a wrapper of any objective: the spec's `distill(teacher, weights=..., temperature=T, alpha=a)`
pass trains this (student) model against a teacher's logits:

    loss = a * KL(softmax(teacher / T) || softmax(student / T)) * T^2  +  (1 - a) * task loss

over the vocabulary (or the classes) at every position the task predicts.  The
teacher is compiled from its own spec, loaded with its weights, frozen and
kept in eval mode.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from strata.compiler.paths import located
from strata.errors import Diagnostic, SpecError, UsageError
from strata.train.models import compile_model, load_weights
from strata.train.objectives import Loss, choose_objective
from strata.train.objectives.objective import IGNORE
from strata.train.settings import spec_file
from strata.train.sources import resolve_weights

__all__ = ["DistillLoss", "kd_sum", "load_teacher"]


def kd_sum(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """sum over rows of KL(softmax(teacher/T) || softmax(student/T)) * T^2 (Hinton et al.);
    student, teacher: (N, C)."""
    s = F.log_softmax(student.float() / temperature, dim=-1)
    t = F.log_softmax(teacher.float() / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="sum") * temperature ** 2


def _pass_span(g):
    return next((p.get("span") for p in g.graph.get("passes", []) if p["name"] == "distill"), None)


def load_teacher(g, objective, device: str, weights: str | None = None, spec_graph=None):
    """(teacher nn.Module, its Loss, the tokenizer.json of the run it came from or
    None).  g: the student's IR after passes; `weights` (from the command line)
    wins over the pass's `weights=`; spec_graph (before passes) locates errors."""
    info = g.graph.distill
    here = spec_file(g)
    teacher = info["teacher"]
    if teacher.endswith((".arch", ".yaml", ".yml")):
        source, model_name = str(located(teacher, g)), None
    elif here is not None:
        source, model_name = str(here), teacher
    else:
        raise UsageError(f"distill: teacher '{teacher}' is a model of the spec file, but the spec "
                         "was given as text; give it as a file")
    if weights is None and info.get("weights"):
        weights = str(located(info["weights"], g))
    if weights is None:
        span = _pass_span(spec_graph if spec_graph is not None else g)
        sources = {}
        if span is not None and Path(span.file).is_file():
            sources[span.file] = Path(span.file).read_text()
        raise SpecError([Diagnostic(
            f"distill: the teacher ({teacher}) has no weights, and an untrained teacher has "
            "nothing to teach", span,
            "train the teacher first, then give distill(..., weights=\"RUN_DIR\") or "
            "--teacher-weights RUN_DIR")], sources)
    w = resolve_weights(weights)
    file, tokenizer = w.file, w.tokenizer
    net = compile_model(source, model=model_name, device=device)
    load_weights(net, file)
    net.eval()
    net.requires_grad_(False)
    net.strata_weights = file
    t_obj = choose_objective(net.strata_graph, objective.name)
    return net, Loss(t_obj, net), tokenizer


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
