"""Symbolic values: an option or a dimension in terms of the model's variables.

`mlp(4 * d)` inside `block layer` has hidden = 3072 *and* hidden = 4 * d; the
torch backend writes the second (`4 * config.d`) so a generated module can be
built at other sizes, and shape comments read `(B, T, d)`.  A symbolic form is
a small tuple tree, built during elaboration by substituting block parameters
and local names until only model variables remain:

    ("var", "d")  ("num", 4)  ("bin", "*", a, b)  ("neg", a)  ("not", a)
    ("call", "sqrt", (a,))  ("cond", test, body, orelse)
    ("axis", "B")  (a tensor axis, in shapes only: B, T, S)

A value that depends on a repeat index, a word (`gelu`) or a string has no
symbolic form (None): the backend writes the number itself.

    >>> from strata.dsl.parser import parse
    >>> from strata.compiler.evaluate import Env
    >>> m = parse("model m { d = 768 }").models[0]
    >>> env = Env.of_assigns(m.vars); env.is_model = True
    >>> layer = env.child({"w": 3072}, syms={"w": ("bin", "*", ("num", 4), ("var", "d"))})
    >>> e = parse("model m { x = w // 2 }").models[0].vars[0].value
    >>> text(symbolic(e, layer))
    '4 * d // 2'
"""

from __future__ import annotations

from typing import Any, Callable

from strata.dsl import ast as A

__all__ = ["MATH", "Sym", "names", "python", "symbolic", "text"]

Sym = tuple

# The evaluator's functions, as Python spells them (math imported in generated files).
MATH = {"min": "min", "max": "max", "sqrt": "math.sqrt", "ceil": "math.ceil",
        "floor": "math.floor", "round": "round", "int": "int", "float": "float", "abs": "abs"}

# Binding strength, Python's (the spec's operators are Python's).
_LEVEL = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
          "+": 6, "-": 6, "*": 7, "/": 7, "//": 7, "%": 7, "**": 9}
_COND, _NOT, _NEG, _ATOM = 0, 3, 8, 10


def _lookup(name: str, env) -> Sym | None:
    while env is not None:
        if name in env.syms:
            return env.syms[name]
        if name in env.values or name in env.lazy:
            return ("var", name) if env.is_model else None
        env = env.parent
    return None


def symbolic(e: Any, env) -> Sym | None:
    """The symbolic form of expression `e` in `env`, or None when it has none."""
    if isinstance(e, A.Num):
        return ("num", e.value)
    if isinstance(e, A.Const) and isinstance(e.value, bool):
        return ("num", e.value)
    if isinstance(e, A.Name):
        return _lookup(e.id, env)
    if isinstance(e, A.UnaryOp):
        x = symbolic(e.operand, env)
        if x is None:
            return None
        return x if e.op == "+" else ("neg" if e.op == "-" else "not", x)
    if isinstance(e, A.BinOp):
        a, b = symbolic(e.left, env), symbolic(e.right, env)
        return None if a is None or b is None else ("bin", e.op, a, b)
    if isinstance(e, A.Cond):
        parts = [symbolic(x, env) for x in (e.test, e.body, e.orelse)]
        return None if None in parts else ("cond", *parts)
    if isinstance(e, A.Call) and e.func in MATH and not e.kwargs:
        args = tuple(symbolic(x, env) for x in e.args)
        return None if None in args or not args else ("call", e.func, args)
    return None


def names(sym: Sym | None) -> set[str]:
    """The model variables a symbolic form uses."""
    if sym is None or sym[0] in ("num", "axis"):
        return set()
    if sym[0] == "var":
        return {sym[1]}
    if sym[0] in ("neg", "not"):
        return names(sym[1])
    if sym[0] == "bin":
        return names(sym[2]) | names(sym[3])
    parts = sym[2] if sym[0] == "call" else sym[1:]
    return set().union(*(names(p) for p in parts))


def _level(sym: Sym) -> int:
    kind = sym[0]
    if kind == "bin":
        return _LEVEL[sym[1]]
    if kind == "cond":
        return _COND
    if kind == "not":
        return _NOT
    if kind == "neg":
        return _NEG
    if kind == "num" and isinstance(sym[1], (int, float)) and not isinstance(sym[1], bool) and sym[1] < 0:
        return _NEG
    return _ATOM


def _render(sym: Sym, var: Callable[[str], str], num: Callable[[Any], str], least: int) -> str:
    kind = sym[0]
    if kind == "var":
        out = var(sym[1])
    elif kind == "axis":  # a tensor axis: B, T, S
        out = sym[1]
    elif kind == "num":
        out = num(sym[1])
    elif kind == "neg":
        out = "-" + _render(sym[1], var, num, _NEG)
    elif kind == "not":
        out = "not " + _render(sym[1], var, num, _NOT)
    elif kind == "bin":
        op, level = sym[1], _LEVEL[sym[1]]
        # ** binds right to left; the others left to right
        left, right = (level + 1, level) if op == "**" else (level, level + 1)
        out = f"{_render(sym[2], var, num, left)} {op} {_render(sym[3], var, num, right)}"
    elif kind == "cond":
        out = (f"{_render(sym[2], var, num, _NOT)} if {_render(sym[1], var, num, _NOT)} "
               f"else {_render(sym[3], var, num, _COND)}")
    elif kind == "call":
        args = ", ".join(_render(a, var, num, _COND) for a in sym[2])
        out = f"{MATH[sym[1]] if num is repr else sym[1]}({args})"
    else:
        raise ValueError(f"not a symbolic form: {sym!r}")
    return f"({out})" if _level(sym) < least else out


def python(sym: Sym, var: Callable[[str], str]) -> str:
    """Python source of `sym`, each model variable written by `var` (`config.d`)."""
    return _render(sym, var, repr, _COND)


def text(sym: Sym) -> str:
    """The spec's own spelling of `sym` (`4 * d`), for comments."""
    def num(v):
        return {True: "true", False: "false"}.get(v, repr(v)) if isinstance(v, bool) else repr(v)
    return _render(sym, str, num, _COND)
