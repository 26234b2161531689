"""A run folder, and `Run`, the handle `strata.train` returns and `strata
generate` / `strata eval` open.

    RUN/
      run.json            the spec, objective, settings, data and tokenizer of the run
      tokenizer.json      the tokenizer trained on the data (generate / eval reuse it)
      metrics.jsonl       one line per optimizer step, one per evaluation
      loss.png            the loss curve
      model.safetensors   the final weights, in the spec's own names
      checkpoints/        step-NNNNNNNN/ (see strata.train.checkpoint); latest.json, best.json
      cache/              token ids of the data (memory-mapped), keyed by its hash

    >>> run = Run.open("runs/tiny_shakespeare")                       # doctest: +SKIP
    >>> run.val_loss, run.generate("ROMEO:", tokens=100)             # doctest: +SKIP
    >>> model = strata.compile("specs/tiny_shakespeare.arch", weights=run.weights())  # doctest: +SKIP
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from strata.errors import UsageError
from strata.train.checkpoint import find_checkpoint
from strata.train.heads import Objective
from strata.train.metrics import read_metrics

__all__ = ["Run", "resolve_weights", "RUN_JSON", "TOKENIZER", "METRICS", "PLOT", "FINAL", "CACHE"]

RUN_JSON, TOKENIZER, METRICS, PLOT, FINAL, CACHE = (
    "run.json", "tokenizer.json", "metrics.jsonl", "loss.png", "model.safetensors", "cache")


def is_run(path: Path) -> bool:
    return (Path(path) / RUN_JSON).is_file()


def resolve_weights(path: str | Path) -> tuple[Path, Path | None]:
    """(weights file, tokenizer.json of the run it belongs to or None) for a
    weights file or a run folder (whose final, else latest, weights are taken)."""
    p = Path(path)
    if p.is_dir():
        if not is_run(p):
            raise UsageError(f"{p}: a folder, but not a run folder (it has no {RUN_JSON})")
        return Run.open(p).weights("final"), p / TOKENIZER
    if not p.exists():
        raise UsageError(f"{p}: no such file")
    for parent in list(p.resolve().parents)[:3]:
        if is_run(parent) and (parent / TOKENIZER).is_file():
            return p, parent / TOKENIZER
    return p, None


class Run:
    """A training run on disk (and, right after `strata.train`, its model in memory)."""

    def __init__(self, path: str | Path, info: dict, model=None, tokenizer=None):
        self.path, self.info = Path(path), info
        self._model, self._tokenizer = model, tokenizer

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        path = Path(path)
        f = path / RUN_JSON
        if not path.is_dir():
            raise UsageError(f"{path}: no such run folder")
        try:
            info = json.loads(f.read_text())
        except FileNotFoundError:
            raise UsageError(f"{path}: not a run folder (no {RUN_JSON}); strata train writes one") from None
        except (OSError, ValueError) as e:
            raise UsageError(f"{f}: unreadable ({e})") from None
        if not isinstance(info, dict) or info.get("format") != "strata-run":
            raise UsageError(f"{f}: not a strata run description")
        obj, settings = info.get("objective"), info.get("settings")
        if not isinstance(obj, dict) or set(obj) != {"name", "output", "nsp", "classes"} \
                or not isinstance(settings, dict) or not isinstance(info.get("data"), dict):
            raise UsageError(f"{f}: damaged (objective, settings or data missing)")
        try:
            from strata.dsl.registry import TrainConfig

            TrainConfig.model_validate({k: v for k, v in settings.items() if k in TrainConfig.model_fields})
        except ValueError as e:
            raise UsageError(f"{f}: damaged settings ({e})") from None
        return cls(path, info)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, step={self.step}, val_loss={self.val_loss})"

    # ------------------------------------------------------------ what it did
    @property
    def objective(self) -> Objective:
        return Objective(**self.info["objective"])

    @property
    def settings(self) -> dict:
        return self.info["settings"]

    @property
    def metrics(self) -> list[dict]:
        return read_metrics(self.path / METRICS)

    @property
    def step(self) -> int:
        steps = [r["step"] for r in self.metrics if "train_loss" in r]
        return steps[-1] if steps else 0

    @property
    def val_loss(self) -> float | None:
        vals = [r["val_loss"] for r in self.metrics if r.get("val_loss") is not None]
        return vals[-1] if vals else None

    @property
    def best_val_loss(self) -> float | None:
        vals = [r["val_loss"] for r in self.metrics if r.get("val_loss") is not None]
        return min(vals) if vals else None

    def weights(self, which: str = "final") -> Path:
        """The weights file: "final" (the end of the run; else the latest
        checkpoint), "latest" or "best" checkpoint."""
        if which == "final" and (self.path / FINAL).is_file():
            return self.path / FINAL
        ckpt = find_checkpoint(self.path, "best" if which == "best" else "latest")
        if ckpt is None:
            raise UsageError(f"{self.path}: no {which} weights yet (no checkpoint written)")
        return ckpt.weights

    # ------------------------------------------------------------ using it
    def spec_source(self) -> str:
        spec = self.info.get("spec")
        if spec and Path(spec).is_file():
            return spec
        if self.info.get("spec_text"):
            return self.info["spec_text"]
        raise UsageError(f"{self.path}: its spec {spec} is gone; the run needs it to build the model")

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from strata.train.tokenizer import load_tokenizer

            self._tokenizer = load_tokenizer(self.path / TOKENIZER)
        return self._tokenizer

    def load_model(self, which: str = "final", device: str = "cpu"):
        """The trained model (eval mode), compiled from the run's spec."""
        from strata import api
        from strata.backends.torch.weights import WeightsError

        net = api.compile(self.spec_source(), model=self.info.get("model"), device=device)
        try:
            api.load_weights(net, self.weights(which))
        except WeightsError as e:
            raise UsageError(f"{e}\n(has the spec changed since the run?)") from None
        return net.eval()

    @cached_property
    def model(self):
        return (self._model.eval() if self._model is not None else self.load_model())

    def generate(self, prompt: str = "\n", tokens: int = 200, temperature: float = 0.8,
                 top_k: int | None = None, seed: int | None = None, **options) -> str:
        """Text the model writes after `prompt` (KV-cached; causal LM and seq2seq runs).
        options: compile=True (the one-token step compiled), draft="RUN" or speculate=True
        (speculative decoding), k (draft tokens a round, to start), stats (a GenerationStats
        to fill); see strata.train.generate.generate_text."""
        from strata.train.generate import generate_text

        return generate_text(self, prompt, tokens, temperature, top_k, seed, **options)

    def evaluate(self, data: str | None = None, **kw) -> dict:
        """Validation loss (and perplexity / accuracy) of the final model on the run's
        validation split, or on all of `data`."""
        from strata.train.evaluate import evaluate_run

        return evaluate_run(self, data, **kw)
