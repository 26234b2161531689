r"""The one place where text from a spec becomes part of generated Python.

Everything a person wrote that reaches generated source — the spec's file name,
model, block and variable names, option values — passes through one of these:

    literal(v)     a Python literal of a plain value (str, int, float, bool, None)
    text(s)        text safe inside a docstring or a `#` comment: one line, ASCII,
                   no quote or backslash left unescaped
    identifier(s)  a name Python accepts for a variable or field (keywords get `_`)
    class_name(s)  a CamelCase class name that is an identifier

Module names (attributes, state-dict keys) are not mapped here: the compiler
refuses those Python cannot use, where the spec writes them
(`strata.compiler.names`).

    >>> print(text('name"; import os\n'))
    name\"; import os\n
    >>> identifier("lambda"), class_name("none")
    ('lambda_', 'None_')
"""

from __future__ import annotations

import keyword
import math

__all__ = ["class_name", "identifier", "literal", "text"]


def literal(v) -> str:
    """Python source for a plain value; anything else is refused (never str())."""
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, int):
        return repr(int(v))
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"{v!r} has no Python literal")
        return repr(float(v))
    if isinstance(v, str):
        r = repr(str(v))  # escapes quotes, backslashes, control characters, surrogates
        return f'"{r[1:-1]}"' if r[0] == "'" and '"' not in v else r
    if isinstance(v, tuple):
        items = [literal(x) for x in v]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    raise TypeError(f"no literal for {type(v).__name__}")


def text(s: object) -> str:
    """`s` as one line of printable ASCII in which `"` and `\\` are escaped: it can
    neither end a docstring nor a comment line, nor hide a line break."""
    escaped = str(s).encode("unicode_escape", errors="backslashreplace").decode("ascii")
    return escaped.replace('"', '\\"')


def identifier(name: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A valid Python identifier for `name`, not a keyword, `self`, a dunder or a
    name Python mangles (`__x` becomes `v__x`), nor in `taken`."""
    out = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in str(name)) or "_"
    if out[0].isdigit() or out.startswith("__"):  # no dunder (`__init__`), no name mangling
        out = "v" + out
    while keyword.iskeyword(out) or out == "self" or out in taken:
        out += "_"
    return out


def class_name(name: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """`decoder_layer` -> `DecoderLayer`, `llama2_7b` -> `Llama2_7b` (an underscore
    stays where digits would run together), made a valid, unused identifier."""
    camel = ""
    for p in (p for p in str(name).replace("-", "_").split("_") if p):
        if camel and (p[0].isdigit() or camel[-1].isdigit()):
            camel += "_"
        camel += p[:1].upper() + p[1:]
    return identifier(camel or "Model", taken)
