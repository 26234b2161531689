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
    or a module (`wte`)."""
    return A.Name(id=_checked_name(text))


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
    """An expression from a Python value: bool -> true/false, number, or an
    existing expression node."""
    if isinstance(x, bool):
        return A.Const(value=x)
    if isinstance(x, (int, float)):
        return number(x)
    if isinstance(x, A.Node):
        return x
    raise ValueError(f"not a spec value: {x!r}")


def use(component: str, *args: Any, alias: str | None = None, **options: Any) -> A.Use:
    """`component(args..., option=value...) as alias`."""
    return A.Use(name=_checked_name(component), args=[value(a) for a in args],
                 kwargs=[A.Keyword(name=_checked_name(k), value=value(v)) for k, v in options.items()],
                 alias=None if alias is None else _checked_name(alias))


def residual(*body: A.Node) -> A.Residual:
    return A.Residual(body=list(body))


def branch(*body: A.Node, alias: str | None = None) -> A.Branch:
    return A.Branch(body=list(body), alias=None if alias is None else _checked_name(alias))


def repeat(count: Any, block: str, alias: str) -> A.Repeat:
    """`repeat(count) block as alias`."""
    return A.Repeat(count=value(count), body=[use(block)], alias=_checked_name(alias))


def block(block_name: str, *body: A.Node) -> A.BlockDef:
    return A.BlockDef(name=_checked_name(block_name), body=list(body))


def stack(stack_name: str, inputs: list[str], *body: A.Node) -> A.StackDef:
    return A.StackDef(name=_checked_name(stack_name),
                      inputs=[A.StackInput(name=_checked_name(i)) for i in inputs], body=list(body))


def model(model_name: str, variables: list[tuple[str, Any]], blocks: list[A.BlockDef],
          stacks: list[A.StackDef]) -> A.ModelDef:
    """`model NAME { variables; blocks; stacks }` (variables in the order given)."""
    return A.ModelDef(name=_checked_name(model_name),
                      vars=[A.Assign(name=_checked_name(k), value=value(v)) for k, v in variables],
                      blocks=blocks, stacks=stacks)
