"""The pieces every emitter shares: the file being written (its classes, the
runtime helpers it needs, the names it has taken), the generated `Config`, and
how a value is written — as the spec's expression over `config` where it has
one (`4 * config.d`), else as a literal (`3072`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import strata.backends.torch.pysafe as pysafe
from strata.backends.torch.runtime_source import ORDER
from strata.compiler import symbolic as S

# Module-level names of every generated file.
MODULE_NAMES = frozenset({"math", "torch", "nn", "F", "dataclass", "replace", "Config", "build",
                          *ORDER})


@dataclass
class SourceFile:
    """The definitions of one generated file, added as the emitter needs them."""

    taken: set[str] = field(default_factory=lambda: set(MODULE_NAMES))
    classes: dict[str, str] = field(default_factory=dict)   # source (with {name}) -> class name
    defs: list[str] = field(default_factory=list)
    runtime_used: list[str] = field(default_factory=list)

    def define(self, base: str, source: str) -> str:
        """Emit a class once per distinct source; return its name."""
        if source in self.classes:
            return self.classes[source]
        first = pysafe.class_name(base)
        name, i = first, 1
        while name in self.taken:  # Layer, Layer2, Layer3, ...
            i += 1
            name = pysafe.identifier(f"{first}{i}")
        self.taken.add(name)
        self.classes[source] = name
        self.defs.append(source.replace("{name}", name))
        return name

    def runtime(self, name: str) -> str:
        """Mark runtime helper `name` as needed (its source is copied in)."""
        if name not in ORDER:
            raise KeyError(f"no runtime helper {name!r}")
        if name not in self.runtime_used:
            self.runtime_used.append(name)
        return name


@dataclass
class ConfigField:
    name: str            # the Python name (the spec's, unless Python forbids it)
    spec_name: str
    value: Any
    derived: S.Sym | None = None   # a property computed from other fields


def _is_plain(v) -> bool:
    return isinstance(v, (bool, int, float)) and not (isinstance(v, float) and not math.isfinite(v))


def config_fields(values: dict, var_syms: dict) -> list[ConfigField]:
    """The spec's variables that size the model (numbers and booleans): fields for
    literal ones, properties for those computed from others (`hd = d // heads`)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for k, v in values.items():
        if _is_plain(v):
            names[k] = pysafe.identifier(k, taken)
            taken.add(names[k])
    out = []
    for k, py in names.items():
        sym = var_syms.get(k)
        derived = sym if sym is not None and S.names(sym) and S.names(sym) <= names.keys() \
            and evaluates_to(sym, values, values[k]) else None
        out.append(ConfigField(py, k, values[k], derived))
    return out


def sym_value(sym: S.Sym, values: dict):
    """What `sym` evaluates to in Python with the spec's variable values."""
    kind = sym[0]
    if kind == "num":
        return sym[1]
    if kind == "var":
        return values[sym[1]]
    if kind == "neg":
        return -sym_value(sym[1], values)
    if kind == "not":
        return not sym_value(sym[1], values)
    if kind == "cond":
        return sym_value(sym[2] if sym_value(sym[1], values) else sym[3], values)
    if kind == "call":
        fn = {"min": min, "max": max, "sqrt": math.sqrt, "ceil": math.ceil, "floor": math.floor,
              "round": round, "int": int, "float": float, "abs": abs}[sym[1]]
        return fn(*(sym_value(a, values) for a in sym[2]))
    a, b = sym_value(sym[2], values), sym_value(sym[3], values)
    return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
            "//": lambda: a // b, "%": lambda: a % b, "**": lambda: a ** b, "==": lambda: a == b,
            "!=": lambda: a != b, "<": lambda: a < b, "<=": lambda: a <= b, ">": lambda: a > b,
            ">=": lambda: a >= b, "and": lambda: a and b, "or": lambda: a or b}[sym[1]]()


def evaluates_to(sym: S.Sym, values: dict, want) -> bool:
    """True when Python computes exactly `want` (same type, same value) from `sym`."""
    try:
        got = sym_value(sym, values)
    except (ArithmeticError, ValueError, TypeError, KeyError):
        return False
    return type(got) is type(want) and got == want


@dataclass
class Values:
    """Writes option values: `config.d`-style expressions where the spec had one."""

    fields: dict[str, str]       # spec variable -> Python name of its Config field or property
    values: dict                 # spec variable -> value

    def expr(self, value, sym: S.Sym | None, prefix: str = "config.") -> str:
        if sym is not None and sym[0] != "num" and S.names(sym) <= self.fields.keys() \
                and evaluates_to(sym, self.values, value):
            return S.python(sym, lambda n: prefix + self.fields[n])
        return pysafe.literal(value)

    def call_args(self, positional: list[tuple], keywords: list[tuple], prefix: str = "config.") -> str:
        """`config.d, config.heads, dropout=config.p`: positional (value, sym) pairs,
        then keywords (name, value, sym, default) that differ from their default."""
        parts = [self.expr(v, s, prefix) for v, s in positional]
        for k, v, s, default in keywords:
            written = s is not None and s[0] != "num"  # an expression of the spec's variables
            if written or not (v == default and type(v) is type(default)):
                parts.append(f"{k}={self.expr(v, s, prefix)}")
        return ", ".join(parts)


def shape_text(sym: tuple, shape: tuple) -> str:
    """`(B, T, d)`: each dimension by its symbol where it has one, else its size."""
    dims = [S.text(s) if s is not None else str(n) for s, n in zip(sym, shape)]
    return "(" + ", ".join(dims) + ")"
