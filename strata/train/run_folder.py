"""A run folder on disk, and `RunFolder`, the handle that reads it: what the run
did, its weights, tokenizer and model.  `strata.train.run.Run` adds what uses the
model (generate, evaluate), so the modules those need (objectives, validation,
speculative decoding) can read a run folder without importing them.

    RUN/
      run.json            the spec, objective, settings, data and tokenizer of the run
      model.arch          the spec as trained, standing alone (what it imports and extends
                          resolved into one file; strata.passes.spec_writer.run_spec): what
                          eval, generate, compress and export build the model from
      tokenizer.json      the tokenizer trained on the data (generate / eval reuse it)
      metrics.jsonl       one line per optimizer step, one per evaluation
      loss.png            the loss curve
      model.safetensors   the final weights, in the spec's own names
      checkpoints/        step-NNNNNNNN/ (see strata.train.checkpoint); latest.json, best.json
      cache/              token ids of the data (memory-mapped), keyed by its hash

Nothing in it names another file of the run by an absolute path, so a run folder
moved or copied elsewhere (the whole project, or the run folder alone) loads as
it did; the data it trained on, and a distilled student's `--teacher-weights`,
are recorded both absolute and relative to the run folder (`run_data`,
`RunFolder.teacher_weights`), so a run moved together with them finds them.  A run
written before model.arch (run.json's "spec" alone, absolute) loads as then.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from strata.backends.torch.weights_file import WeightsMismatchError
from strata.compiler import as_graph
from strata.errors import UsageError
from strata.io import is_spec_path, open_regular
from strata.safetensors_file import WeightsError
from strata.train.checkpoint import find_checkpoint
from strata.train.folder_spec import OutsideError, may_read, own_file, read_run, spec_source
from strata.train.folder_names import CACHE, FINAL, METRICS, PLOT, RUN_JSON, SPEC, TOKENIZER, is_run
from strata.train.limits import model_limits
from strata.train.metrics import RunMetrics, iter_records
from strata.train.models import compile_model
from strata.train.objectives import OBJECTIVES, Objective, objective_from_json
from strata.train.tokenizer import load_tokenizer

__all__ = ["RunFolder", "OutsideError", "is_run", "may_read", "run_data", "run_relative", "weights_key", "RUN_JSON", "SPEC", "TOKENIZER", "METRICS",
           "PLOT", "FINAL", "CACHE"]


def _digest(path: str) -> str | None:
    """sha256 of a data file's bytes, read a piece at a time: memory bounded whatever
    its size; None for a folder (`/` or a home folder would be walked and read whole)."""
    if os.path.isdir(path):
        return None
    h = hashlib.sha256()
    with os.fdopen(open_regular(path, "data file"), "rb") as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


def _found(from_run: str | None, path: str | None, run: str | Path | None,
           what: str = "", hint: str = "", sha256: str | None = None) -> tuple[str | None, list[str]]:
    """(where a file or folder a run recorded is now, or None; the places looked at):
    `from_run` relative to the run folder first (the run moved or copied together
    with it), then `path` as recorded (absolute: an older run's only record).  One
    outside the run folder and the working directory (may_read) is read only when
    its content is the `sha256` the run recorded of it (a run's data): a run.json
    from someone else can name only files whose content its maker knows already.
    Else one line saying so, `what` (in words) and `hint` (what to give) — the same
    line whether or not such an outside path exists, so that a run.json from someone
    else cannot learn which of the user's files are there."""
    tried = []
    if from_run and run is not None:
        tried.append(os.path.normpath(Path(run).resolve() / from_run))
    if path:
        tried.append(path)
    tried = list(dict.fromkeys(tried))
    outside = [p for p in tried if not may_read(p, run)]
    allowed = next((p for p in tried if p not in outside and os.path.exists(p)), None)
    if allowed is None and sha256:
        allowed = next((p for p in outside if os.path.exists(p) and _digest(p) == sha256), None)
    if outside and allowed is None:
        inside = [p for p in tried if p not in outside]
        where = (f"is not at {' nor at '.join(inside)}, and {outside[0]} is" if inside
                 else f"is recorded at {outside[0]},")
        only = ("a run's data only when its content is what the run recorded (its sha256)" if sha256
                else "none of a run's files")
        raise OutsideError(f"{what} {where} outside the run folder and the working directory, where strata "
                           f"reads {only} (a run.json could name any file); {hint}")
    return allowed, tried


def run_data(data: dict, run: str | Path | None, what: str, hint: str) -> str | None:
    """The file or folder a run trained on (run.json's "data"), where it is now:
    at its path relative to the run folder `run` ("from_run": the run moved or
    copied together with its data), else at its absolute "path" (an older run's
    only record; its "name" as given when it has none); None for the built-in
    corpus or task.  Data found nowhere is one line: `what` (the data, in words),
    where it was looked for, and `hint` (what to give instead)."""
    if data.get("builtin"):
        return None
    found, tried = _found(data.get("from_run"), data.get("path") or data.get("name"), run,
                          f"{what} ({data.get('name')})", hint, data.get("sha256"))
    if found is not None or not tried:
        return found
    raise UsageError(f"{what} ({data.get('name')}) is gone: not at {' nor at '.join(tried)}; {hint}")


def weights_key(path: str | Path) -> tuple:
    """What tells a weights file from another: where it is, and its size and time
    (a run trained again in place writes other weights there)."""
    p = Path(path).resolve()
    st = p.stat()
    return str(p), st.st_size, st.st_mtime_ns


def run_relative(path: str | Path, run: str | Path) -> str:
    """`path` as a run folder records it beside its absolute path: relative to the run."""
    return os.path.relpath(Path(path).resolve(), Path(run).resolve())


class RunFolder:
    """A training run on disk: what it did and its model; `strata.train.run.Run` adds
    what uses it (generate, evaluate)."""

    def __init__(self, path: str | Path, info: dict, tokenizer=None,
                 weights_file: Path | None = None, tokenizer_file: Path | None = None, trained=None):
        """weights_file / tokenizer_file: for what is not a run folder (a compress
        output, a spec with weights; see strata.train.sources): its one set of
        weights and the tokenizer they came with.  trained: the module that trained,
        as training left it (`strata.train` gives it; what it trained: LoRA's adapters
        apart, float where the spec quantizes), not the model the run compiles to."""
        self.path, self.info = Path(path), info
        self._tokenizer, self.trained = tokenizer, trained
        self.weights_file, self.tokenizer_file = weights_file, tokenizer_file
        self._compiled: dict[tuple[str, str], object] = {}  # (which, device) -> the model, compiled once
        self._others: dict[tuple, object] = {}  # what `kept` keeps: the draft, the teacher

    @classmethod
    def open(cls, path: str | Path) -> "RunFolder":
        """The run in `path`; its run.json is read through its schema (one line
        naming the key when a value is missing or of the wrong type)."""
        path = Path(path)
        info = read_run(path)
        if info.objective.name not in OBJECTIVES:
            raise UsageError(f"{path / RUN_JSON}: damaged: 'objective.name': unknown objective "
                             f"'{info.objective.name}' (objectives: {', '.join(OBJECTIVES)})")
        return cls(path, info.model_dump(exclude_unset=True) | {"settings": info.settings})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, step={self.step}, val_loss={self.val_loss})"

    # ------------------------------------------------------------ what it did
    @property
    def objective(self) -> Objective:
        return objective_from_json(self.info["objective"])

    @property
    def settings(self) -> dict:
        return self.info["settings"]

    @property
    def metrics(self) -> RunMetrics:
        """metrics.jsonl's records, streamed at each use (`run.metrics[-1]` holds one)."""
        return RunMetrics(self.path / METRICS)

    def _last(self) -> tuple[int, float | None, float | None]:
        """(the last training step, the last and the lowest validation loss) of
        metrics.jsonl, streamed: memory is one record's, whatever the file's size."""
        step, last, best = 0, None, None
        for r in iter_records(self.path / METRICS):
            if "train_loss" in r:
                step = r["step"]
            if r.get("val_loss") is not None:
                last = r["val_loss"]
                best = last if best is None else min(best, last)
        return step, last, best

    @property
    def step(self) -> int:
        return self._last()[0]

    @property
    def val_loss(self) -> float | None:
        return self._last()[1]

    @property
    def best_val_loss(self) -> float | None:
        return self._last()[2]

    def weights(self, which: str = "final") -> Path:
        """The weights file: "final" (the end of the run; else the latest
        checkpoint), "latest" or "best" checkpoint."""
        if self.weights_file is not None:
            if which != "final":
                raise UsageError(f"{self.path}: one set of weights ({self.weights_file.name}); "
                                 f"no {which} checkpoint")
            return self.weights_file
        if which == "final" and os.path.lexists(self.path / FINAL):
            return own_file(self.path / FINAL)
        ckpt = find_checkpoint(self.path, "best" if which == "best" else "latest")
        if ckpt is None:
            raise UsageError(f"{self.path}: no {which} weights yet (no checkpoint written)")
        return own_file(ckpt.weights)

    # ------------------------------------------------------------ using it
    def spec_source(self) -> str:
        """The spec the run's weights were trained with: its own copy (RUN/model.arch),
        else (a run written before it kept one) the spec file it names, or its text."""
        return spec_source(self.path, self.info)

    def teacher_weights(self) -> str | None:
        """The distill teacher's weights the run was trained with (`strata train
        --teacher-weights`), where they are now: relative to the run folder first
        (moved together), then at the absolute path recorded (an older run records
        only that); None when it was given none (the pass's `weights=` is used)."""
        found, tried = _found(self.info.get("teacher_weights_from_run"), self.info.get("teacher_weights"),
                              self.path, f"{self.path}: the file of its teacher's weights (--teacher-weights "
                              "when it trained)", "give --teacher-weights")
        if found is None and tried:
            raise UsageError(f"{self.path}: its teacher's weights (--teacher-weights when it trained) are "
                             f"gone: not at {' nor at '.join(tried)}; give --teacher-weights with where "
                             "they are now")
        return found

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            if self.weights_file is not None and self.tokenizer_file is None:
                raise UsageError(f"{self.weights_file}: no tokenizer came with these weights: give weights "
                                 "from a run folder (or compress a run folder) to read and write text")
            self._tokenizer = load_tokenizer(self.tokenizer_file or self.path / TOKENIZER, follow=False)
        return self._tokenizer

    def load_model(self, which: str = "final", device: str = "cpu"):
        """The trained model (eval mode), compiled anew from the run's spec: its
        float weights, then the spec's passes (calibrated where they read activations)."""
        spec = self.spec_source()
        g = as_graph(spec, model=self.info.get("model"), need_teacher=False)  # used, not trained
        try:  # the float weights go in first; the spec's passes (quantization) then run on them
            weights = self.weights(which)
            calibration = self.calibration_for(g)  # after the weights are found: it reads data
            net = compile_model(g, device=device, weights=weights, calibration=calibration,
                                origin=spec if is_spec_path(spec) else None)
        except WeightsMismatchError as e:  # one line: its listing of every name is for the API
            raise UsageError(f"{e.one_line()} (has the spec changed since the run?)") from None
        except WeightsError as e:  # a damaged file: its own one-line reason
            raise UsageError(str(e)) from None
        self.check_tokenizer(net.strata_graph)
        return net.eval()

    def calibration_for(self, g):
        """Token ids (N, T) for the passes of `g` that read activations, or None
        (`strata.train.run.Run` calibrates on the run's data)."""
        return None

    def check_tokenizer(self, g) -> None:
        """The run's tokenizer fits the model (as `strata train` checks): no id past
        its vocabulary, and the special tokens its objective needs."""
        limit, _ = model_limits(g)
        tok = self.tokenizer
        if tok.vocab_size > limit:
            raise UsageError(f"{self.path / TOKENIZER}: {tok.vocab_size:,} ids; the model's vocabulary "
                             f"holds {limit:,} (is this the run's own tokenizer?)")
        missing = [s for s in self.objective.specials if s not in tok.specials]
        if missing:
            raise UsageError(f"{self.path / TOKENIZER}: lacks {', '.join(missing)}, which "
                             f"{self.objective.name} needs")

    def compiled(self, which: str = "final", device: str = "cpu"):
        """`load_model(which, device)`, compiled once and kept: what `generate` and
        `evaluate` run, so every call reads the one model (calibrated once)."""
        key = (which, str(device))
        if key not in self._compiled:
            self._compiled[key] = self.load_model(which, device)
        return self._compiled[key]

    def kept(self, key: tuple, make):
        """`make()` once per `key`, then kept: the other model of speculative decoding
        (a draft run, the distill teacher), compiled (and calibrated, on its own run's
        data) once as the run's own model is, `key` saying which (weights_key)."""
        if key not in self._others:
            self._others[key] = make()
        return self._others[key]

    @property
    def model(self):
        """The final weights as the spec compiles them (`strata generate` / `strata eval`'s
        model): for a run `strata.train` just returned too, not the float model it trained,
        which lacks the spec's quantization, pruning and factoring."""
        return self.compiled()
