"""strata's own expression evaluator (never Python `eval`).

Values are int, float, bool, None, str, tuples of values, `Word` (a bare name
that is not a variable: an enum word such as `gelu`, or a module reference
such as `encoder.embed`), and `CallValue` (`adamw(lr=1e-3)` in a train section).

    >>> from strata.dsl.parser import parse
    >>> m = parse("model m { d = 768\\n heads = 12\\n hd = d // heads }").models[0]
    >>> Env.of_assigns(m.vars).lookup("hd", None)
    64
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from strata.dsl import ast as A
from strata.errors import EvalError, did_you_mean

# Largest magnitude an integer expression may reach: past this nothing about a
# model is meaningful, and Python would happily spend minutes on `10 ** 10 ** 9`.
MAX_INT = 10 ** 18


@dataclass(frozen=True)
class Word:
    """A bare name that is not a variable (enum word or module path)."""

    text: str
    span: Any = field(default=None, compare=False, hash=False)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class CallValue:
    func: str
    args: tuple
    kwargs: tuple  # ((name, value), ...)

    def as_dict(self) -> dict:
        return {"type": self.func, **dict(self.kwargs)}


_MISSING = object()


@dataclass
class Env:
    """Nested scopes of names.  Model variables are evaluated lazily (so their
    order does not matter) and a cycle is reported, not recursed into."""

    values: dict[str, Any] = field(default_factory=dict)
    lazy: dict[str, A.Assign] = field(default_factory=dict)
    parent: Env | None = None
    _active: set = field(default_factory=set)
    # What names of this scope stand for in terms of the model's variables
    # (`strata.compiler.symbolic`): a block parameter -> its argument's form,
    # a repeat index -> None (a different number per layer).
    syms: dict[str, Any] = field(default_factory=dict)
    # True for the model's own scope: its names are the model's variables.
    is_model: bool = False

    @classmethod
    def of_assigns(cls, assigns: list[A.Assign], parent: Env | None = None) -> Env:
        return cls(lazy={a.name: a for a in assigns}, parent=parent)

    def child(self, values: dict[str, Any] | None = None, syms: dict[str, Any] | None = None) -> Env:
        values = dict(values or {})
        return Env(values=values, parent=self,
                   syms={k: None for k in values} | dict(syms or {}))

    def names(self) -> set[str]:
        out = set(self.values) | set(self.lazy)
        return out | (self.parent.names() if self.parent else set())

    def find(self, name: str) -> Any:
        env: Env | None = self
        while env is not None:
            if name in env.values:
                return env.values[name]
            if name in env.lazy:
                return env._force(name)
            env = env.parent
        return _MISSING

    def _force(self, name: str) -> Any:
        a = self.lazy[name]
        if name in self._active:
            raise EvalError(f"variable '{name}' is defined in terms of itself", a.span,
                            "break the cycle by giving one of the variables a number")
        self._active.add(name)
        try:
            # Enum words (`act = gelu`) are values too; a misspelt variable
            # is reported where it is used as a number.
            v = evaluate(a.value, self, words=True)
        finally:
            self._active.discard(name)
        self.values[name] = v
        del self.lazy[name]
        return v

    def lookup(self, name: str, span) -> Any:
        v = self.find(name)
        if v is _MISSING:
            raise EvalError(f"undefined variable '{name}'", span, did_you_mean(name, self.names()))
        return v


def _num(v: Any, span, what: str) -> int | float:
    if isinstance(v, Word):
        raise EvalError(f"undefined variable '{v.text}'", v.span or span)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise EvalError(f"{what} needs a number, got {describe_value(v)}", span)
    return v


def describe_value(v: Any) -> str:
    """A value as an error message names it, in the spec's own words.

    >>> describe_value(None), describe_value(True), describe_value("gelu"), describe_value(3.5)
    ('none', 'true', 'the string "gelu"', '3.5')
    """
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'the string "{v}"'
    if isinstance(v, Word):
        return f"the name '{v.text}'"
    if isinstance(v, tuple):
        return "a tuple"
    if isinstance(v, CallValue):
        return f"{v.func}(...)"
    return repr(v)


def _check_size(v: Any, span) -> Any:
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
        raise EvalError("number too large (more than 10**18)", span,
                        "no model dimension or count is this large; check the expression")
    if isinstance(v, float) and (math.isinf(v) or math.isnan(v)):
        raise EvalError("the result is not a finite number", span)
    return v


def _binop(op: str, a: Any, b: Any, e: A.BinOp) -> Any:
    if op in ("==", "!="):
        eq = (a.text if isinstance(a, Word) else a) == (b.text if isinstance(b, Word) else b)
        return eq if op == "==" else not eq
    if op in ("and", "or"):
        return (a and b) if op == "and" else (a or b)
    x = _num(a, e.left.span, f"'{op}'")
    y = _num(b, e.right.span, f"'{op}'")
    if op in ("<", "<=", ">", ">="):
        return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
    if op in ("/", "//", "%") and y == 0:
        raise EvalError("division by zero", e.right.span or e.span,
                        "the right-hand side evaluates to 0")
    if op == "**":
        if isinstance(x, int) and isinstance(y, int) and y > 0 and abs(x) > 1 \
                and y * math.log2(abs(x)) > 62:
            raise EvalError("number too large (more than 10**18)", e.span,
                            "no model dimension or count is this large; check the expression")
        if x == 0 and y < 0:
            raise EvalError("division by zero", e.span, "0 raised to a negative power")
        try:
            r = x ** y
        except OverflowError:
            raise EvalError("number too large", e.span) from None
        if isinstance(r, complex):
            raise EvalError("a negative number raised to a fractional power", e.span)
        return _check_size(r, e.span)
    try:
        r = {"+": lambda: x + y, "-": lambda: x - y, "*": lambda: x * y, "/": lambda: x / y,
             "//": lambda: x // y, "%": lambda: x % y}[op]()
    except OverflowError:
        raise EvalError("number too large", e.span) from None
    return _check_size(r, e.span)


_FUNCS = {
    "min": lambda *xs: min(xs),
    "max": lambda *xs: max(xs),
    "sqrt": lambda x: math.sqrt(x),
    "ceil": lambda x: math.ceil(x),
    "floor": lambda x: math.floor(x),
    "round": lambda x: round(x),
    "int": lambda x: int(x),
    "float": lambda x: float(x),
    "abs": lambda x: abs(x),
}
FUNCTION_NAMES = tuple(_FUNCS)


def evaluate(e: Any, env: Env, *, words: bool = False, calls: frozenset | set = frozenset()) -> Any:
    """Evaluate an expression.

    words: a bare name that is not a variable becomes a `Word` (for enum options
    and module references) instead of an error.  calls: names (besides the math
    functions) that evaluate to a `CallValue`, e.g. {"adamw", "cosine"}.
    """
    if isinstance(e, A.Num):
        return _check_size(e.value, e.span)
    if isinstance(e, A.Str):
        return e.value
    if isinstance(e, A.Const):
        return e.value
    if isinstance(e, A.Name):
        v = env.find(e.id)
        if v is not _MISSING:
            return v
        if words:
            return Word(e.id, e.span)
        raise EvalError(f"undefined variable '{e.id}'", e.span, did_you_mean(e.id, env.names()))
    if isinstance(e, A.Tuple):
        return tuple(evaluate(x, env, words=words, calls=calls) for x in e.items)
    if isinstance(e, A.UnaryOp):
        v = evaluate(e.operand, env, words=words, calls=calls)
        if e.op == "not":
            return not v
        x = _num(v, e.operand.span, f"unary '{e.op}'")
        return -x if e.op == "-" else x
    if isinstance(e, A.BinOp):
        a = evaluate(e.left, env, words=words, calls=calls)
        if e.op == "and" and not a:
            return a
        if e.op == "or" and a:
            return a
        b = evaluate(e.right, env, words=words, calls=calls)
        return _binop(e.op, a, b, e)
    if isinstance(e, A.Cond):
        t = evaluate(e.test, env, words=words, calls=calls)
        return evaluate(e.body if t else e.orelse, env, words=words, calls=calls)
    if isinstance(e, A.Call):
        args = tuple(evaluate(x, env, words=words, calls=calls) for x in e.args)
        kwargs = tuple((k.name, evaluate(k.value, env, words=words, calls=calls)) for k in e.kwargs)
        if e.func in calls:
            return CallValue(e.func, args, kwargs)
        if e.func not in _FUNCS:
            raise EvalError(f"unknown function '{e.func}'", e.span,
                            did_you_mean(e.func, list(_FUNCS) + list(calls))
                            or f"functions: {', '.join(FUNCTION_NAMES)}")
        if kwargs:
            raise EvalError(f"'{e.func}' takes no options", e.span)
        if not args:
            raise EvalError(f"'{e.func}' needs at least one argument", e.span)
        for x, ex in zip(args, e.args):
            _num(x, ex.span, f"'{e.func}'")
        try:
            return _check_size(_FUNCS[e.func](*args), e.span)
        except TypeError:
            raise EvalError(f"wrong number of arguments to '{e.func}'", e.span) from None
        except (ValueError, OverflowError) as err:
            raise EvalError(f"'{e.func}': {err}", e.span) from None
    raise EvalError(f"cannot evaluate {type(e).__name__}", getattr(e, "span", None))
