"""The compiler: resolve imports, elaborate into the graph IR, validate the
passes and train sections.  Never imports torch.

    >>> g = build_text('''
    ... model tiny {
    ...   stack decoder(tokens) { embedding(10, 4) as wte; layernorm; lm_head(tie=wte) }
    ... }''')
    >>> g.graph["parameters"]
    48
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from strata.compiler.build import build_graph
from strata.compiler.evaluate import Env, EvalError, evaluate
from strata.compiler.library import resolve_model
from strata.compiler.options import bind_options
from strata.dsl import ast as A
from strata.dsl import load_text, read_source
from strata.dsl.registry import PASSES, TRAIN_CALLS, TrainConfig
from strata.compiler.ir import to_networkx
from strata.errors import Collector, Span, SpecError, did_you_mean

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["build", "build_file", "build_text", "select"]


def select(g: "nx.MultiDiGraph", pattern: str | None) -> list[str]:
    """Component paths matched by a pass selector: a glob over module paths
    (`decoder.h.*.mlp`), or a component kind / category (`attention`, `mlp`)."""
    comps = g.graph["components"]
    if pattern is None:
        return list(comps)
    out = []
    for path, c in comps.items():
        if pattern in (c["kind"], c["category"]) or fnmatch.fnmatchcase(path, pattern) \
                or fnmatch.fnmatchcase(path + ".x", pattern):
            out.append(path)
    if not out:  # a glob may also name ops inside components (decoder.h.*.attn.q)
        out = [n for n in g.nodes if fnmatch.fnmatchcase(n, pattern)]
    return out


def _teacher_exists(teacher: str, use: A.Use, g, models, errors: Collector) -> bool:
    """distill(teacher=...) names a spec file (relative to this one) or a model
    of this file; it is built when the pass runs, so check now that it is there."""
    span = next((k.value.span for k in use.kwargs if k.name == "teacher"),
                use.args[0].span if use.args else use.span)
    if teacher.endswith((".arch", ".yaml", ".yml")):
        here = Path(use.span.file).parent if use.span and use.span.file else Path(".")
        if not (Path(teacher) if Path(teacher).is_absolute() else here / teacher).is_file():
            errors.error(f"distill: teacher spec '{teacher}' not found", span,
                         f"the path is relative to {here}/")
            return False
        return True
    if teacher == g.graph["name"]:
        errors.error("distill: a model cannot be its own teacher", span)
        return False
    if teacher not in models:
        errors.error(f"distill: no model '{teacher}' to learn from", span,
                     did_you_mean(teacher, models) or "name a model of this file or a spec file")
        return False
    return True


def _validate_passes(passes: A.Passes | None, g, errors: Collector, models) -> None:
    if passes is None:
        return
    env = Env(values=dict(g.graph["vars"]))
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
        if use.name == "distill" and not _teacher_exists(opts.teacher, use, g, models, errors):
            continue
        on = getattr(opts, "on", None)
        if on is not None and not select(g, on):
            span = next((k.value.span for k in use.kwargs if k.name == "on"), use.span)
            errors.error(f"pass '{use.name}': selector \"{on}\" matches no module", span,
                         "selectors are module path globs (decoder.h.*.mlp) or component "
                         "kinds (attention, mlp)")
            continue
        g.graph["passes"].append({"name": use.name, "options": opts.model_dump(), "span": use.span})


def _validate_train(train: A.Train | None, g, errors: Collector) -> None:
    if train is None:
        return
    env = Env(values=dict(g.graph["vars"]))
    values, spans = {}, {}
    for a in train.items:
        try:
            v = evaluate(a.value, env, words=True, calls=frozenset(TRAIN_CALLS))
            v = v.text if hasattr(v, "text") else v
        except EvalError as e:
            errors.error(e.message, e.span or a.span, e.hint)
            continue
        if a.name not in TrainConfig.model_fields:
            errors.error(f"unknown train setting '{a.name}'", a.span,
                         did_you_mean(a.name, TrainConfig.model_fields))
            continue
        if a.name in ("optimizer", "schedule"):
            table = TRAIN_CALLS
            if not hasattr(v, "func") or v.func not in table:
                kinds = ("adamw", "sgd") if a.name == "optimizer" else ("cosine", "constant", "linear")
                errors.error(f"{a.name} should be one of {', '.join(k + '(...)' for k in kinds)}",
                             a.value.span or a.span)
                continue
            try:
                opts = table[v.func].model_validate(dict(v.kwargs))
            except ValidationError as e:
                first = e.errors()[0]
                errors.error(f"{v.func}: {'.'.join(map(str, first['loc']))} {first['msg']}",
                             a.value.span or a.span)
                continue
            v = {"type": v.func, **opts.model_dump()}
        values[a.name], spans[a.name] = v, a.span
    try:
        cfg = TrainConfig.model_validate(values)
    except ValidationError as e:
        for err in e.errors():
            loc = err["loc"][0] if err["loc"] else None
            errors.error(f"train setting '{loc}': {err['msg']}", spans.get(loc, train.span))
        return
    g.graph["train"] = cfg.model_dump()


def build(spec: A.SpecFile, *, model: str | None = None, sources: dict[str, str] | None = None,
          networkx: bool = True) -> "nx.MultiDiGraph":
    """Build the IR of one model of a parsed spec (imports resolved from its path).

    networkx=False returns the builder's plain-dict graph (`ir.Staging`, same
    `graph` data and nodes): enough for `strata check`, without importing networkx."""
    sources = dict(sources or {})
    errors = Collector()
    try:
        resolved = resolve_model(spec, sources, model, errors)
        g = build_graph(resolved, errors)
        _validate_passes(resolved.passes, g, errors, resolved.models)
        _validate_train(resolved.train, g, errors)
    except RecursionError:
        errors.error("the spec is nested too deeply to build", Span(spec.path or "<string>", 1, 1),
                     "split deeply nested expressions or blocks")
    errors.raise_if_any(sources)
    return to_networkx(g) if networkx else g


def build_text(text: str, file: str = "<string>", *, model: str | None = None,
               networkx: bool = True) -> "nx.MultiDiGraph":
    try:
        spec = load_text(text, file)
    except SpecError as e:
        e.sources.setdefault(file, text)
        raise
    return build(spec, model=model, sources={file: text}, networkx=networkx)


def build_file(path: str | Path, *, model: str | None = None, networkx: bool = True) -> "nx.MultiDiGraph":
    """Read, parse and build a spec file; raise SpecError with every mistake found."""
    text = read_source(path)
    return build_text(text, str(path), model=model, networkx=networkx)
