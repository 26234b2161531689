"""The training loop: micro-steps, the optimizer step, evaluation, checkpoints.

One optimizer step of a global batch of `batch` rows per micro-step and
`accumulate` micro-steps; each rank takes its rows.  Each loss term is a sum
divided by its count over the whole global batch (all micro-steps, all ranks),
so N processes compute the gradient one process would.  Losses stay on the
device between log flushes (every step on CPU, every 10 on GPU), so the GPU is
not made to wait for Python.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from strata.errors import TrainingError
from strata.train.batches import rows_of
from strata.train.checkpoint import find_checkpoint
from strata.train.distributed import Dist
from strata.train.metrics import MetricsLog, Progress
from strata.train.optim import lr_at
from strata.train.validation import perplexity, score

__all__ = ["Loop"]


def _to_device(batch: dict, rows: slice, device) -> dict:
    return {k: torch.from_numpy(np.ascontiguousarray(v[rows])).to(device, non_blocking=True)
            for k, v in batch.items()}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass
class Loop:
    model: torch.nn.Module               # what is called: the net, DDP(net) or FSDP-sharded net
    params: list                         # parameters that train
    loss: Any                            # objectives.Loss or objectives.distillation.DistillLoss
    eval_loss: Any                       # the objective's Loss (validation reports the objective)
    sampler: Any
    opt: torch.optim.Optimizer
    cfg: dict
    dist: Dist
    device: str
    metrics: MetricsLog
    progress: Progress
    save: Callable[[int, float | None, bool], str | None]   # (step, best, is_best) -> path
    on_eval: Callable[[], None] = lambda: None
    start: int = 0
    best: float | None = None
    ddp: bool = False
    scaler: Any = None
    _pending: list = field(default_factory=list)

    def autocast(self):
        dt = self.cfg["dtype"]
        if dt == "float32":
            return contextlib.nullcontext()
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        return torch.autocast(kind, dtype=getattr(torch, dt))

    @staticmethod
    def _counts(batches: list[dict], loss) -> dict[str, float]:
        """Items each term sums over in the whole global batch: every rank holds the
        global batch (before taking its rows), so no communication is needed."""
        out = dict.fromkeys(loss.term_names, 0.0)
        for b in batches:
            for n, c in loss.counts(b).items():
                out[n] += c
        return out

    def step(self, s: int) -> None:
        cfg, d = self.cfg, self.dist
        lr = lr_at(s, cfg["steps"], cfg["schedule"], cfg["optimizer"]["lr"])
        for group in self.opt.param_groups:
            group["lr"] = lr
        A = cfg["accumulate"]
        batches = [self.sampler.train_batch(s, m) for m in range(A)]
        counts = self._counts(batches, self.loss)
        names = self.loss.term_names
        sums = torch.zeros(len(names), device=self.device)
        tokens = 0
        for m, b in enumerate(batches):
            rows = rows_of(len(next(iter(b.values()))), d.rank, d.world)
            bt = _to_device(b, rows, self.device)
            tokens += sum(int(v.size) for k, v in b.items() if k in ("tokens", "src", "tgt"))
            sync = self.model.no_sync() if self.ddp and m < A - 1 else contextlib.nullcontext()
            with sync:
                with self.autocast():
                    terms = self.loss.terms(self.loss.forward(self.model, bt), bt)
                    total = sum(terms[n] / max(counts[n], 1.0) for n in names) * d.world
                if self.scaler is not None:
                    self.scaler.scale(total).backward()
                else:
                    total.backward()
            sums += torch.stack([terms[n].detach().float() for n in names])
        norm = None
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        if cfg["grad_clip"]:
            norm = torch.nn.utils.clip_grad_norm_(self.params, cfg["grad_clip"])
            norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self._pending.append((s + 1, sums, counts, lr, norm, tokens, time.perf_counter()))

    def flush(self) -> None:
        """Turn pending losses into metrics lines; stop the run on a non-finite loss."""
        if not self._pending:
            return
        names = self.loss.term_names
        sums = torch.stack([p[1] for p in self._pending])
        norms = [p[4] for p in self._pending]
        sums = self.dist.sum(sums).cpu().tolist()   # waits for the device: the window ends here
        norms = [float(n) if n is not None else None for n in norms]
        now = time.perf_counter()
        per_step = (now - self._t_window) / len(self._pending)  # training time, evaluations excluded
        self._t_window = now
        for (step, _, counts, lr, _, tokens, t), row, norm in zip(self._pending, sums, norms):
            parts = {n: row[i] / max(counts[n], 1.0) for i, n in enumerate(names)}
            loss = sum(parts.values())
            rec = {"step": step, "train_loss": _finite(loss), "lr": lr,
                   "tokens_per_s": round(tokens / per_step, 1) if per_step > 0 else None,
                   "time": round(t - self._t0, 3)}
            if len(parts) > 1:
                rec.update({f"{n}_loss": _finite(v) for n, v in parts.items()})
            if norm is not None:
                rec["grad_norm"] = _finite(norm)
            if not math.isfinite(loss):
                rec["error"] = "non-finite loss"
            self.metrics.add(rec)
            if not math.isfinite(loss):
                self._pending.clear()
                self.metrics.flush(force=True)
                raise TrainingError(self._nan_message(step, loss))
            self.progress.update(step, loss, rec["tokens_per_s"] or 0.0)
        self._pending.clear()
        self.metrics.flush()

    def _nan_message(self, step: int, loss: float) -> str:
        ckpt = find_checkpoint(self.metrics.path.parent) if self.dist.main else None
        kept = (f"The last good checkpoint, step {ckpt.step} ({ckpt.path}), is kept: continue from "
                "it with --resume" if ckpt else "No checkpoint was written before it")
        return (f"step {step}: the training loss is {loss}; stopped. {kept}, after lowering the "
                "learning rate (--set 'optimizer=adamw(lr=...)') or setting grad_clip")

    def evaluate(self, step: int) -> float:
        got = score(self.model, self.eval_loss, self.sampler, self.device, self.dist, self.autocast)
        for m in self.model.modules():  # FSDP2 keeps the root unsharded after a forward
            if hasattr(m, "reshard") and hasattr(m, "unshard"):  # with no backward: shard it again
                m.reshard()
        val = got["loss"]
        rec = {"step": step, "val_loss": _finite(val)}
        if self.eval_loss.obj.perplexity:
            rec["val_ppl"] = _finite(perplexity(got, self.eval_loss.obj))
        if self.eval_loss.obj.accuracy:
            rec["val_accuracy"] = got["accuracy"]
        rec.update({f"val_{k}": _finite(v) for k, v in got.items() if k.endswith("_loss")})
        rec["time"] = round(time.perf_counter() - self._t0, 3)
        self.metrics.add(rec)
        self.progress.last_val = val
        return val

    def run(self) -> None:
        cfg = self.cfg
        steps = cfg["steps"]
        self._t0 = self._t_window = time.perf_counter()
        flush_every = 10 if self.device.startswith("cuda") else 1
        self.model.train()
        s = self.start
        while s < steps:
            self.step(s)
            s += 1
            last = s == steps
            do_eval = s % cfg["eval_every"] == 0 or last
            do_ckpt = s % cfg["checkpoint_every"] == 0 or last
            if len(self._pending) >= flush_every or do_eval or do_ckpt:
                self.flush()
            is_best = False
            if do_eval:
                val = self.evaluate(s)
                if math.isfinite(val) and (self.best is None or val < self.best):
                    self.best, is_best = val, True
                self.progress.note(f"step {s}: val loss {val:.4f}")
            if do_ckpt or is_best:
                self.metrics.flush(force=True)
                self.save(s, self.best, is_best)
            if do_eval:
                self.metrics.flush(force=True)
                self.on_eval()
            if do_eval or do_ckpt or is_best:
                self._t_window = time.perf_counter()
        self.flush()
        self.metrics.flush(force=True)
