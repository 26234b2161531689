"""What a user has, as a model to use — one rule for every command that reads
weights (`eval`, `generate`, `compress`, `compile`, `train --init`, `distill`):

    RUN/                   a run folder (run.json): its spec, final (else latest) weights, tokenizer
    OUT/                   a `strata compress` output folder: model.arch + weights.safetensors
                           (+ tokenizer.json and the run it came from, when it came from a run)
    FILE.safetensors       weights alone (the tokenizer of the run folder they sit in, if any)
    SPEC --weights W       a spec with any of the above as its weights

After `strata train specs/tiny_shakespeare.arch` and a `strata compress` to out/compressed::

    w = resolve_weights("runs/tiny_shakespeare")
    w.file, w.tokenizer    # runs/tiny_shakespeare/model.safetensors, .../tokenizer.json

`strata.train.run.open_source` turns any of them into a `Run` (`strata eval`,
`strata generate`); this module is below it, so distillation can resolve a
teacher's weights without the modules that generate and evaluate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from strata.compiler import as_graph
from strata.errors import UsageError
from strata.io import read_regular
from strata.train.limits import model_limits
from strata.train.objectives import choose_objective
from strata.train.folder_names import COMPRESSED_SPEC, COMPRESSED_WEIGHTS, REPORT, TOKENIZER, is_compressed, is_run, neither
from strata.train.run_folder import RunFolder, may_read
from strata.train.records import read_source_run
from strata.train.settings import resolve_settings

__all__ = ["Weights", "COMPRESSED_SPEC", "COMPRESSED_WEIGHTS", "REPORT", "is_compressed",
           "resolve_weights", "no_other_weights", "spec_weights", "compress_report", "spec_info", "source_run", "neither"]


@dataclass(frozen=True)
class Weights:
    file: Path                 # the .safetensors file
    tokenizer: Path | None     # tokenizer.json of the run (or compress output) they belong to
    folder: Path | None        # that run or compress output folder
    spec: str | None           # the spec they fit: the run's (path or text) or OUT/model.arch
    model: str | None          # which model of that spec


def _tokenizer_in(folder: Path) -> Path | None:
    return folder / TOKENIZER if (folder / TOKENIZER).is_file() else None


def resolve_weights(path: str | Path) -> Weights:
    """The weights a user means by `path`: a run folder's final (else latest)
    weights, a compress output folder's, or a .safetensors file."""
    p = Path(path)
    if p.is_dir():
        if is_run(p):
            run = RunFolder.open(p)
            try:  # --init and a teacher's weights need no spec; compress and compile say when it is gone
                spec = run.spec_source()
            except UsageError:
                spec = None
            return Weights(run.weights("final"), _tokenizer_in(p), p, spec, run.info.get("model"))
        if is_compressed(p):
            return Weights(p / COMPRESSED_WEIGHTS, _tokenizer_in(p), p, str(p / COMPRESSED_SPEC), None)
        raise UsageError(neither(p))
    if not p.exists():
        raise UsageError(f"{p}: no such file or folder")
    for parent in list(p.resolve().parents)[:3]:  # RUN/model.safetensors, RUN/checkpoints/step-N/...
        if is_run(parent):
            return Weights(p, _tokenizer_in(parent), parent, None, None)
    return Weights(p, None, None, None, None)


def no_other_weights(folder: Path, weights) -> None:
    """A run or compress output folder names its own weights: `--weights` is refused with it."""
    if weights is not None:
        raise UsageError(f"{folder} is a folder with its own weights; --weights goes with a spec file")


def spec_weights(spec: Path, weights) -> Weights:
    """The weights `--weights` gives a spec file, which must exist (`SPEC --weights W`)."""
    if not spec.exists():
        raise UsageError(f"{spec}: no such run folder or spec file")
    if weights is None:
        raise UsageError(f"{spec}: a spec needs its weights: --weights RUN_DIR, a compress output "
                         "folder or a .safetensors file")
    return resolve_weights(weights)


def compress_report(folder: Path) -> dict:
    """report.json of a compress output (empty when absent); damaged is an error."""
    f = folder / REPORT
    if not f.exists():
        return {}
    try:
        rep = json.loads(read_regular(f, 64 << 20, "report"))
    except (ValueError, RecursionError) as e:  # RecursionError: nested past json's depth
        raise UsageError(f"{f}: unreadable ({str(e)[:120]})") from None
    if not isinstance(rep, dict):
        raise UsageError(f"{f}: not a strata compress report")
    if "source_run" in rep:  # what eval, generate and compress of this folder read as the run's
        rep["source_run"] = _confined(read_source_run(rep["source_run"], f), folder)
    return rep


def _confined(src: dict | None, folder: Path) -> dict | None:
    """report.json's source_run with nothing in it that reaches out of what strata
    reads for a run (may_read): the run's folder, absolute, is kept only inside
    `folder` (the compress output) or the working directory, since it is where the
    data's "from_run" is looked for, and "from_run" is dropped (relative to that
    run's folder, not to this one); the data's own path is checked where it is read."""
    if src is None:
        return None
    path = src.get("path")
    keep = isinstance(path, str) and may_read(path, folder)
    return {**src, "path": path if keep else None,
            "data": {k: v for k, v in src["data"].items() if k != "from_run"}}


def spec_info(spec: str, model: str | None, source: dict | None) -> dict:
    """The run.json a run folder would have, for a spec and weights that no run
    folder describes: objective from the heads, settings from the spec's train
    section (or `source`, the run the weights came from), data as those settings say."""
    g = as_graph(spec, model=model, need_teacher=False)
    if source is not None:
        objective, settings, data = source["objective"], source["settings"], source["data"]
    else:
        obj = choose_objective(g)
        objective = obj.to_json()
        settings = resolve_settings(g)
        settings["context"] = settings["context"] or model_limits(g)[1] or g.graph.vars.get("ctx")
        path = settings["data"]
        data = {"name": path or "built-in corpus", "builtin": path is None,
                "path": str(Path(path).resolve()) if path else None}
    return {"format": "strata-run", "version": 1, "spec": str(Path(spec).resolve()), "spec_text": None,
            "model": model, "name": g.graph.name, "parameters": g.graph.parameters,
            "objective": objective, "settings": settings, "data": data}


def source_run(weights: Weights, report: dict | None = None) -> dict | None:
    """objective / settings / data of the run the weights came from, if any (a
    compress output's, from its report)."""
    if report is None and weights.folder is not None and is_compressed(weights.folder):
        report = compress_report(weights.folder)
    if report and isinstance(report.get("source_run"), dict):
        src = report["source_run"]
        if all(isinstance(src.get(k), dict) for k in ("objective", "settings", "data")):
            # its data's "from_run" is relative to that run's folder, not to this one
            return {**src, "data": {k: v for k, v in src["data"].items() if k != "from_run"}}
    if weights.folder is not None and is_run(weights.folder):
        info = RunFolder.open(weights.folder).info
        return {k: info[k] for k in ("objective", "settings", "data")}
    return None
