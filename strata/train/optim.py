"""The optimizer and learning-rate schedule of the `train { }` section.

AdamW decays only matrices (weights of linear layers and embeddings), never
biases or norm scales, as nanoGPT does.  Schedules warm up linearly, then hold
(constant), fall linearly (linear) or follow a half cosine (cosine) to min_lr
at the last step.

    >>> round(lr_at(0, 2000, {"type": "cosine", "warmup": 100, "min_lr": 1e-4}, 1e-3), 8)
    9.9e-06
    >>> round(lr_at(1999, 2000, {"type": "cosine", "warmup": 100, "min_lr": 1e-4}, 1e-3), 6)
    0.0001
"""

from __future__ import annotations

import math

import torch

__all__ = ["make_optimizer", "lr_at"]


def make_optimizer(named_params, cfg: dict, device: str) -> torch.optim.Optimizer:
    """named_params: (name, parameter) pairs that train."""
    params = [p for _, p in named_params if p.requires_grad]
    kind = cfg["type"]
    wd = cfg.get("weight_decay", 0.0)
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": wd},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if kind == "adamw":
        extra = {"fused": True} if device.startswith("cuda") else {}
        return torch.optim.AdamW(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"], **extra)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"])
    raise ValueError(f"unknown optimizer {kind!r}")


def lr_at(step: int, steps: int, schedule: dict, lr: float) -> float:
    """Learning rate of optimizer step `step` (0-based) of `steps`."""
    warmup = min(schedule.get("warmup", 0), steps)
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)  # nanoGPT's warmup
    kind = schedule["type"]
    if kind == "constant":
        return lr
    min_lr = schedule.get("min_lr", 0.0)
    span = max(steps - 1 - warmup, 1)
    frac = min((step - warmup) / span, 1.0)
    if kind == "linear":
        return lr + (min_lr - lr) * frac
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * frac)) * (lr - min_lr)
