"""The spec AST: one set of pydantic models behind both surfaces (.arch text and YAML).

Every node keeps the `span` (file, line, column) it came from, in either
surface, so later stages can point at the user's mistake.  Spans, the raw
spelling of numbers, and the file path are excluded from equality: a spec is
equal to its round trip through the other surface.

    >>> from strata.dsl.parser import parse
    >>> spec = parse("model m { d = 4*8 }", "m.arch")
    >>> spec.models[0].vars[0].value
    BinOp(kind='binop', op='*', left=Num(kind='num', value=4), right=Num(kind='num', value=8))

Shape of the tree (text form in comments):

    SpecFile
      imports   Import            from "blocks.arch" import layer
      blocks    BlockDef          block layer(window = none) { ... }
      models    ModelDef          model gpt2 extends base { vars, blocks, stacks }
        vars    Assign            d = 768
        stacks  StackDef          stack decoder(tokens, memory = encoder) { ... }
          body  Stmt              Use | Residual | Parallel | Seq | Branch | Repeat | Assign
      passes    Passes            passes { fuse_qkv; quantize(int8_dynamic, on="*.mlp.*") }
      train     Train             train { batch = 12 }
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema


class Node(BaseModel):
    # defer_build: validators are built on first use, which keeps `strata check` startup fast.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    # Where this node was written; never part of equality or of dumps.
    span: SkipJsonSchema[Any] = Field(default=None, exclude=True, repr=False)

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        return self.model_dump() == other.model_dump()  # type: ignore[union-attr]

    __hash__ = None  # type: ignore[assignment]


# ----------------------------------------------------------------- expressions

BINARY_OPS = ("+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "and", "or")
UNARY_OPS = ("-", "+", "not")


class Num(Node):
    kind: Literal["num"] = "num"
    value: int | float
    # The spelling in the source (`1e-3`), kept so `fmt` does not rewrite it.
    text: SkipJsonSchema[str | None] = Field(default=None, exclude=True, repr=False)


class Str(Node):
    kind: Literal["str"] = "str"
    value: str


class Const(Node):
    """`true`, `false`, `none`."""

    kind: Literal["const"] = "const"
    value: bool | None


class Name(Node):
    """A variable, an enum word (`gelu`), or a dotted module reference (`encoder.embed`)."""

    kind: Literal["name"] = "name"
    id: str


class BinOp(Node):
    kind: Literal["binop"] = "binop"
    op: Literal["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "and", "or"]
    left: Expr
    right: Expr


class UnaryOp(Node):
    kind: Literal["unary"] = "unary"
    op: Literal["-", "+", "not"]
    operand: Expr


class Keyword(Node):
    name: str
    value: Expr


class Call(Node):
    """`min(a, b)`, `max(...)`, or a structured value such as `adamw(lr=1e-3)`."""

    kind: Literal["call"] = "call"
    func: str
    args: list[Expr] = []
    kwargs: list[Keyword] = []


class Cond(Node):
    """`a if test else b` — lets a repeated layer differ by its index."""

    kind: Literal["cond"] = "cond"
    test: Expr
    body: Expr
    orelse: Expr


class Tuple(Node):
    kind: Literal["tuple"] = "tuple"
    items: list[Expr]


Expr = Annotated[
    Union[Num, Str, Const, Name, BinOp, UnaryOp, Call, Cond, Tuple],
    Field(discriminator="kind"),
]


# ------------------------------------------------------------------ statements

class Stmt(Node):
    # Comment lines written just above the statement (without the `#`).
    comment: str | None = None


class Assign(Stmt):
    kind: Literal["assign"] = "assign"
    name: str
    value: Expr


class Use(Stmt):
    """A component or a block: `attention(heads, causal=true) as attn`."""

    kind: Literal["use"] = "use"
    name: str
    args: list[Expr] = []
    kwargs: list[Keyword] = []
    alias: str | None = None


class Residual(Stmt):
    """`residual { body }` computes `x + body(x)`."""

    kind: Literal["residual"] = "residual"
    body: list[Statement]


class Parallel(Stmt):
    """`parallel { a; b }` computes `a(x) + b(x)`: each statement is one branch."""

    kind: Literal["parallel"] = "parallel"
    body: list[Statement]


class Seq(Stmt):
    """`seq { a; b }` groups statements into one branch of a `parallel`."""

    kind: Literal["seq"] = "seq"
    body: list[Statement]


class Branch(Stmt):
    """`branch { pooler } as pooled`: an extra output computed from the stream,
    which itself continues unchanged."""

    kind: Literal["branch"] = "branch"
    body: list[Statement]
    alias: str | None = None


class Repeat(Stmt):
    """`repeat(depth, i) layer as h` or `repeat(depth) { ... } as h`.

    The index is bound to `index` (or the name given) inside the body."""

    kind: Literal["repeat"] = "repeat"
    count: Expr
    index: str | None = None
    body: list[Statement]
    alias: str | None = None


Statement = Annotated[
    Union[Assign, Use, Residual, Parallel, Seq, Branch, Repeat],
    Field(discriminator="kind"),
]


# ----------------------------------------------------------------- definitions

class Param(Node):
    name: str
    default: Expr | None = None


class BlockDef(Stmt):
    kind: Literal["block"] = "block"
    name: str
    params: list[Param] = []
    body: list[Statement]


class StackInput(Node):
    """`tokens` (a token-id input) or `memory = encoder` (another stack's output)."""

    name: str
    source: str | None = None


class StackDef(Stmt):
    kind: Literal["stack"] = "stack"
    name: str
    inputs: list[StackInput]
    body: list[Statement]


class ModelDef(Stmt):
    kind: Literal["model"] = "model"
    name: str
    extends: str | None = None
    vars: list[Assign] = []
    blocks: list[BlockDef] = []
    stacks: list[StackDef] = []


class Import(Stmt):
    """`import "x.arch"` (everything) or `from "x.arch" import a, b`."""

    kind: Literal["import"] = "import"
    path: str
    names: list[str] | None = None


class Passes(Stmt):
    kind: Literal["passes"] = "passes"
    items: list[Use] = []


class Train(Stmt):
    kind: Literal["train"] = "train"
    items: list[Assign] = []


class SpecFile(Node):
    imports: list[Import] = []
    blocks: list[BlockDef] = []
    models: list[ModelDef] = []
    passes: Passes | None = None
    train: Train | None = None
    # The file this came from; not part of equality.
    path: SkipJsonSchema[str | None] = Field(default=None, exclude=True, repr=False)
    # Names defined by statements that syntax-error recovery dropped: the checker
    # does not call them undefined (one mistake, one error).
    dropped: SkipJsonSchema[set[str]] = Field(default_factory=set, exclude=True, repr=False)


# How deeply definitions, statements and expressions may nest, counted in AST
# levels (a model's stack's statement is level 3).  Every stage after the parser
# (formatter, YAML writer, evaluator, builder, code generators) walks the tree
# recursively; this bound keeps them all well inside Python's recursion limit.
# Real specs nest about 8 levels.
MAX_DEPTH = 100


def too_deep(root: Node, limit: int = MAX_DEPTH):
    """The span of the first node nested more than `limit` levels below `root`
    (or of its nearest ancestor that has a span), else None.  Iterative.

        >>> from strata.dsl.parser import parse
        >>> too_deep(parse("model m { d = -(-(-1)) }"), 4)   # spec, model, assign, -, -, -
        Span(file='<string>', line=1, col=19, end_line=1, end_col=21)
    """
    todo = [(root, 0, root.span)]
    while todo:
        node, depth, where = todo.pop()
        where = node.span or where
        if depth > limit:
            return where
        for name in type(node).model_fields:
            value = getattr(node, name)
            if isinstance(value, Node):
                todo.append((value, depth + 1, where))
            elif isinstance(value, list):
                todo += [(x, depth + 1, where) for x in value if isinstance(x, Node)]
    return None


def walk_exprs(expr: Any):
    """Yield `expr` and every sub-expression (pre-order)."""
    stack = [expr]
    while stack:
        e = stack.pop()
        yield e
        if isinstance(e, BinOp):
            stack += [e.right, e.left]
        elif isinstance(e, UnaryOp):
            stack.append(e.operand)
        elif isinstance(e, Call):
            stack += [k.value for k in reversed(e.kwargs)] + list(reversed(e.args))
        elif isinstance(e, Cond):
            stack += [e.orelse, e.body, e.test]
        elif isinstance(e, Tuple):
            stack += list(reversed(e.items))
