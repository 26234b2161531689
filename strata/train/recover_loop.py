"""The optimizer loop of `strata compress --finetune`, for every objective it
distills (strata.train.recover: next tokens; strata.train.recover_seq2seq: a
decoder over an encoder's source): AdamW on the student's trainable weights,
warmup over the first tenth of the steps then cosine to a tenth of the peak,
gradients clipped to norm 1, and what compression fixed held — each masked
weight's gradient zeroed and its mask re-applied after the step, the
quantized linears' weights frozen.

    report = distill_steps(student, teacher, masks, frozen, steps, lr, loss_of)

loss_of(step) -> the distillation loss of one batch (a scalar with a graph).
"""

from __future__ import annotations

import math
import time
from collections import deque

import torch

__all__ = ["distill_steps"]


def distill_steps(student, teacher, masks: dict, frozen: list, steps: int, lr: float, loss_of) -> dict:
    """Train `student` in place for `steps`; masks: {parameter: 0/1 tensor} kept;
    frozen: parameters not trained.  Returns the report's shared figures."""
    for p in frozen:
        p.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    teacher.eval()
    student.train()
    started, first, losses = time.perf_counter(), None, deque(maxlen=10)  # the first and the last 10
    try:
        for step in range(steps):
            for group in opt.param_groups:  # warmup, then cosine to a tenth
                group["lr"] = lr * min(1.0, (step + 1) / max(1, steps // 10)) * \
                    max(0.1, 0.5 * (1 + math.cos(math.pi * step / steps)))
            loss = loss_of(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for p, keep in masks.items():
                if p.grad is not None:
                    p.grad.mul_(keep)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            with torch.no_grad():
                for p, keep in masks.items():
                    p.mul_(keep)
            losses.append(float(loss.detach()))
            first = losses[0] if first is None else first
    finally:
        for p in frozen:
            p.requires_grad_(True)
        student.eval()
    return {"steps": steps, "seconds": round(time.perf_counter() - started, 2), "lr": lr,
            "distill_loss": {"first": round(first, 5), "last": round(sum(losses) / len(losses), 5)},
            "held": {"masked_linears": len(masks), "quantized_linears_frozen": len(frozen)}}
