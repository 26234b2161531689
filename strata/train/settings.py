"""A run's settings: the spec's `train { }` section, then `--set key=value`
(read with the spec's own expression syntax, mistakes located in the argument),
then flags / keyword arguments.

    strata train specs/tiny_shakespeare.arch --set 'optimizer=adamw(lr=3e-4)' --set batch=2*8

    --set:1:7: error: train setting 'batch': Input should be greater than 0
        1 | batch=-4
          |       ^~
"""

from __future__ import annotations

from pathlib import Path

from lark.exceptions import UnexpectedInput

from strata.compiler.evaluate import Env
from strata.compiler.paths import located
from strata.compiler.sections import train_value, validate_train
from strata.dsl import ast as A
from strata.dsl.registry import TRAIN_CALLS, TrainConfig
from strata.errors import Collector, Diagnostic, Span, SpecError, UsageError, did_you_mean

__all__ = ["resolve_settings", "spec_file"]

SET = "--set"
# Options of the optimizer and schedule calls, which people reach for as settings.
_CALL_OPTIONS = {"lr": "optimizer", "learning_rate": "optimizer", "betas": "optimizer",
                 "weight_decay": "optimizer", "momentum": "optimizer", "eps": "optimizer",
                 "warmup": "schedule", "min_lr": "schedule"}


def spec_file(g) -> Path | None:
    """The file the spec was built from (None for spec text)."""
    f = g.graph.file
    return Path(f) if f and not f.startswith("<") and Path(f).is_file() else None


def _parse_set(text: str):
    from strata.dsl.parser import _syntax_error  # lazy: startup
    from strata.dsl.yaml_nodes import Bad, parse_snippet  # lazy: startup

    if "=" not in text:
        raise SpecError([Diagnostic("expected key=value", Span(SET, 1, 1, 1, len(text) + 1),
                                    "e.g. --set batch=16 or --set 'optimizer=adamw(lr=3e-4)'")],
                        {SET: text})
    try:
        node = parse_snippet(text, "stmt", SET)
    except UnexpectedInput as e:
        raise SpecError([_syntax_error(e, SET, text)], {SET: text}) from None
    except Bad as e:
        raise SpecError([e.diagnostic], {SET: text}) from None
    if not isinstance(node, A.Assign):
        raise SpecError([Diagnostic("expected key=value", Span(SET, 1, 1, 1, len(text) + 1))],
                        {SET: text})
    if node.name in _CALL_OPTIONS and node.name not in TrainConfig.model_fields:
        call = _CALL_OPTIONS[node.name]
        example = "adamw(lr=3e-4)" if call == "optimizer" else "cosine(warmup=100, min_lr=1e-4)"
        raise SpecError([Diagnostic(f"'{node.name}' is an option of {call}, not a train setting",
                                    node.span, f"write it inside the call: --set '{call}={example}'")],
                        {SET: text})
    return node


def _python_value(name: str, value, env: Env):
    """A keyword argument's value: optimizer / schedule may be spelled as in the
    spec ("adamw(lr=1e-3)") or as {"type": "adamw", "lr": 1e-3}."""
    if name in ("optimizer", "schedule") and isinstance(value, str):
        node = _parse_set(f"{name}={value}")
        errors = Collector()
        ok, v = train_value(node, env, errors)
        if not ok:
            raise UsageError(f"{name}={value!r}: {errors.items[0].message}")
        return v
    if name in ("optimizer", "schedule") and isinstance(value, dict):
        kind = value.get("type")
        if kind not in TRAIN_CALLS:
            raise UsageError(f"{name}: 'type' should be one of {', '.join(TRAIN_CALLS)}")
        try:
            opts = TRAIN_CALLS[kind].model_validate({k: v for k, v in value.items() if k != "type"})
        except ValueError as e:
            raise UsageError(f"{name}: {e.errors()[0]['msg'] if hasattr(e, 'errors') else e}") from None
        return {"type": kind, **opts.model_dump()}
    return value


def resolve_settings(g, sets: list[str] | tuple = (), overrides: dict | None = None,
                     run: dict | None = None) -> dict:
    """The merged, validated settings (a `TrainConfig` dump).  A `data` path from
    the spec is made usable from the current folder (strata.compiler.paths); one
    from --set or a keyword is relative to the current folder already.  run: the
    settings of the run a --resume continues (run.json's), which stand where the
    spec's train section writes nothing — --set and keywords of an earlier start
    are the run's; its data is found apart (strata.train.start_record.resumed_data)."""
    values = dict(g.graph.get("train") or TrainConfig().model_dump())
    written = set(g.graph.get("train_keys") or ())
    values.update({k: v for k, v in (run or {}).items()
                   if k in TrainConfig.model_fields and k not in written and k != "data"})
    if values.get("data"):
        values["data"] = str(located(values["data"], g))
    env = Env(values=dict(g.graph.vars))
    spans: dict = {}
    sources: dict = {}
    for text in sets:
        node = _parse_set(text)
        errors = Collector()
        ok, v = train_value(node, env, errors)
        errors.raise_if_any({SET: text})
        values[node.name], spans[node.name] = v, node.value.span or node.span
        sources[SET] = text
    for name, value in (overrides or {}).items():
        if name not in TrainConfig.model_fields:
            raise UsageError(f"unknown train setting '{name}'"
                             + (f"; {h}" if (h := did_you_mean(name, TrainConfig.model_fields)) else ""))
        if value is None and name != "data":
            continue
        values[name] = _python_value(name, value, env)
        spans.pop(name, None)
    errors = Collector()
    cfg = validate_train(values, spans, errors)
    if errors:
        placed = [d for d in errors.items if d.span is not None]
        if placed:
            raise SpecError(placed, sources)
        raise UsageError(errors.items[0].message)
    return cfg
