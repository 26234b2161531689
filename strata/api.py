"""The public Python API of the PyTorch backend.

    >>> import torch
    >>> import strata.api as api
    >>> model = api.compile("specs/tiny_shakespeare.arch")
    >>> model(torch.zeros(1, 8, dtype=torch.long)).shape
    torch.Size([1, 8, 65])

torch is imported only when a function here needs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from strata.errors import UsageError
from strata.io import is_spec_path, write_atomic

__all__ = ["compile", "compress", "export", "generate_source", "load_weights", "save_weights", "source_of"]


def _origin(spec_or_path: Any) -> str | None:
    return str(spec_or_path) if is_spec_path(spec_or_path) else None


def source_of(spec_or_folder: Any, weights=None, model: str | None = None):
    """(spec, weights file or None, model, the `strata.train.sources.Weights` or
    None) for what a user has: a spec (with weights: a .safetensors file, a run
    folder or a compress output folder), or such a folder alone, which names both
    its spec and its weights."""
    from strata.train.sources import resolve_weights  # lazy: torch

    if isinstance(spec_or_folder, (str, Path)) and "\n" not in str(spec_or_folder) \
            and Path(spec_or_folder).is_dir():
        if weights is not None:
            raise UsageError(f"{spec_or_folder} is a folder with its own weights; weights go with a spec file")
        w = resolve_weights(spec_or_folder)
        if w.spec is None:
            raise UsageError(f"{spec_or_folder}: the spec this run was trained from is gone; give the spec "
                             "file and the folder as its weights")
        return w.spec, w.file, model or w.model, w
    if weights is None:
        return spec_or_folder, None, model, None
    w = resolve_weights(weights)
    return spec_or_folder, w.file, model, w


def _pass_entries(g, passes) -> list[dict]:
    """Pass entries from text in the spec's syntax ("fuse_qkv",
    'quantize(int8_dynamic, on="mlp")', located errors) or {"name", "options"} dicts."""
    from strata.dsl.registry import PASSES  # lazy: startup

    out = []
    for i, p in enumerate(passes):
        if isinstance(p, str):
            from strata.passes.text import parse_pass_texts  # lazy: startup

            out += parse_pass_texts([p], g, file=f"<passes[{i}]>")
            continue
        spec = PASSES.get(p["name"])
        if spec is None:
            raise ValueError(f"unknown pass {p['name']!r}; passes: {', '.join(PASSES)}")
        out.append({"name": p["name"], "options": spec.options(**p.get("options", {})).model_dump()})
    return out


def _with_passes(g, passes):
    """The graph with `passes` (None: the spec's own; [] none) to apply."""
    if passes is not None:
        g.graph.passes = _pass_entries(g, passes)
    return g


def _apply_passes(g, passes):
    """Run the spec's passes, or `passes` instead when given (text or
    {"name", "options"} dicts; [] runs none).  Graph only: no weights."""
    g = _with_passes(g, passes)
    if not g.graph.get("passes"):
        return g
    from strata.passes import apply_passes  # lazy: startup

    return apply_passes(g)


def generate_source(spec_or_path: Any, *, model: str | None = None, passes=None,
                    origin: str | None = None) -> str:
    """Readable PyTorch source for a spec; it defines `build()` and needs only torch.
    `origin` names the spec file in its docstring when `spec_or_path` is a graph.

        >>> src = generate_source("specs/gpt2.arch", passes=["fuse_qkv"])
        >>> "def build(config=None, **changes):" in src
        True
    """
    from strata.backends.torch import generate_source as gen  # lazy: startup
    from strata.compiler import as_graph  # lazy: startup

    g = _apply_passes(as_graph(spec_or_path, model=model), passes)
    return gen(g, origin=origin or _origin(spec_or_path))


def compile(spec_or_path: Any, *, passes=None, weights: str | Path | None = None,
            device=None, dtype=None, model: str | None = None, calibration=None,
            quantize: bool | str = True, cast: bool = False):
    """Build a spec into an `nn.Module` (from generated source), with its passes
    applied to the weights: `weights` (safetensors, in the spec's own names or the
    compiled model's; cast to the model's dtype only when `cast=True`) go through
    every pass; quantization then runs on them.

        >>> m = compile("specs/tiny_shakespeare.arch", device="cpu")
        >>> q = compile("specs/tiny_shakespeare.arch", passes=['quantize(int8_dynamic, on="mlp")'])

    and with weights of your own (`strata import-hf` writes these for GPT-2)::

        q = compile("specs/gpt2.arch", weights="gpt2.safetensors",
                    passes=['quantize(int8_dynamic, on="mlp")'])

    passes: None runs the spec's `passes { }`, a list runs those instead (text in
    the spec's syntax, or {"name", "options"} dicts), [] none.  calibration: token
    ids (N, T) or a file (.safetensors of ids, or text) for the passes that read
    activations (Wanda, activation-aware low rank, GPTQ); with weights from a run
    or a compress output, as `strata compress` takes it: text (a file, a run
    folder, builtin) read with the run's tokenizer, rows cut to the context the
    run trained at.  Left out, with weights from a run folder (or a compress
    output of one), those passes calibrate on the data the run trained on, as
    `strata eval RUN` does (at most 128 rows; strata.train.calibrate)::

        q = compile("gptq.arch", weights="runs/gptq")   # passes { quantize(int4_weight, method=gptq) }

    quantize=False keeps float
    weights (training with QAT prepares the model itself); quantize="torch_compile"
    picks the kernels that are fastest once the model is torch.compile'd.  `device="meta"`
    builds the structure without allocating (for 70B specs); on the CPU a model
    whose parameters do not fit in the memory available is refused before
    anything is allocated (`strata.resources.TooLargeError`).
    `model.strata_report` says what each pass did and which kernels run.
    """
    from strata.backends.torch.compile import compile_graph  # lazy: startup
    from strata.compiler import as_graph  # lazy: startup

    trained = None
    # a run / compress output folder as the source or as `weights` (an IR graph's too: its
    # weights, tokenizer and trained context are the folder's all the same)
    spec_or_path, weights, model, w = source_of(spec_or_path, weights, model)
    g0 = _with_passes(as_graph(spec_or_path, model=model, need_teacher=False), passes)
    if w is not None:  # as strata compress calibrates; by default on the data of the run they came from
        from strata.backends.torch.workflows.calibration import trained_context  # lazy: startup
        from strata.train.calibrate import calibrate, calibration_input  # lazy: torch
        from strata.train.objectives import objective_from_json  # lazy: torch

        run = _source_run(w)
        trained = trained_context(run)
        if calibration is not None:
            calibration = calibration_input(calibration, w.tokenizer)
        elif run is not None and w.tokenizer is not None:
            calibration, _ = calibrate(g0, data=run["data"], tokenizer=w.tokenizer, trained=trained,
                                       whose=str(w.folder), hint="calibration=",
                                       objective=objective_from_json(run["objective"]), run=run.get("path"))
    return compile_graph(g0, origin=_origin(spec_or_path), weights=weights, device=device,
                         dtype=dtype, calibration=calibration, quantize=quantize, cast=cast,
                         trained=trained)


def compress(source: Any, out: str | Path, *, weights=None, passes=(), model: str | None = None,
             calibration=None, tokenizer=None, overwrite: bool = False, evaluate: bool | str = False,
             max_batches: int | None = None, finetune: int | None = None, data=None,
             finetune_lr: float | None = None, adapters: str = "merge", cli: bool = False):
    """`strata compress`: a model's weights through its passes (and `passes`),
    written to OUT as a smaller spec, its weights and a report, whole or not at
    all.  source: a spec file with `weights` (a .safetensors file or a run folder),
    or a run folder / compress output folder alone.  The run's tokenizer and
    objective go along, so `strata eval OUT` and `strata generate OUT` work.
    evaluate=True (or a data file) measures the original and the compressed
    model as `strata eval` does (on the run's validation split, or on all of
    that file; at most `max_batches`) into the report's "eval", with both
    files' bytes and their forward latency side by side.  finetune=STEPS
    distills the original into the compressed model first (strata.train.recover;
    `data`: its text or token ids, default the run's data), masks and shrunk
    dimensions held; the report's "finetune" has the quality before and after
    (finetune_lr: AdamW's peak learning rate, default strata.train.recover.LR).
    adapters: "merge" LoRA adapters into the weights, or "keep" them apart.
    cli: hints name `strata compress`'s flags (the command line's call), not
    this function's keywords.

    After `strata train specs/tiny_shakespeare.arch`::

        r = compress("runs/tiny_shakespeare", "out/int8", passes=['quantize(int8_dynamic)'])
    """
    from strata.backends.torch.workflows.compress import compress as run  # lazy: startup
    from strata.train.folder import not_a_run  # lazy: torch

    not_a_run(out, "compress")
    spec, file, model, w, source_run = _compress_source(source, weights, model)
    tok = tokenizer or (w.tokenizer if w is not None else None)
    # text is tokenized here, with the run's tokenizer (the train layer's): the
    # compress workflow below the train layer takes token ids
    from strata.train.calibrate import calibration_input  # lazy: torch

    given, calibration = calibration, calibration_input(calibration, tok)
    calibrated_on = None
    if calibration is None and source_run is not None and tok is not None:
        calibration, calibrated_on = _run_calibration(spec, model, passes, source_run, tok, w)
    # the run's data, read once: the original --eval measures calibrates on it too
    data_ids = calibration if tokenizer is None and _reads_the_run(given, source_run) else None
    tune = None
    if finetune is not None:
        from strata.train.recover import finetuner  # lazy: torch

        tune = finetuner(finetune, data=data, tokenizer=tok, source_run=source_run,
                         **({"lr": finetune_lr} if finetune_lr is not None else {}))
    elif data is not None or finetune_lr is not None:
        raise UsageError(f"{'--data' if data is not None else '--finetune-lr'} goes with --finetune STEPS")
    if max_batches is not None and not evaluate:
        raise UsageError("--max-batches bounds what --eval measures: it goes with --eval")
    original = None
    if evaluate:  # the original measured first: a mistake in the data stops before OUT is written
        from strata.compiler import build_file  # lazy: startup
        from strata.passes.text import parse_pass_texts  # lazy: startup

        parse_pass_texts(list(passes), build_file(spec, model=model, need_teacher=False))  # a pass's mistake before a long eval
        original = _evaluate_original(spec, file, model, w, evaluate, max_batches, data_ids)
    result = run(spec, file, out, passes=list(passes), model=model, calibration=calibration,
                 tokenizer=tok, overwrite=overwrite, source_run=source_run, tune=tune, adapters=adapters,
                 calibrated_on=calibrated_on, cli=cli)
    if evaluate:
        _evaluate_compressed(result, original, file, evaluate, max_batches)
    return result


def _run_calibration(spec, model, passes, source_run: dict, tokenizer, w) -> tuple:
    """(token ids, "calibrated ... on RUN's data (NAME)") when the spec's passes or
    `passes` read activations and no calibration was given: the data the run
    trained on, as `--calibration RUN` reads it and as eval and generate
    calibrate by default; (None, None) when no pass reads activations."""
    from strata.compiler import build_file  # lazy: startup
    from strata.passes import calibrated_passes  # lazy: startup
    from strata.passes.text import parse_pass_texts  # lazy: startup
    from strata.train.calibrate import run_calibration_ids  # lazy: torch
    from strata.train.objectives import objective_from_json  # lazy: torch

    g = build_file(spec, model=model, need_teacher=False)
    g.graph.passes = list(g.graph.passes) + parse_pass_texts(list(passes), g)
    needed = calibrated_passes(g)
    if not needed:
        return None, None
    labels = ", ".join(p.label() for p in needed)
    ids, what = run_calibration_ids(labels, source_run.get("data"), tokenizer, str(w.folder), "--calibration ",
                                    objective_from_json(source_run["objective"]), source_run.get("path"))
    return ids, f"calibrated {labels} on {what}"


def _reads_the_run(given, source_run: dict | None) -> bool:
    """Whether compress calibrates on the data of the run its weights came from
    (no calibration given, or --calibration naming that run): what its original
    calibrates on, so the ids read for one serve both."""
    if source_run is None or given is None:
        return source_run is not None
    return isinstance(given, (str, Path)) and Path(given).is_dir() and source_run.get("path") is not None and \
        Path(given).resolve() == Path(source_run["path"]).resolve()


def _compress_source(source, weights, model):
    """(spec file, weights file, model, what the weights were resolved from, the
    run they came from: its objective, settings and data, or None)."""
    if isinstance(source, (str, Path)) and "\n" not in str(source) and not os.path.lexists(source):
        raise UsageError(f"{source}: no such run folder or spec file")
    spec, file, model, w = source_of(source, weights, model)
    if file is None:
        raise UsageError(f"{source}: a spec needs its weights: --weights RUN_DIR, a compress output "
                         "folder or a .safetensors file")
    if spec is None or not is_spec_path(spec):
        where = w.folder if w is not None and w.folder is not None else source
        raise UsageError(f"{where}: compress needs the spec as a file (this run's was given as text); "
                         "give the spec file and --weights")
    return spec, file, model, w, _source_run(w)


def _source_run(w) -> dict | None:
    """The run weights `w` were trained by: its objective, settings and data (a
    compress output's report keeps its source run), or None."""
    from strata.train.run import Run, is_run  # lazy: torch
    from strata.train.run_folder import run_data  # lazy: torch
    from strata.train.sources import compress_report  # lazy: torch

    if w is None or w.folder is None:
        return None
    if is_run(w.folder):
        info = Run.open(w.folder).info
        data = info["data"]
        try:  # its path as it is now (a run moved with its data): what a compress output's report keeps
            now = run_data(data, w.folder, "", "")
        except UsageError:
            now = None
        if now is not None:
            data = {**data, "path": str(Path(now).resolve())}
        return {"path": str(w.folder.resolve()), **{k: info[k] for k in ("objective", "settings")}, "data": data}
    return compress_report(w.folder).get("source_run")  # a compress output compressed again


def _evaluate_original(spec, file, model, w, evaluate, max_batches, data_ids=None):
    """(the original as a Run, its figures as `strata eval` measures them).
    data_ids: its run's data as calibration ids, read already (Run.data_ids)."""
    from strata.train.run import is_run, open_source  # lazy: torch

    data = evaluate if isinstance(evaluate, (str, Path)) else None
    # the weights that were compressed: a run's final ones as the run (its spec and settings),
    # a checkpoint file of the run as itself (the run's tokenizer and data come along), a
    # compress output from its folder (its run's tokenizer and data)
    final = w.folder is not None and is_run(w.folder) and \
        Path(file).resolve() == Path(open_source(w.folder).weights()).resolve()
    original = open_source(w.folder) if final else \
        open_source(spec, weights=w.folder if w.folder is not None and not is_run(w.folder) else file,
                    model=model)
    original.data_ids = data_ids
    return original, original.evaluate(data, max_batches=max_batches)


def _evaluate_compressed(result, original, file, evaluate, max_batches) -> None:
    """The report's "eval": both models as `strata eval` measures them (the
    original's from `_evaluate_original`), their files' bytes and forward
    latency; report.json written again."""
    from strata.backends.torch.workflows.compress import forward_latency  # lazy: startup
    from strata.train.run import open_source  # lazy: torch

    data = evaluate if isinstance(evaluate, (str, Path)) else None
    original, figures = original
    small = open_source(result.out)
    compressed = small.load_model()
    result.report["eval"] = {
        "original": figures,
        "compressed": small.evaluate(data, max_batches=max_batches),
        "bytes_on_disk": {"original": Path(file).stat().st_size,
                          "compressed": (result.out / "weights.safetensors").stat().st_size},
        "latency": forward_latency(original.compiled(), compressed, compressed.strata_graph)}
    write_atomic(result.out / "report.json", json.dumps(result.report, indent=2) + "\n")


def export(source: Any, out: str | Path, *, to: str = "hf", weights=None, model: str | None = None,
           int8: bool = False, overwrite: bool = False) -> Path:
    """`strata export`: a run folder, a compress output folder, or a spec with
    `weights`, as a Hugging Face folder `out` (config.json, model.safetensors,
    generation_config.json, tokenizer.json) that transformers loads alone; with
    to="onnx", ONNX files for ONNX Runtime (int8=True: its dynamic quantization).

    After `strata train SPEC --out runs/tiny`::

        strata.export("runs/tiny", "out/hf")    # PosixPath('out/hf')

    A spec of a family import-hf knows becomes that family's folder; any other
    spec a repository with custom code (`trust_remote_code=True`).  What the
    target cannot take is refused (`strata.train.export_code.ExportError`, one
    line naming the component and the reason) and nothing is written.  A file
    the export would write that is already in `out` is replaced only with
    `overwrite=True`, and `out` is never the folder of the export's input."""
    from strata.train.export import export as run_export  # lazy: torch

    return run_export(source, to=to, out=out, weights=weights, model=model, int8=int8, overwrite=overwrite)[0]


def load_weights(model, path: str | Path, *, strict: bool = True, cast: bool = False):
    """Load a safetensors checkpoint into `model`; refuses pickles, misfits and
    (unless `cast=True`) tensors of another dtype than the model's (WeightsError)."""
    from strata.backends.torch.weights_file import load_weights as load  # lazy: torch

    return load(model, path, strict=strict, cast=cast)


def save_weights(model, path: str | Path) -> None:
    """Save `model`'s weights as safetensors (tied weights once)."""
    from strata.backends.torch.weights_file import save_weights as save  # lazy: torch

    save(model, path)
