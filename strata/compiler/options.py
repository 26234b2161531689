"""Bind a call's arguments to a registry schema and validate them with pydantic,
turning every problem into a located error.

    >>> from strata.dsl.parser import parse
    >>> from strata.dsl.registry import COMPONENTS
    >>> from strata.compiler.evaluate import Env
    >>> use = parse("model m { stack s(x) { mlp(4*d, act=gelu) } }").models[0].stacks[0].body[0]
    >>> bind_options(COMPONENTS["mlp"], use.args, use.kwargs, Env(values={"d": 8}), use.span, "mlp").hidden
    32
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from strata.compiler.evaluate import (
    CallValue,
    Env,
    EvalError,
    Word,
    describe_value,
    evaluate,
)
from strata.compiler.paths import path_hint
from strata.dsl import ast as A
from strata.errors import did_you_mean

# No tensor dimension or count in a model that fits on any machine is larger.
MAX_DIM = 2 ** 31


def _literal_words(schema: type[BaseModel], field: str) -> tuple[str, ...]:
    """The enum words a field accepts (Literal[...] anywhere in its annotation)."""
    ann = schema.model_fields[field].annotation
    out: list[str] = []

    def visit(t):
        if typing.get_origin(t) is typing.Literal:
            out.extend(a for a in typing.get_args(t) if isinstance(a, str))
        for a in typing.get_args(t):
            visit(a)

    visit(ann)
    return tuple(out)


def _accepts_str(schema: type[BaseModel], field: str) -> bool:
    return _accepts(schema, field, str)


def _accepts(schema: type[BaseModel], field: str, kind: type) -> bool:
    """Whether the field's annotation names `kind` (or, for str, a word of a Literal)."""
    ann = schema.model_fields[field].annotation

    def visit(t) -> bool:
        if t is kind or t is typing.Any:
            return True
        if typing.get_origin(t) is typing.Literal:
            return any(type(a) is kind for a in typing.get_args(t))
        return any(visit(a) for a in typing.get_args(t))

    return visit(ann)


def coerced(schema: type[BaseModel], field: str, v: Any) -> str | None:
    """What is wrong with `v` for `field` when pydantic's lax mode would turn it
    into a number (the string "2" into 2, true into 1), else None: a string or a
    boolean is refused where the field takes neither (an integral float such as
    d / 64 = 12.0 still passes as the integer it is).

        >>> from strata.dsl.registry import COMPONENTS
        >>> coerced(COMPONENTS["attention"].options, "heads", "2")
        'should be a number, got the string "2"'
    """
    for kind in (str, bool):
        if type(v) is kind and field in schema.model_fields and not _accepts(schema, field, kind):
            return f"should be a number, got {describe_value(v)}"
    return None


def _to_plain(v: Any, span, field: str, words: tuple[str, ...], refs: bool, accepts_str: bool):
    if isinstance(v, Word):
        if v.text in words or refs:
            return v.text
        if accepts_str and not words:
            return v.text
        hint = did_you_mean(v.text, words) if words else None
        if words and not hint:
            hint = f"'{field}' is one of: {', '.join(words)}"
        raise EvalError(f"undefined variable '{v.text}'" if not words else
                        f"'{v.text}' is not a valid {field}", v.span or span, hint)
    if isinstance(v, CallValue):
        return v.as_dict()
    if v is None and "none" in words:  # the constant `none` is also the word: position(none)
        return "none"
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int) and abs(v) >= MAX_DIM:
        raise EvalError(f"{field} = {v:,} is too large for any model (at most {MAX_DIM - 1:,})", span,
                        "check the expression; no machine could hold a model this size")
    return v


def bind_options(spec, args: list, kwargs: list, env: Env, span, label: str,
                 extra: dict[str, Any] | None = None) -> BaseModel:
    """Evaluate positional and keyword arguments and validate them against
    `spec.options`.  Raises EvalError (located) on the first problem."""
    schema: type[BaseModel] = spec.options
    fields = list(schema.model_fields)
    values: dict[str, Any] = {}
    spans: dict[str, Any] = {}
    if len(args) > len(spec.positional):
        extra_arg = args[len(spec.positional)]
        takes = (f"takes {len(spec.positional)} positional argument"
                 f"{'s' if len(spec.positional) != 1 else ''}"
                 + (f" ({', '.join(spec.positional)})" if spec.positional else ""))
        raise EvalError(f"'{label}' {takes}, got {len(args)}", extra_arg.span,
                        "name the other options: name=value")
    pairs = list(zip(spec.positional, args)) + [(k.name, k.value) for k in kwargs]
    refs = getattr(spec, "refs", frozenset())
    for name, expr in pairs:
        espan = getattr(expr, "span", None) or span
        if name not in schema.model_fields:
            raise EvalError(f"'{label}' has no option '{name}'", _kw_span(kwargs, name, espan),
                            did_you_mean(name, fields) or f"options: {', '.join(fields)}")
        if name in values:
            raise EvalError(f"option '{name}' of '{label}' is given twice", espan,
                            f"'{name}' is also the positional argument")
        words = _literal_words(schema, name)
        is_ref = name in refs
        if is_ref and isinstance(expr, A.Name):
            v: Any = Word(expr.id)
        else:
            try:
                v = evaluate(expr, env, words=bool(words) or is_ref or _accepts_str(schema, name))
            except EvalError as e:
                raise (path_hint(e, expr) if name in getattr(schema, "paths", {}) else e) from None
        values[name] = _to_plain(v, espan, name, words, is_ref, _accepts_str(schema, name))
        if problem := coerced(schema, name, values[name]):
            raise EvalError(f"option '{name}' of '{label}' {problem}", espan)
        spans[name] = espan
    if extra:
        values.update(extra)
    try:
        # the options the person wrote: a validator may refuse one that means nothing
        # beside the others (quantize's group_size for an int8 scheme), default or not
        return schema.model_validate(values, context={"given": frozenset(values)})
    except ValidationError as err:
        e = err.errors()[0]
        loc = e["loc"][0] if e["loc"] else None
        where = spans.get(loc, span)
        if e["type"] == "missing":
            need = [f for f in fields if schema.model_fields[f].is_required() and f not in values]
            raise EvalError(f"'{label}' needs {', '.join(repr(n) for n in need)}", span,
                            f"write {label}({', '.join(need)}=...)"
                            if need and need[0] not in spec.positional else
                            f"positional arguments: {', '.join(spec.positional)}") from None
        got = values.get(loc)
        msg = e["msg"].replace("Input should be", "should be").replace("Value error, ", "")
        hint = (e.get("ctx") or {}).get("hint")  # a validator's PydanticCustomError(..., {"hint": ...})
        raise EvalError(f"option '{loc}' of '{label}' {msg}, got {describe_value(got)}"
                        if loc else f"'{label}': {msg}", where, hint) from None


def _kw_span(kwargs: list, name: str, default):
    for k in kwargs:
        if k.name == name:
            return k.span or default
    return default
