"""`strata compress --finetune STEPS` of an encoder-decoder run (objective
seq2seq): the distillation of strata.train.recover, over the decoder's
positions.

    batches   the run's own: (source, target) examples (D as JSON Lines of
              {"source", "target"}; without D, the run's data, else the built-in
              task) made into src = `source [EOS]`, tgt = `[BOS] target` by the
              objective itself, rows of the run's context; 10 % held out
    loss      KL(softmax(teacher) || softmax(student)) at each target position
              (padding left out), both reading the same src and tgt
    held      as for a decoder (strata.train.recover._held)
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from strata.errors import UsageError
from strata.train.batches import IGNORE
from strata.train.dataset import tokenize_examples
from strata.train.objectives.distillation import kd_sum
from strata.train.objectives.objective import accepts
from strata.train.recover_loop import distill_steps
from strata.train.run_folder import OutsideError, run_data
from strata.train.tokenizer import load_tokenizer
from strata.train.unseen_text import check_text

__all__ = ["seq2seq_tune"]


def _data(data, source_run):
    """The examples file, or None for the built-in task: D, else the run's own file."""
    if data is not None:
        return data
    d = (source_run or {}).get("data") or {}
    try:
        path = run_data(d, (source_run or {}).get("path"), "the data the weights were trained on",
                        "give --data")
    except OutsideError:
        raise
    except UsageError:
        return None
    return path if path and Path(path).is_file() else None


def _out(obj, model, b):
    """(logits (N, V), labels (N,)) at the batch's target positions."""
    logits, labels = obj.primary(obj.forward(model, b, accepts(model)), b)
    keep = labels != IGNORE
    return logits[keep].float(), labels[keep]


@torch.no_grad()
def _quality(obj, model, batches, teacher=None) -> dict:
    model.eval()
    total, kl, n = 0.0, 0.0, 0
    for b in batches:
        s, labels = _out(obj, model, b)
        total += float(F.cross_entropy(s, labels, reduction="sum"))
        n += labels.numel()
        if teacher is not None:
            kl += float(kd_sum(s, _out(obj, teacher, b)[0], 1.0))
    out = {"loss": round(total / n, 5), "perplexity": round(math.exp(min(total / n, 50)), 4)}
    if teacher is not None:
        out["kl_to_original"] = round(kl / n, 6)
    return out


def seq2seq_tune(obj, steps, student, teacher, g, *, T, data, tokenizer, source_run, lr, seed, rows, eval_rows,
                 held):
    """Train `student` in place (see the module docstring); the report's "finetune" entry.
    T: tokens a row; rows: rows a step; held: strata.train.recover._held."""
    if tokenizer is None:
        raise UsageError("--finetune reads the examples with the tokenizer the model was trained with: give "
                         "--tokenizer RUN/tokenizer.json (or a run folder)")
    tok = load_tokenizer(tokenizer)
    src = _data(data, source_run)
    records, digest = obj.examples(src)
    if data is not None:  # the run's own examples are what its tokenizer was fitted on
        check_text(tok, [r[k] for r in records for k in obj.fields if k != "label"], str(data),
                   "give --data examples in the characters the model trained on")
    if len(records) < 2:  # one to fine-tune on, one to score before and after
        raise UsageError(f"--finetune data: {len(records):,} example; need at least 2 (one to fine-tune on, "
                         "one to measure the quality before and after)")
    ex = tokenize_examples(records, digest, obj.name, obj.fields, tok, None, 0.1,
                           str(src or obj.builtin_task), writer=False)
    batches = obj.batches(ex, T, rows, seed, max(1, eval_rows // rows), tok)

    def tensors(b):
        return {k: torch.as_tensor(v) for k, v in b.items()}

    held_out = [tensors(batches.eval_batch(i)) for i in range(min(batches.eval_count(), max(1, eval_rows // rows)))]
    before = _quality(obj, student, held_out, teacher)
    masks, frozen = held(student, g)

    def loss_of(step):
        b = tensors(batches.train_batch(step, 0))
        with torch.no_grad():
            t, _ = _out(obj, teacher, b)
        s, _ = _out(obj, student, b)
        return kd_sum(s, t, 1.0) / max(1, s.shape[0])
    out = distill_steps(student, teacher, masks, frozen, steps, lr, loss_of)
    return {**out, "objective": obj.name, "batch": {"rows": rows, "tokens": T},
            "held_out": {"rows": sum(int(b["src"].shape[0]) for b in held_out), "tokens": T},
            "teacher": _quality(obj, teacher, held_out), "before": before,
            "after": _quality(obj, student, held_out, teacher)}
