"""Which options completion leaves out beside those already written: the ones
the checker refuses there.  The rule is asked of the options model the checker
validates with (as `strata.compiler.options.bind_options` calls it, the options
written named in the context), never copied here: `quantize(int8_dynamic, ...)`
leaves out `group_size` because `strata/passes/quantize_options.py` refuses it
beside an int8 scheme.

    >>> from strata.dsl.registry import PASSES
    >>> sorted(refused(PASSES["quantize"].options, {"scheme": "int8_dynamic"}))
    ['bits', 'group_size', 'strict']
"""

from __future__ import annotations

import re
import typing

from pydantic import ValidationError

__all__ = ["refused", "scalar"]

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def scalar(text: str):
    """A value as written in either surface (`64`, `1e-3`, `true`, `"mlp"`,
    `int8_dynamic`) as the checker reads it; a word stays a string."""
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    if s in ("true", "false"):
        return s == "true"
    if _NUMBER.fullmatch(s):
        return float(s) if any(c in s for c in ".eE") else int(s)
    return s


def refused(opts, written: dict[str, object]) -> set[str]:
    """The options of `opts` (an options model) not in `written` ({option: value})
    that the checker refuses beside them, whatever value they are given: each is
    validated with the written ones at the values its type lists (a Literal's
    words, true and false) other than its default, else at a number within its
    bounds (an option of no default value), else at its default; left out when
    every one is refused at that option (or by the whole, where the written
    options alone pass)."""
    def errors(values: dict) -> list[dict]:
        try:
            opts.model_validate(values, context={"given": frozenset(values)})
        except ValidationError as e:
            return e.errors()
        return []

    alone = errors(written)
    whole_ok = not any(not e["loc"] for e in alone)
    out = set()
    for name, f in opts.model_fields.items():
        if name in written or f.is_required():
            continue
        default = f.get_default(call_default_factory=True)
        tries = [v for v in _words(f.annotation) if v != default or type(v) is not type(default)] or [
            _number(f) if default is None and _numeric(f.annotation) else default]
        if all(any(e["loc"][:1] == (name,) or (not e["loc"] and whole_ok) for e in errors({**written, name: v}))
               for v in tries):
            out.add(name)
    return out


def _words(annotation) -> list:
    """The values a type lists: a Literal's words, a bool's two."""
    out, todo = [], [annotation]
    while todo:
        t = todo.pop(0)
        if t is bool:
            out += [True, False]
        elif typing.get_origin(t) is typing.Literal:
            out += list(typing.get_args(t))
        else:
            todo += list(typing.get_args(t))
    return out


def _numeric(annotation) -> bool:
    return annotation in (int, float) or any(t in (int, float) for t in typing.get_args(annotation))


def _number(f):
    """A number the field's bounds (gt, ge, lt, le) allow: their middle, or 1 past
    the lower one, or 1."""
    lo = next((getattr(m, k) for m in f.metadata for k in ("gt", "ge") if getattr(m, k, None) is not None), None)
    hi = next((getattr(m, k) for m in f.metadata for k in ("lt", "le") if getattr(m, k, None) is not None), None)
    if lo is not None and hi is not None:
        return (lo + hi) / 2
    return lo + 1 if lo is not None else hi - 1 if hi is not None else 1
