"""Check a model's `passes { }` and `train { }` sections against the registry
and record them on the graph (g.graph.passes, g.graph.train); every
mistake is located."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

import strata.plugins as plugins
import strata.compiler.ir as ir
from strata.compiler.evaluate import Env, EvalError, evaluate
from strata.compiler.options import bind_options, coerced
from strata.compiler.paths import folder_of, located, path_hint, resolve_option_paths, resolve_path
from strata.compiler.select import select
from strata.dsl import ast as A
from strata.dsl.registry import PASSES, TRAIN_CALLS, TrainConfig
from strata.errors import Collector, did_you_mean

__all__ = ["check_passes", "check_train", "train_value", "validate_train"]


def _teacher_exists(teacher: str, use: A.Use, g, models, errors: Collector, need_teacher: bool,
                    within: Path | None = None) -> bool:
    """distill(teacher=...) names a spec file (resolved against the file the pass
    is written in) or a model of this file; it is built when the pass runs, so
    check now that it is there.  need_teacher=False: a teacher file that is gone
    is no mistake — the model is built to be used, not trained (a distilled
    student's run folder copied alone: the teacher is its history).  `within`
    (strata serve's folder): a teacher spec outside it is an error, neither read
    nor looked for, as an import there is."""
    span = next((k.value.span for k in use.kwargs if k.name == "teacher"),
                use.args[0].span if use.args else use.span)
    if teacher.endswith((".arch", ".yaml", ".yml")):
        if within is not None and within not in Path(os.path.realpath(located(teacher, g))).parents:
            errors.error(f"distill: teacher spec '{teacher}' is outside the served folder {within}", span,
                         "the workbench reads only files under the folder it serves")
            return False
        try:
            found, why = located(teacher, g).is_file(), "not found"
        except OSError as e:  # a name too long for the file system, say (is_file raises, not False)
            found, why = False, f"cannot be read ({e.strerror})"
        if not found and need_teacher:
            here = folder_of(use.span.file if use.span else None)
            errors.error(f"distill: teacher spec '{Path(teacher).name}' {why} at {located(teacher, g)}",
                         span, f"the path is relative to {here}/, the folder of the file it is written in")
            return False
        return True
    if teacher == g.graph.name:
        errors.error("distill: a model cannot be its own teacher", span,
                     "name another model of this file: the file's passes are then its student's, "
                     "and it builds without them; or a spec file")
        return False
    if teacher not in models:
        errors.error(f"distill: no model '{teacher}' to learn from", span,
                     did_you_mean(teacher, models) or "name a model of this file or a spec file")
        return False
    return True


def _made_by_earlier(g, on: str) -> bool:
    """Whether selector `on` names a module the spec's earlier passes make: they
    rewrite the graph (graph only, torch-free; strata.passes hands the rewrite
    down as plugins.GRAPH_PASSES) and the selector is tried on the result.  They
    run as a check: distill builds no teacher (this runs on every keystroke in
    the editor), and a pass that chooses from the weights ends the run there."""
    rewrite = plugins.GRAPH_PASSES[0] if plugins.GRAPH_PASSES else None
    if not g.graph.passes or rewrite is None:
        return False
    try:
        h = rewrite(ir.to_networkx(g))  # a copy: the passes leave `g` as it was
    except Exception:  # noqa: BLE001 - an earlier pass that cannot apply says so itself when it runs
        return False
    return bool(select(h, on))


def check_passes(passes: A.Passes | None, g, errors: Collector, models, need_teacher: bool = True,
                 within: Path | None = None) -> None:
    if passes is None:
        return
    env = Env(values=dict(g.graph.vars))
    for use in passes.items:
        spec = PASSES.get(use.name)
        if spec is None:
            errors.error(f"unknown pass '{use.name}'", use.span,
                         did_you_mean(use.name, PASSES) or f"passes: {', '.join(PASSES)}")
            continue
        try:
            opts = bind_options(spec, use.args, use.kwargs, env, use.span, use.name)
        except EvalError as e:
            errors.error(e.message, e.span or use.span, e.hint)
            continue
        opts = resolve_option_paths(opts, use.span.file if use.span else None, g.graph.file)
        if use.name == "distill" and not _teacher_exists(opts.teacher, use, g, models, errors,
                                                              need_teacher, within):
            continue
        on = getattr(opts, "on", None)
        # a selector may name what an earlier pass makes (fuse_qkv's attn.qkv, low_rank's .a)
        if on is not None and not select(g, on) and not _made_by_earlier(g, on):
            span = next((k.value.span for k in use.kwargs if k.name == "on"), use.span)
            errors.error(f"pass '{use.name}': selector \"{on}\" matches no module", span,
                         "selectors are module path globs (decoder.h.*.mlp) or component "
                         "kinds (attention, mlp)")
            continue
        g.graph.passes.append({"name": use.name, "options": opts.model_dump(), "span": use.span})


def train_value(a: A.Assign, env: Env, errors: Collector):
    """(True, value) of one `train { }` setting (an optimizer or schedule call
    becomes {"type": ..., options}), or (False, None) after reporting a mistake to
    `errors`.  `strata train --set key=value` goes through here too."""
    try:
        v = evaluate(a.value, env, words=True, calls=frozenset(TRAIN_CALLS))
        v = v.text if hasattr(v, "text") else v
    except EvalError as e:
        if a.name == "data":
            e = path_hint(e, a.value)
        errors.error(e.message, e.span or a.span, e.hint)
        return False, None
    if a.name not in TrainConfig.model_fields:
        errors.error(f"unknown train setting '{a.name}'", a.span,
                     did_you_mean(a.name, TrainConfig.model_fields))
        return False, None
    if a.name in ("optimizer", "schedule"):
        table = TRAIN_CALLS
        if not hasattr(v, "func") or v.func not in table:
            kinds = ("adamw", "sgd") if a.name == "optimizer" else ("cosine", "constant", "linear")
            errors.error(f"{a.name} should be one of {', '.join(k + '(...)' for k in kinds)}",
                         a.value.span or a.span)
            return False, None
        for k, x in v.kwargs:  # "1e-3" or true would pass as numbers (lax mode)
            if problem := coerced(table[v.func], k, x):
                errors.error(f"{v.func}: {k} {problem}", a.value.span or a.span)
                return False, None
        try:
            opts = table[v.func].model_validate(dict(v.kwargs))
        except ValidationError as e:
            first = e.errors()[0]
            errors.error(f"{v.func}: {'.'.join(map(str, first['loc']))} {first['msg']}",
                         a.value.span or a.span)
            return False, None
        v = {"type": v.func, **opts.model_dump()}
    return True, v


def validate_train(values: dict, spans: dict, errors: Collector, where=None) -> dict | None:
    """All settings together through `TrainConfig`; each mistake is reported at
    the span its value came from (`where` for a missing one)."""
    wrong = {k: p for k, v in values.items() if (p := coerced(TrainConfig, k, v))}  # "8" or true as numbers
    for k, problem in wrong.items():
        errors.error(f"train setting '{k}' {problem}", spans.get(k, where))
    if wrong:
        return None
    try:
        cfg = TrainConfig.model_validate(values)
    except ValidationError as e:
        for err in e.errors():
            loc = err["loc"][0] if err["loc"] else None
            errors.error(f"train setting '{loc}': {err['msg']}", spans.get(loc, where))
        return None
    return cfg.model_dump()


def check_train(train: A.Train | None, g, errors: Collector) -> None:
    if train is None:
        return
    env = Env(values=dict(g.graph.vars))
    values, spans = {}, {}
    for a in train.items:
        ok, v = train_value(a, env, errors)
        if ok:
            if a.name == "data" and isinstance(v, str):  # read from the file that names it
                v = resolve_path(v, a.span.file if a.span else None, g.graph.file)
            values[a.name], spans[a.name] = v, a.span
    cfg = validate_train(values, spans, errors, train.span)
    if cfg is not None:
        g.graph.train = cfg
        g.graph.train_keys = sorted(values)  # what a --resume keeps from the spec over the run's own
