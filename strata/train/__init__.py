"""Training: a spec's `train { }` section, run.

For example (a few minutes on a CPU)::

    import strata
    run = strata.train("specs/tiny_shakespeare.arch", steps=200)
    run.val_loss, run.generate("ROMEO:", tokens=80)

    settings.py    train section + --set + flags -> one validated dict
    objectives/    one module per objective (its heads, tokens, data, batches, loss, generation),
                   the registry that picks one from the model's heads, distillation around any
    limits.py      the vocabulary and positions a model allows
    data.py        text files / folders / the built-in corpus / JSON Lines, checked
    tasks.py       the built-in corpus's lines the built-in example tasks are made from
    tokenizer.py   char, byte, BPE (tokenizers), saved in the run folder
    dataset.py     token ids, cached memory-mapped, train / validation split
    batches.py     batches as a pure function of (seed, step): exact resume, any world size
    models.py      the models a run compiles and the weights it loads (from the backend)
    optim.py       AdamW / SGD, warmup + cosine / linear / constant
    loop.py        micro-steps, accumulation, clipping, evaluation, checkpoints
    validation.py  validation loss / perplexity / accuracy; `strata eval`
    checkpoint.py  atomic checkpoints, latest / best pointers; state.py: what they hold
    metrics.py     metrics.jsonl, loss.png, the progress bar
    distributed.py torchrun: DDP, FSDP2
    folder_names.py the names of a run folder's files and a compress output's (no torch)
    folder_spec.py run.json, and the spec a run or compress output was made from (no torch)
    run.py         the run folder and `Run`; generate.py, validation.py, speculate.py use it
    sources.py     what a user has (run folder, compress output, weights) as a `Run`
    start.py       `train()`: all of the above in order, one function per stage; its tokenizer,
                   weights and run record stages in start_tokenizer.py, start_weights.py,
                   start_record.py

`strata.train` is this package and is also callable: `strata.train(spec, ...)`
is `strata.train.train(spec, ...)`.  The package's class is swapped for a
callable one because importing any submodule (`strata.train.run`) binds the
name `strata.train` to the package, so a plain function of that name in
`strata/__init__.py` would be replaced by the module the first time one is
imported; only renaming the package would avoid it.

`train` and `Run` are imported when first used, not with the package: its
torch-free modules (folder_names.py: what `strata compile RUN` reads) are imported
without torch.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strata.train.run import Run
    from strata.train.start import train

__all__ = ["Run", "train"]


def __getattr__(name: str):
    if name == "train":
        from strata.train.start import train  # lazy: torch

        return train
    if name == "Run":
        from strata.train.run import Run  # lazy: torch

        return Run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """`strata.train(spec, ...)` calls `train`: the package is named like the verb."""

    def __call__(self, spec, **overrides) -> "Run":
        from strata.train.start import train  # lazy: torch

        return train(spec, **overrides)


sys.modules[__name__].__class__ = _CallableModule
