"""The calibration data a trained model compiles with when its spec's passes
read activations (GPTQ, AWQ, SmoothQuant, int8_static, Wanda, SparseGPT,
activation-aware low rank and pruning, quantize(auto)).

`strata eval` / `strata generate` of a run, and `strata.compile(spec,
weights=RUN)`, calibrate on what the caller gives (`--calibration X`,
`calibration=X`: token ids, a text file, a run folder or `builtin`) or, by
default, on the text the run trained on, read with the run's tokenizer and
bounded as `strata compress --calibration RUN` reads it: at most MAX_ROWS rows
of the context the run trained at, sampled over all of the data.

After `strata train spec.arch --data input.txt --out runs/x` with a spec whose
passes say `quantize(int4_weight, method=gptq)`::

    ids, note = calibrate(g, data=run.info["data"], tokenizer="runs/x/tokenizer.json",
                          trained=64, whose="runs/x")
    note   # 'calibrated quantize(int4_weight, method=gptq) on 128 sequences of runs/x's data (input.txt)'
"""

from __future__ import annotations

from pathlib import Path

from strata.backends.torch.workflows.calibration import MAX_LENGTH, MAX_ROWS, load_calibration
from strata.errors import UsageError
from strata.passes import calibrated_passes
from strata.train.recover import calibration_ids, data_calibration_ids
from strata.train.run_folder import run_data

__all__ = ["MAX_CHARS", "calibrate", "calibration_input", "run_calibration_ids"]

MAX_CHARS = MAX_ROWS * MAX_LENGTH * 8  # text read for calibration, at most (as strata compress reads it)


def calibration_input(src, tokenizer):
    """Calibration given as text (a file, a run folder, builtin) as token ids (1-D),
    read with `tokenizer` (a tokenizer.json); token ids (a tensor, a .safetensors
    file) or None as given."""
    if src is not None and not hasattr(src, "shape") and (
            str(src) == "builtin" or Path(src).is_dir() or (
                Path(src).is_file() and Path(src).suffix != ".safetensors")):
        return calibration_ids(src, tokenizer, MAX_CHARS)
    return src


def calibrate(g, *, given=None, data: dict | None = None, tokenizer=None, trained: int | None = None,
              whose: str = "the run", hint: str = "--calibration ", objective=None, run=None,
              remedy: str | None = None, read=None) -> tuple:
    """(token ids (N, T), a line saying what was calibrated on what) for the
    passes of `g` that read activations, or (None, None) when none does.
    given: the caller's calibration (see calibration_input), else the run's
    `data` (its run.json record) read with `tokenizer` (a tokenizer.json), as
    its `objective` reads it (examples' texts for seq2seq and classify), found
    relative to the run folder `run` first (a moved run: run_data);
    trained: the context the run trained at (rows are cut to it); hint: how the
    caller names its calibration (`--calibration `, `calibration=`); remedy: what to
    do when the run's data is gone, for a caller that takes no calibration of its
    own (default: give `hint`FILE); read: the run's `data` as run_calibration_ids
    reads it, read already (token ids, 1-D: strata compress reads them once for
    the model it measures and the one it writes)."""
    passes = calibrated_passes(g)
    if not passes:
        if given is not None:
            raise UsageError(f"{hint}{given}: no pass of {g.graph.name} reads activations; "
                             "there is nothing to calibrate")
        return None, None
    labels = ", ".join(p.label() for p in passes)
    if given is not None:
        ids = calibration_input(given, tokenizer)
        what = "the token ids given" if hasattr(given, "shape") else str(given)
    else:
        ids, what = run_calibration_ids(labels, data, tokenizer, whose, hint, objective, run, remedy, read)
    rows = load_calibration(ids, g, None, trained)
    return rows, f"calibrated {labels} on {rows.shape[0]} sequences of {what}"


def run_calibration_ids(labels: str, data: dict | None, tokenizer, whose: str, hint: str, objective=None,
                        run=None, remedy: str | None = None, read=None) -> tuple:
    """(token ids (1-D), what they are, in words) of the data a run trained on,
    for the passes `labels` (their spec text, for the message when the data is
    gone); `read`: those ids, read already; see calibrate."""
    data = data or {}
    ids = read
    if ids is None:
        run_data(data, run, f"{labels} calibrates on the data {whose} trained on, and it",
                 remedy or f"give {hint}FILE (text, token ids as .safetensors, a run folder, or builtin)")
        ids = data_calibration_ids(data, tokenizer, MAX_CHARS, objective, run)
    return ids, f"{whose}'s data ({data.get('name') or 'built-in corpus'})"
