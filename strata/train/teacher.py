"""The distillation teacher that a student's `distill(teacher, weights=...)` pass
names, compiled as its own spec compiles it with those weights: the float
weights go in first, then the teacher spec's passes run on them (quantization,
pruning, low rank), and a pass that reads activations (GPTQ, AWQ, SmoothQuant,
int8_static, SparseGPT, Wanda, ...) calibrates on the data the teacher's run
trained on (strata.train.calibrate), as `strata eval` / `strata generate` of
that run do.  So the student trains against, and `strata generate STUDENT
--speculate` verifies with, the model `strata generate TEACHER_RUN` runs.

After `strata train teacher.arch --out runs/teacher` (passes { quantize(int4_weight,
method=gptq) }) and a student whose spec says `distill("teacher.arch", weights="runs/teacher")`::

    net, loss, tokenizer = load_teacher(student_graph, objective, "cpu")
    net.strata_calibrated   # 'calibrated quantize(...) on 128 sequences of runs/teacher's data (input.txt)'
"""

from __future__ import annotations

import os
from pathlib import Path

from strata.backends.torch.workflows.calibration import trained_context
from strata.compiler import as_graph
from strata.compiler.paths import located
from strata.errors import Diagnostic, SpecError, UsageError
from strata.passes import calibrated_passes
from strata.train.calibrate import calibrate
from strata.train.models import compile_model
from strata.train.objectives import Loss, choose_objective, objective_from_json
from strata.train.run_folder import is_run
from strata.train.settings import spec_file
from strata.train.sources import Weights, resolve_weights, source_run

__all__ = ["load_teacher", "resolve_teacher_weights", "teacher_spec"]


def _pass_span(g):
    return next((p.get("span") for p in g.graph.get("passes", []) if p["name"] == "distill"), None)


def load_teacher(g, objective, device: str, weights: str | None = None, spec_graph=None):
    """(teacher nn.Module, its Loss, the tokenizer.json of the run it came from or
    None).  g: the student's IR after passes; `weights` (from the command line)
    wins over the pass's `weights=`; spec_graph (before passes) locates errors.
    The module's `strata_calibrated` says what its passes calibrated on (or None)."""
    source, model_name = teacher_spec(g)
    w = resolve_teacher_weights(g, weights, spec_graph)
    tg = as_graph(source, model=model_name)
    ids, note = _calibration(tg, w)  # rows already cut to the context the weights trained at
    net = compile_model(tg, device=device, weights=w.file, calibration=ids, origin=source)
    net.eval()
    net.requires_grad_(False)
    net.strata_weights, net.strata_calibrated = w.file, note
    t_obj = choose_objective(net.strata_graph, objective.name)
    return net, Loss(t_obj, net), w.tokenizer


def teacher_spec(g) -> tuple[str, str | None]:
    """(the spec file the teacher of the student's `distill` pass (g: its IR) builds
    from, the model of it or None), checked to be there: the student was built
    without it where it is used, not trained (strata.compiler.build's need_teacher)."""
    teacher = g.graph.distill["teacher"]
    here = spec_file(g)
    if teacher.endswith((".arch", ".yaml", ".yml")):
        source, model_name = str(located(teacher, g)), None
    elif here is not None:
        source, model_name = str(here), teacher
    else:
        raise UsageError(f"distill: teacher '{teacher}' is a model of the spec file, but the spec "
                         "was given as text; give it as a file")
    if not Path(source).is_file():
        raise UsageError(f"distill: the teacher's spec {teacher} is gone (not at {source}): training the "
                         "student and --speculate need it; put it back where the pass says")
    return source, model_name


def resolve_teacher_weights(g, weights: str | None = None, spec_graph=None) -> Weights:
    """The weights the teacher of the student's `distill` pass (g: its IR after
    passes) loads: `weights` (from the command line), else the pass's `weights=`;
    a teacher with neither is the spec's mistake, said at the pass."""
    info = g.graph.distill
    if weights is None and info.get("weights"):
        weights = str(located(info["weights"], g))
        if not os.path.lexists(weights):
            raise UsageError(f"distill: the teacher's weights (weights=\"{info['weights']}\" in the pass) "
                             f"are gone: not at {os.path.normpath(weights)}; give --teacher-weights with where they are now")
    if weights is None:
        span = _pass_span(spec_graph if spec_graph is not None else g)
        sources = {}
        if span is not None and Path(span.file).is_file():
            sources[span.file] = Path(span.file).read_text()
        raise SpecError([Diagnostic(
            f"distill: the teacher ({info['teacher']}) has no weights, and an untrained teacher has "
            "nothing to teach", span,
            "train the teacher first, then give distill(..., weights=\"RUN_DIR\") or "
            "--teacher-weights RUN_DIR")], sources)
    return resolve_weights(weights)


def _calibration(tg, w):
    """(token ids (N, T), the line saying what they are) for the teacher's passes
    that read activations: the data of the run its weights came from (a run
    folder, or a compress output of one), read with its tokenizer; (None, None)
    when no pass reads activations."""
    passes = calibrated_passes(tg)
    if not passes:
        return None, None
    run = source_run(w)
    labels = ", ".join(p.label() for p in passes)
    if run is None or w.tokenizer is None:
        raise UsageError(f"distill: the teacher's {labels} calibrates on the data its weights trained on, "
                         f"and {w.file} came from no run that says what that was: give the teacher's run "
                         "folder as its weights (distill(..., weights=\"RUN_DIR\") or --teacher-weights RUN_DIR)")
    folder = w.folder if w.folder is not None and is_run(w.folder) else run.get("path")
    return calibrate(tg, data=run["data"], tokenizer=w.tokenizer, trained=trained_context(run),
                     whose=os.path.normpath(w.folder), objective=objective_from_json(run["objective"]), run=folder,
                     remedy="put it back: the teacher's passes calibrate on it")
