"""`Run`, the handle `strata.train` returns and `strata generate` / `strata eval`
open: a run folder (strata.train.run_folder) and what uses its model.

After `strata train specs/tiny_shakespeare.arch`::

    run = Run.open("runs/tiny_shakespeare")
    run.val_loss, run.generate("ROMEO:", tokens=100)
    model = strata.compile("specs/tiny_shakespeare.arch", weights=run.weights())
    open_source("out/compressed").evaluate()     # a compress output, or a spec with --weights
"""

from __future__ import annotations

from pathlib import Path

from strata.backends.torch.workflows.calibration import trained_context
from strata.errors import UsageError
from strata.passes import calibrated_passes
from strata.train.calibrate import calibrate
from strata.train.generate import generate_text
from strata.train.run_folder import (CACHE, FINAL, METRICS, PLOT, RUN_JSON, TOKENIZER, RunFolder, is_run,
                                     weights_key)
from strata.train.sources import (compress_report, is_compressed, neither, no_other_weights, resolve_weights,
                                  source_run, spec_info, spec_weights)
from strata.train.speculate import speculative_pair
from strata.train.validation import evaluate_run

__all__ = ["Run", "open_source", "is_run", "RUN_JSON", "TOKENIZER", "METRICS", "PLOT", "FINAL", "CACHE"]


class Run(RunFolder):
    """A training run on disk, whose model (`model`, what `generate` and `evaluate`
    run) is compiled from it once, as `strata generate` / `strata eval` compile it:
    the final float weights, then the spec's passes — also for the Run that
    `strata.train` returns.  A spec whose passes read activations (GPTQ, AWQ,
    SmoothQuant, int8_static, Wanda, SparseGPT, ...) compiles calibrated on
    `calibration` when set (what `--calibration` takes), else on the data the run
    trained on (strata.train.calibrate); `calibrated` then says on what."""

    _calibration = None             # token ids, a text file, a run folder or "builtin"
    calibrated: str | None = None   # "calibrated ... on 128 sequences of RUN's data"
    # the same for the other model of speculative decoding (the draft, the distill teacher):
    # ("the draft: calibrated ... on 128 sequences of DRAFT_RUN's data",)
    also_calibrated: tuple[str, ...] = ()
    # the run's data as calibration token ids (1-D), read already: what `strata compress
    # RUN --eval` read for the compression, so the original it measures reads it no more
    data_ids = None

    @property
    def calibration(self):
        return self._calibration

    @calibration.setter
    def calibration(self, value) -> None:
        """Other calibration data makes other weights: the models compiled so far go."""
        self._calibration = value
        self._compiled.clear()

    def calibration_for(self, g):
        given = self.calibration
        if given is None and not calibrated_passes(g):
            return None
        tokenizer = None
        if not hasattr(given, "shape") and not str(given).endswith(".safetensors"):
            self.tokenizer  # noqa: B018 - a missing tokenizer is said as the run says it
            tokenizer = self.tokenizer_file or self.path / TOKENIZER
        ids, self.calibrated = calibrate(g, given=given, data=self.info.get("data"), tokenizer=tokenizer,
                                         trained=trained_context(self.info), whose=str(self.path),
                                         objective=self.objective, run=self.path, read=self.data_ids)
        return ids

    def generate(self, prompt: str = "\n", tokens: int = 200, temperature: float = 0.8,
                 top_k: int | None = None, seed: int | None = None, **options) -> str:
        """Text the model writes after `prompt` (KV-cached; causal LM and seq2seq runs).
        options: compile=True (the one-token step compiled), draft="RUN" or speculate=True
        (speculative decoding; teacher_weights= the teacher's instead of the run's), k (draft tokens a round, to start), stats (a GenerationStats
        to fill); see strata.train.generate.generate_text."""
        self.also_calibrated = ()  # a draft or teacher of this call's says its own (_pair)
        return generate_text(self, prompt, tokens, temperature, top_k, seed, pair=_pair, **options)

    def evaluate(self, data: str | None = None, **kw) -> dict:
        """Validation loss (and perplexity / accuracy) of the final model on the run's
        validation split, or on all of `data`."""
        return evaluate_run(self, data, **kw)


def _pair(run, draft, speculate, teacher_weights=None):
    """speculative_pair with the draft opened as any source is: a run folder or a
    compress output (a quantized student drafts as well as its run does); what the
    other model calibrated on (its own run's data) goes to `run.also_calibrated`."""
    other = None if draft is None else _draft(run, draft)
    target, drafter = speculative_pair(run, other, speculate, teacher_weights)
    if other is not None:
        note = other.calibrated and f"the draft: {other.calibrated}"
    else:
        note = getattr(target, "strata_calibrated", None) and f"the teacher: {target.strata_calibrated}"
    run.also_calibrated = (note,) if note else ()
    return target, drafter


def _draft(run, draft) -> Run:
    """The draft `draft` names, opened, and kept by the run (its path and weights):
    a second call with it compiles (and calibrates) it no more."""
    opened = open_source(draft)
    return run.kept(("draft", str(Path(draft).resolve()), *weights_key(opened.weights())), lambda: opened)


def open_source(path: str | Path, weights: str | Path | None = None, model: str | None = None,
                calibration=None) -> Run:
    """A `Run` for what `strata eval` / `strata generate` were given: a run folder,
    a compress output folder, or a spec file with `weights` (any of those; see
    strata.train.sources).  calibration: for a spec whose passes read activations,
    the data to calibrate on instead of the run's own (see `Run`)."""
    run = _open(path, weights, model)
    run.calibration = calibration
    return run


def _open(path, weights, model) -> Run:
    p = Path(path)
    if p.is_dir():
        no_other_weights(p, weights)
        if is_run(p):
            return Run.open(p)
        if is_compressed(p):
            w = resolve_weights(p)
            return _from_spec(w.spec, None, w, p, source_run(w, compress_report(p)))
        raise UsageError(neither(p))
    w = spec_weights(p, weights)
    return _from_spec(str(p), model, w, w.folder or p.parent, source_run(w))


def _from_spec(spec: str, model: str | None, weights, origin: Path, source: dict | None) -> Run:
    """A Run-like handle for a spec and weights that no run folder describes."""
    return Run(origin, spec_info(spec, model, source), weights_file=weights.file, tokenizer_file=weights.tokenizer)
