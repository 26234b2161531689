"""Small constructors for a spec's AST, so an importer builds the model as data
and strata's formatter writes the text (nothing is pasted into spec source).

Every leaf is checked as it is made: a number is a finite, non-negative int or
float; a name is a valid, non-reserved name (a variable, a component, an enum
word such as `gelu_tanh`); True / False are the constants.

    >>> from strata.dsl.formatter import format_spec
    >>> from strata.dsl import ast as A
    >>> m = model("tiny", [("d", 8)], [], [stack("decoder", ["tokens"],
    ...     use("embedding", 10, ref("d"), alias="wte"), use("lm_head", tie=ref("wte")))])
    >>> print(format_spec(A.SpecFile(models=[m])), end="")
    model tiny {
      d = 8
    <BLANKLINE>
      stack decoder(tokens) {
        embedding(10, d) as wte
        lm_head(tie=wte)
      }
    }
"""

from __future__ import annotations

import math
import re
from typing import Any

from strata.dsl import ast as A
from strata.dsl.yaml_nodes import KEYWORDS

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def ref(text: str) -> A.Name:
    """A name in an expression: a variable (`heads`), an enum word (`gelu_tanh`)
    or a module (`wte`, `encoder.embed`)."""
    if not isinstance(text, str):
        raise ValueError(f"not a spec name: {text!r}")
    return A.Name(id=".".join(_checked_name(part) for part in text.split(".")))


def _checked_name(text: str) -> str:
    if not isinstance(text, str) or not _NAME.match(text) or text in KEYWORDS:
        raise ValueError(f"not a spec name: {text!r}")
    return text


def number(x: float) -> A.Num:
    """A non-negative finite number; a float with an integral value is written as
    an int (`base=10000`, as config.json's 10000.0 means)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x < 0 or not math.isfinite(x):
        raise ValueError(f"not a non-negative finite number: {x!r}")
    if isinstance(x, float) and x.is_integer() and x < 1e15:
        x = int(x)
    return A.Num(value=x)


def value(x: Any) -> A.Node:
    """An expression from a Python value: bool -> true/false, None -> none, number,
    or an existing expression node."""
    if isinstance(x, bool) or x is None:
        return A.Const(value=x)
    if isinstance(x, (int, float)):
        return number(x)
    if isinstance(x, A.Node):
        return x
    raise ValueError(f"not a spec value: {x!r}")


def binop(op: str, left: Any, right: Any) -> A.BinOp:
    """`left op right` (`d ** -0.5`, `i % 2 == 0`)."""
    return A.BinOp(op=op, left=value(left), right=value(right))


def neg(x: Any) -> A.UnaryOp:
    """`-x` (a number is never negative: the sign is an operator)."""
    return A.UnaryOp(op="-", operand=value(x))


def cond(test: Any, body: Any, orelse: Any) -> A.Cond:
    """`body if test else orelse`."""
    return A.Cond(test=value(test), body=value(body), orelse=value(orelse))


def call(func: str, *args: Any) -> A.Call:
    """`func(args...)`, one of the evaluator's functions (`sqrt(d)`)."""
    return A.Call(func=_checked_name(func), args=[value(a) for a in args])


def use(component: str, *args: Any, alias: str | None = None, **options: Any) -> A.Use:
    """`component(args..., option=value...) as alias`."""
    return A.Use(name=_checked_name(component), args=[value(a) for a in args],
                 kwargs=[A.Keyword(name=_checked_name(k), value=value(v)) for k, v in options.items()],
                 alias=None if alias is None else _checked_name(alias))


def residual(*body: A.Node) -> A.Residual:
    return A.Residual(body=list(body))


def parallel(*body: A.Node) -> A.Parallel:
    """`parallel { a; b }`: each statement one branch, their outputs summed."""
    return A.Parallel(body=list(body))


def seq(*body: A.Node) -> A.Seq:
    return A.Seq(body=list(body))


def branch(*body: A.Node, alias: str | None = None) -> A.Branch:
    return A.Branch(body=list(body), alias=None if alias is None else _checked_name(alias))


def repeat(count: Any, block: str, alias: str, index: str | None = None) -> A.Repeat:
    """`repeat(count) block as alias`, or `repeat(count, index) block as alias` when the
    block reads the layer index."""
    return A.Repeat(count=value(count), index=None if index is None else _checked_name(index),
                    body=[use(block)], alias=_checked_name(alias))


def block(block_name: str, *body: A.Node) -> A.BlockDef:
    return A.BlockDef(name=_checked_name(block_name), body=list(body))


def stack(stack_name: str, inputs: list, *body: A.Node) -> A.StackDef:
    """`stack name(tokens, memory = encoder) { body }`: an input is a name, or a
    (name, stack) pair binding another stack's output."""
    def one(i):
        name, source = (i, None) if isinstance(i, str) else i
        return A.StackInput(name=_checked_name(name), source=None if source is None else _checked_name(source))

    return A.StackDef(name=_checked_name(stack_name), inputs=[one(i) for i in inputs], body=list(body))


def model(model_name: str, variables: list[tuple[str, Any]], blocks: list[A.BlockDef],
          stacks: list[A.StackDef]) -> A.ModelDef:
    """`model NAME { variables; blocks; stacks }` (variables in the order given)."""
    return A.ModelDef(name=_checked_name(model_name),
                      vars=[A.Assign(name=_checked_name(k), value=value(v)) for k, v in variables],
                      blocks=blocks, stacks=stacks)
