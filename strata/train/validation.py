"""Validation: loss (and perplexity, accuracy) over a fixed set of batches.

`score` is what the loop runs at each evaluation (on every rank, its rows of
each batch, summed over ranks); `evaluate_run` is `strata eval RUN_DIR`: the
final model on the whole validation split of the run's data, every token once,
or on all of another file.

After `strata train specs/tiny_shakespeare.arch`::

    Run.open("runs/tiny_shakespeare").evaluate()
    # {'loss': 1.47, 'perplexity': 4.35, 'tokens': 111488, ...}
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch

from strata.errors import UsageError
from strata.train.batches import rows_of
from strata.train.objectives import Loss
from strata.train.run_folder import CACHE, run_data
from strata.train.tokenizer import UnseenCharacters

__all__ = ["score", "perplexity", "evaluate_run"]


@torch.no_grad()
def score(model, loss, sampler, device: str, dist=None, autocast=contextlib.nullcontext) -> dict:
    """{"loss", per-term "<name>_loss", "accuracy", "count"} over sampler.eval_batch(i)."""
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    names = loss.term_names
    was = model.training
    model.eval()
    sums = torch.zeros(len(names) + 1, dtype=torch.float64, device=device)
    counts = torch.zeros(len(names) + 1, dtype=torch.float64, device=device)
    for i in range(sampler.eval_count()):
        b = sampler.eval_batch(i)
        rows = rows_of(len(next(iter(b.values()))), rank, world)
        if rows.stop <= rows.start:
            continue  # a last, short batch: this rank has no rows
        bt = {k: torch.from_numpy(np.ascontiguousarray(v[rows])).to(device) for k, v in b.items()}
        with autocast():
            out = loss.forward(model, bt)
            terms = loss.terms(out, bt)
        c = loss.counts({k: v[rows] for k, v in b.items()})
        sums += torch.stack([terms[k].double() for k in names] + [loss.correct(out, bt).double()])
        counts += torch.tensor([c[k] for k in names] + [c[names[0]]], dtype=torch.float64, device=device)
    model.train(was)
    if dist is not None:
        dist.sum(sums), dist.sum(counts)
    sums, counts = sums.cpu().tolist(), counts.cpu().tolist()
    parts = {k: sums[i] / max(counts[i], 1.0) for i, k in enumerate(names)}
    out = {"loss": sum(parts.values()), "accuracy": sums[-1] / max(counts[-1], 1.0),
           "count": int(counts[0])}
    if len(parts) > 1:
        out.update({f"{k}_loss": v for k, v in parts.items()})
    return out


def perplexity(result: dict, obj) -> float:
    """exp of the language-model term's loss (a score's "loss" beside one term): BERT's
    masked-LM loss and its next-sentence loss add up to no token's perplexity."""
    return math.exp(min(result.get(f"{obj.term}_loss", result["loss"]), 700.0))


def evaluate_run(run, data: str | None = None, *, which: str = "final", device: str = "cpu",
                 max_batches: int | None = None) -> dict:
    if max_batches is not None and max_batches < 1:
        raise UsageError(f"--max-batches should be at least 1 (got {max_batches})")
    obj = run.objective
    model = run.compiled(which, device)
    own = data is None
    if own:
        data = run_data(run.info["data"], run.path, f"{run.path}: its data", "give --data")
    cache = run.path / CACHE if own else None
    try:
        sampler, what, unseen = obj.eval_sampler(data, run.tokenizer, run.settings, own, cache, max_batches)
    except UnseenCharacters as e:
        raise e.within("the built-in corpus" if data is None else str(data),  # run_data: None is built in
                       "give --data text in the characters the model trained on") from None
    started = time.perf_counter()
    result = score(model, Loss(obj, model), sampler, device)
    result["seconds"] = round(time.perf_counter() - started, 4)  # the forward passes, data included
    if result["count"] == 0:
        raise UsageError(f"{what}: no predictions to score (no batch holds a target)")
    result["data"] = what
    if unseen:  # read as [UNK]: `strata eval` says so
        result["unseen"] = {"characters": unseen.count, "distinct": unseen.chars[:100]}
    if obj.perplexity:
        result["perplexity"] = perplexity(result, obj)
    return result
