"""Passes written as text, in the spec's own syntax, outside a spec: the CLI's
`--pass 'quantize(int8_dynamic, on="mlp")'` and `strata.compile(...,
passes=["fuse_qkv", ...])`.  Each string is parsed as the body of a
`passes { }` section and checked against the graph like one; a mistake is
located in the string itself:

    --pass:1:10: error: 'int9' is not a valid scheme
        1 | quantize(int9)
          |          ^~~~

    >>> pass_text("quantize", {"scheme": "int8_dynamic", "on": "mlp", "group_size": 128, "qat": False})
    'quantize(int8_dynamic, on="mlp")'
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from pydantic import BaseModel

from strata.compiler.options import _literal_words
from strata.compiler.sections import check_passes
from strata.dsl.registry import PASSES
from strata.errors import Collector, Diagnostic, Span, SpecError

__all__ = ["parse_pass_texts", "pass_text"]

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
PREFIX = "passes {\n"


def _up(span):
    """The span one line up (from the `passes {` wrapper onto the string itself)."""
    if span is None:
        return None
    end = max(1, span.end_line - 1) if span.end_line else None
    return dataclasses.replace(span, line=max(1, span.line - 1), end_line=end)


def _in_text(d: Diagnostic, text: str) -> Diagnostic:
    """A parse error of the wrapper, placed in the string (past its end when
    the string stops early: an unclosed parenthesis)."""
    span = _up(d.span)
    if span is not None and span.line > 1:
        end = len(text) + 1
        return dataclasses.replace(d, span=Span(span.file, 1, end, 1, end),
                                   message=d.message.replace("unexpected '}'", "unexpected end"))
    return dataclasses.replace(d, span=span)


def _shift(node: Any) -> None:
    """Move every span of a parsed `passes {` wrapper up one line (onto the string)."""
    if isinstance(node, list):
        for x in node:
            _shift(x)
        return
    if not isinstance(node, BaseModel):
        return
    if getattr(node, "span", None) is not None:
        node.span = _up(node.span)
    for name in type(node).model_fields:
        _shift(getattr(node, name))


def parse_pass_texts(texts: list[str], g, file: str = "--pass") -> list[dict]:
    """Pass entries ({"name", "options", "span", "source"}) for `texts`, checked
    against graph `g` (selectors must match); raises SpecError located in the text."""
    from strata.dsl.parser import parse  # lazy: startup

    entries: list[dict] = []
    for text in texts:
        if "\n" in text or "}" in text or "{" in text:
            raise SpecError([Diagnostic("a pass is one line, e.g. quantize(int8_dynamic, on=\"mlp\")",
                                        Span(file, 1, 1))], {file: text.splitlines()[0] if text else ""})
        try:
            spec = parse(PREFIX + text + "\n}", file)
        except SpecError as e:
            raise SpecError([_in_text(d, text) for d in e.diagnostics], {file: text}) from None
        passes = spec.passes
        _shift(passes)
        errors = Collector()
        saved = g.graph.passes
        g.graph.passes = []
        try:
            check_passes(passes, g, errors, ())
            found = g.graph.passes
        finally:
            g.graph.passes = saved
        errors.raise_if_any({file: text})
        entries += [{**p, "source": (file, text)} for p in found]
    return entries


def _value(v: Any) -> str:
    if v is True or v is False:
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return v if _WORD.match(v) and v not in ("true", "false", "none") else json.dumps(v)
    return repr(v)


def pass_text(name: str, options: dict) -> str:
    """A pass as a spec writes it: its positional option, then the options that
    differ from their defaults (strings quoted, enum words bare)."""
    cls = PASSES[name]  # its options and positional (strata.plugins: no cycle with strata.passes)
    fields = cls.options.model_fields
    args, kwargs = [], []
    for k, f in fields.items():
        v = options.get(k, f.default)
        if k in cls.positional and v is not None:
            args.append(_value(v) if _is_word(cls, k) else _literal(v))
        elif not f.is_required() and v != f.default:
            kwargs.append(f"{k}={_value(v) if _is_word(cls, k) else _literal(v)}")
    inner = ", ".join(args + kwargs)
    return f"{name}({inner})" if inner else name


def _is_word(cls, field: str) -> bool:
    return bool(_literal_words(cls.options, field))


def _literal(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    return _value(v)
