"""Losses of the objectives, as *sums* with the number of items they sum over.

The loop divides each sum by its count over the whole global batch (all
micro-steps, all ranks), so the gradient is that of the mean over the global
batch however it is split: one process or N, one micro-step or many.

    terms(model, batch) -> {"lm": sum of token losses}          counts(batch) -> {"lm": B*T}
    mlm (+ nsp): {"mlm": masked-token sum, "nsp": pair sum}    {"mlm": masked, "nsp": B}
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from strata.train.heads import Objective

__all__ = ["Loss", "kd_sum"]

IGNORE = -100


def _accepts(model) -> set[str]:
    m = getattr(model, "module", model)      # DDP
    m = getattr(m, "_orig_mod", m)           # torch.compile
    return set(inspect.signature(m.forward).parameters)


def kd_sum(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """sum over rows of KL(softmax(teacher/T) || softmax(student/T)) * T^2 (Hinton et al.);
    student, teacher: (N, C)."""
    s = F.log_softmax(student.float() / temperature, dim=-1)
    t = F.log_softmax(teacher.float() / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="sum") * temperature ** 2


class Loss:
    """How one objective calls the model and scores its outputs."""

    def __init__(self, objective: Objective, model):
        self.obj = objective
        self.kwargs = _accepts(model)

    @property
    def term_names(self) -> list[str]:
        return {"causal_lm": ["lm"], "seq2seq": ["lm"], "classify": ["cls"],
                "mlm": ["mlm", "nsp"] if self.obj.nsp else ["mlm"]}[self.obj.name]

    def counts(self, batch) -> dict[str, int]:
        """Items each term sums over (from the numpy batch, before any forward)."""
        labels = batch["labels"]
        if self.obj.name == "classify":
            return {"cls": len(labels)}
        n = int((labels != IGNORE).sum())
        key = "mlm" if self.obj.name == "mlm" else "lm"
        out = {key: n}
        if self.obj.nsp:
            out["nsp"] = len(labels)
        return out

    def forward(self, model, b: dict) -> dict:
        """The model's outputs for a batch of tensors, as a dict."""
        name = self.obj.name
        want_dict = self.obj.output != "output" or bool(self.obj.nsp)
        kw = {"return_dict": True} if want_dict else {}
        if name == "seq2seq":
            if "attention_mask" in b and "attention_mask" in self.kwargs:
                kw["attention_mask"] = b["attention_mask"]  # the source's padding
            out = model(b["src"], b["tgt"], **kw)
        else:
            if "token_type_ids" in b and "token_type_ids" in self.kwargs:
                kw["token_type_ids"] = b["token_type_ids"]
            if "attention_mask" in b and "attention_mask" in self.kwargs:
                kw["attention_mask"] = b["attention_mask"]
            out = model(b["tokens"], **kw)
        return out if isinstance(out, dict) else {"output": out}

    def primary(self, out: dict, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, C), labels (N,)) of the main prediction, only where it counts."""
        logits, labels = out[self.obj.output], b["labels"]
        if logits.dim() == 3:
            logits, labels = logits.flatten(0, 1), labels.flatten()
        return logits, labels

    def terms(self, out: dict, b: dict) -> dict[str, torch.Tensor]:
        logits, labels = self.primary(out, b)
        main = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE, reduction="sum")
        terms = {self.term_names[0]: main}
        if self.obj.nsp:
            terms["nsp"] = F.cross_entropy(out[self.obj.nsp].float(), b["nsp_labels"], reduction="sum")
        return terms

    def correct(self, out: dict, b: dict) -> torch.Tensor:
        """Correct predictions (classification accuracy, token accuracy)."""
        logits, labels = self.primary(out, b)
        return ((logits.argmax(-1) == labels) & (labels != IGNORE)).sum()
