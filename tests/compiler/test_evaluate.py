"""strata's expression evaluator (strata/compiler/evaluate.py): arithmetic as
Python does it, lazy model variables, words, bounded numbers, and errors that
point at the expression."""

from __future__ import annotations

import math
import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.compiler.evaluate import (
    MAX_INT,
    CallValue,
    Env,
    EvalError,
    Word,
    describe_value,
    evaluate,
)
from strata.dsl.parser import parse


def env_of(**variables) -> Env:
    text = "model m {\n" + "\n".join(f"  {k} = {v}" for k, v in variables.items()) + "\n}"
    return Env.of_assigns(parse(text, "m.arch").models[0].vars)


def ev(expr: str, **variables):
    """The value of `expr` with the model variables `variables` (spec text each)."""
    return env_of(**variables, x=expr).lookup("x", None)


def err(expr: str, **variables) -> EvalError:
    with pytest.raises(EvalError) as info:
        ev(expr, **variables)
    return info.value


@pytest.mark.parametrize("expr, value", [
    ("4*d", 3072), ("d // heads", 64), ("7 / 2", 3.5), ("2 ** 10", 1024), ("-3 % 5", 2),
    ("-7 // 2", -4), ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("2 ** 3 ** 2", 512), ("-2 ** 2", -4),
    ("1e-5", 1e-5), ("1 < 2 and 2 <= 2", True), ("not 1 == 1", False), ("3 != 4", True),
    ("8 if 3 % 2 == 0 else 1000", 1000), ("(1, 2, d)", (1, 2, 768)), ("true", True),
    ("none", None), ('"text"', "text"),
    ("min(3, 1, 2)", 1), ("max(d, 1024)", 1024), ("sqrt(16)", 4.0), ("ceil(2.1)", 3),
    ("floor(2.9)", 2), ("round(2.5)", 2), ("int(7.9)", 7), ("float(3)", 3.0), ("abs(-4)", 4),
])
def test_values(expr, value):
    got = ev(expr, d=768, heads=12)
    assert got == value and type(got) is type(value)


def test_variables_are_lazy_and_in_any_order():
    assert ev("a + b", a="b * 2", b="3") == 9


def test_and_or_short_circuit_like_python():
    assert ev("0 and 1 / 0") == 0 and ev("1 or 1 / 0") == 1


def test_a_bare_word_is_a_value_in_a_variable_but_not_a_number():
    assert ev("act", act="gelu") == Word("gelu")
    assert ev("act == gelu", act="gelu") is True
    e = err("gelu + 1")
    assert e.message == "undefined variable 'gelu'"


def test_undefined_variable_suggests_the_close_name():
    env = env_of(heads=12)
    x = parse("model m { x = hedas * 2 }").models[0].vars[0].value
    with pytest.raises(EvalError) as info:
        evaluate(x, env)
    assert info.value.message == "undefined variable 'hedas'"
    assert "heads" in info.value.hint and info.value.span.line == 1


def test_a_cycle_is_reported_not_recursed():
    e = err("a", a="b + 1", b="a * 2")
    assert "is defined in terms of itself" in e.message and e.hint


@pytest.mark.parametrize("expr, message", [
    ("1 / 0", "division by zero"), ("1 % (2 - 2)", "division by zero"),
    ("0 ** -1", "division by zero"),
    ("10 ** 19", "number too large"), ("2 ** 63", "number too large"),
    ("10 ** 10 ** 9", "number too large"),
    ("1000000000000 * 10000000", "number too large"),
    ("1e308 * 10", "not a finite number"), ("(-8) ** 0.5", "fractional power"),
    ('"x" + 1', 'needs a number, got the string "x"'), ("none * 2", "needs a number, got none"),
    ("(1, 2) * 2", "needs a number, got a tuple"),
    ("sqrtt(4)", "unknown function 'sqrtt'"), ("min()", "needs at least one argument"),
    ("min(a=1)", "takes no options"), ("sqrt(1, 2)", "wrong number of arguments"),
    ("sqrt(-1)", "'sqrt': math domain error"),
])
def test_errors(expr, message):
    assert message in err(expr).message


def test_the_largest_integer_is_allowed():
    assert ev("10 ** 18") == MAX_INT
    assert "number too large" in err("10 ** 18 + 1").message


def test_error_points_at_the_operand():
    text = "model m {\n  x = 3 + (4 // (2 - 2))\n}"
    x = parse(text, "m.arch").models[0].vars[0].value
    with pytest.raises(EvalError) as info:
        evaluate(x, Env())
    assert (info.value.span.line, info.value.span.col) == (2, 18)  # at 2 - 2


def test_calls_become_values_when_allowed():
    x = parse("model m { x = adamw(1e-3, betas=(0.9, 0.99)) }").models[0].vars[0].value
    v = evaluate(x, Env(), calls={"adamw"})
    assert v == CallValue("adamw", (1e-3,), (("betas", (0.9, 0.99)),))
    assert v.as_dict() == {"type": "adamw", "betas": (0.9, 0.99)}
    with pytest.raises(EvalError, match="unknown function 'adamw'"):
        evaluate(x, Env())


@pytest.mark.parametrize("value, text", [
    (None, "none"), (True, "true"), (False, "false"), ("gelu", 'the string "gelu"'),
    (Word("gelu"), "the name 'gelu'"), ((1, 2), "a tuple"), (CallValue("adamw", (), ()), "adamw(...)"),
    (3.5, "3.5"), (7, "7"),
])
def test_describe_value(value, text):
    assert describe_value(value) == text


# ---------------------------------------------------------------- property: Python's arithmetic

OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv,
       "%": operator.mod}
trees = st.recursive(
    st.integers(-50, 50),
    lambda sub: st.tuples(st.sampled_from(sorted(OPS)), sub, sub),
    max_leaves=12,
)


def _text(t) -> str:
    if isinstance(t, int):
        return f"({t})" if t < 0 else str(t)
    op, a, b = t
    return f"({_text(a)} {op} {_text(b)})"


def _value(t) -> int:
    """Python's integer arithmetic, with strata's bounds: None where strata must refuse."""
    if isinstance(t, int):
        return t
    op, a, b = t
    x, y = _value(a), _value(b)
    if x is None or y is None or (op in ("//", "%") and y == 0):
        return None
    r = OPS[op](x, y)
    return None if abs(r) > MAX_INT else r


@settings(max_examples=200, deadline=None)
@given(trees)
def test_integer_arithmetic_matches_python(tree):
    want = _value(tree)
    if want is None:
        with pytest.raises(EvalError):
            ev(_text(tree))
    else:
        assert ev(_text(tree)) == want


@settings(max_examples=100, deadline=None)
@given(st.floats(-1e6, 1e6, allow_nan=False), st.floats(0.5, 1e3))
def test_float_division_and_power_match_python(a, b):
    assert ev(f"({a!r}) / {b!r}") == a / b
    assert math.isclose(ev(f"{b!r} ** 0.5"), b ** 0.5)
