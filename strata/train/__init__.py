"""Training: a spec's `train { }` section, run.

    >>> import strata
    >>> run = strata.train("specs/tiny_shakespeare.arch", steps=200)   # doctest: +SKIP
    >>> run.val_loss, run.generate("ROMEO:", tokens=80)                # doctest: +SKIP

    settings.py    train section + --set + flags -> one validated dict
    heads.py       the objective, from the model's heads
    data.py        text files / folders / the built-in corpus / JSON Lines, checked
    tokenizer.py   char, byte, BPE (tokenizers), saved in the run folder
    dataset.py     token ids, cached memory-mapped, train / validation split
    batches.py     batches as a pure function of (seed, step): exact resume, any world size
    objectives.py  losses (causal LM, masked LM + NSP, seq2seq, classification)
    distill.py     the teacher and the distillation loss
    optim.py       AdamW / SGD, warmup + cosine / linear / constant
    loop.py        micro-steps, accumulation, clipping, evaluation, checkpoints
    checkpoint.py  atomic checkpoints, latest / best pointers
    metrics.py     metrics.jsonl, loss.png, the progress bar
    distributed.py torchrun: DDP, FSDP2
    run.py         the run folder and `Run`; generate.py, evaluate.py use it
    start.py       `train()`: all of the above in order

`strata.train` is this package and is also callable: `strata.train(spec, ...)`
is `strata.train.train(spec, ...)`.
"""

from __future__ import annotations

import sys
import types

from strata.train.run import Run
from strata.train.start import train

__all__ = ["Run", "train"]


class _CallableModule(types.ModuleType):
    """`strata.train(spec, ...)` calls `train`: the package is named like the verb."""

    def __call__(self, spec, **overrides) -> Run:
        return train(spec, **overrides)


sys.modules[__name__].__class__ = _CallableModule
