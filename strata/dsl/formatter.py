"""Canonical .arch text of a spec: what `strata fmt` writes and `convert` emits.

    >>> from strata.dsl.parser import parse
    >>> print(format_spec(parse("model m{d=4*(a+b) stack s(tokens){layernorm()}}")), end="")
    model m {
      d = 4 * (a + b)
    <BLANKLINE>
      stack s(tokens) {
        layernorm
      }
    }

Layout rules (one consistent choice, so formatting is idempotent):
- top level: imports, then blocks, models, passes, train; a blank line between items;
- inside a model: vars, then blocks, then stacks, a blank line between sections;
- two spaces per level, one statement per line; `=` aligned within a run of
  consecutive assignments;
- a `residual` / `parallel` / `seq` / `branch` / `repeat` body made only of uses
  and assignments without comments stays on one line when it fits in 100
  columns (`residual { layernorm; attention(heads) }`); any other body is
  written one statement per line;
- definitions bind with spaces (`block b(window = none)`, `memory = encoder`),
  call keywords without (`attention(heads, causal=true)`);
- `repeat(n) layer as h` when the body is one plain use, else `repeat(n, i) { ... } as h`;
- expressions get the fewest parentheses the grammar needs; numbers keep their
  spelling (`1e-3`); strings are double-quoted with escapes;
- a statement's comment is written as `# ...` lines just above it.

The guarantees: `parse(format_spec(x)) == x` and formatting is idempotent.
"""

from __future__ import annotations

import bisect
import math
import re

import strata.dsl.ast as A
from strata.errors import Span

INDENT = "  "
WIDTH = 100  # a construct whose simple body fits in this many columns stays on one line

# Binding strength of each expression form, loosest first (grammar.lark's rule order).
COND, OR, AND, NOT, CMP, SUM, TERM, UNARY, POW, ATOM = range(10)

_BINOP_LEVEL = {"or": OR, "and": AND, "+": SUM, "-": SUM, "*": TERM, "/": TERM,
                "//": TERM, "%": TERM, "**": POW,
                **{op: CMP for op in ("==", "!=", "<", "<=", ">", ">=")}}

# The least binding level each operand may have without parentheses: (left, right).
# Left-associative operators accept their own level on the left only; comparisons
# are non-associative; `**` takes an atom on the left and a unary factor on the right.
_OPERANDS = {OR: (OR, AND), AND: (AND, NOT), CMP: (SUM, SUM), SUM: (SUM, TERM),
             TERM: (TERM, UNARY), POW: (ATOM, UNARY)}


# ----------------------------------------------------------------- expressions

def format_expr(e: A.Node) -> str:
    """The text of one expression, with minimal parentheses.

    >>> from strata.dsl import ast as A
    >>> format_expr(A.UnaryOp(op="-", operand=A.BinOp(op="**", left=A.Num(value=2), right=A.Num(value=2))))
    '-2 ** 2'
    """
    return _expr(e, COND)


def _level(e: A.Node) -> int:
    if isinstance(e, A.Cond):
        return COND
    if isinstance(e, A.BinOp):
        return _BINOP_LEVEL[e.op]
    if isinstance(e, A.UnaryOp):
        return NOT if e.op == "not" else UNARY
    return ATOM


def _expr(e: A.Node, least: int) -> str:
    text = _expr_bare(e)
    return f"({text})" if _level(e) < least else text


def _expr_bare(e: A.Node) -> str:
    if isinstance(e, A.Num):
        return format_number(e)
    if isinstance(e, A.Str):
        return format_string(e.value)
    if isinstance(e, A.Const):
        return {True: "true", False: "false", None: "none"}[e.value]
    if isinstance(e, A.Name):
        return e.id
    if isinstance(e, A.BinOp):
        left, right = _OPERANDS[_BINOP_LEVEL[e.op]]
        return f"{_expr(e.left, left)} {e.op} {_expr(e.right, right)}"
    if isinstance(e, A.UnaryOp):
        if e.op == "not":
            return f"not {_expr(e.operand, NOT)}"
        return f"{e.op}{_expr(e.operand, UNARY)}"
    if isinstance(e, A.Cond):
        return f"{_expr(e.body, OR)} if {_expr(e.test, OR)} else {_expr(e.orelse, COND)}"
    if isinstance(e, A.Call):
        return f"{e.func}({format_args(e.args, e.kwargs)})"
    if isinstance(e, A.Tuple):
        items = [_expr(x, COND) for x in e.items]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    raise TypeError(f"not an expression: {e!r}")


def format_number(n: A.Num) -> str:
    """The number's own spelling when it has one, else a canonical one (`1e-05`)."""
    if n.text is not None:
        return n.text
    if isinstance(n.value, float):
        if not math.isfinite(n.value) or n.value < 0:
            raise ValueError(f"{n.value!r} has no spelling in the text form")
        return repr(n.value)
    if n.value < 0:
        raise ValueError(f"{n.value!r} has no spelling in the text form (write it as -{-n.value})")
    return str(n.value)


def format_string(value: str) -> str:
    """A double-quoted string literal that the grammar reads back as `value`, every
    character that is not printable written as an escape: the one way strata puts
    untrusted text (a string value, an import path, a folder name) into spec text.

        >>> print(format_string('a "b"\\n\\u202e'))
        "a \\"b\\"\\n\\u202e"
    """
    out = []
    for c in value:
        if c in '"\\':
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        else:
            out.append(_ESCAPES.get(c) or ascii(c)[1:-1])  # \x1b, \u2028, \U000e0001
    return '"' + "".join(out) + '"'


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def format_args(args: list, kwargs: list) -> str:
    parts = [_expr(a, COND) for a in args] + [f"{k.name}={_expr(k.value, COND)}" for k in kwargs]
    return ", ".join(parts)


# ------------------------------------------------------------------ statements

def _comment_lines(node: A.Stmt, pad: str) -> list[str]:
    if node.comment is None:
        return []
    # Any line break the parser counts (CR too) starts a new `#` line: a comment
    # read from YAML must not end early and let its text be read as statements.
    return [pad + ("# " + line if line else "#") for line in _LINE_BREAK.split(node.comment)]


_LINE_BREAK = re.compile("\r\n|\r|\n")


def format_use(u: A.Use) -> str:
    """One use on one line: `attention(heads, causal=true) as attn` (comment not included)."""
    return _use_text(u)


def _use_text(u: A.Use) -> str:
    text = u.name
    if u.args or u.kwargs:
        text += f"({format_args(u.args, u.kwargs)})"
    if u.alias:
        text += f" as {u.alias}"
    return text


def _is_simple(s: A.Stmt) -> bool:
    return isinstance(s, (A.Use, A.Assign)) and s.comment is None


def _body(head: str, body: list, tail: str, pad: str) -> list[str]:
    """`head { a; b } tail` on one line when the body is simple statements and fits
    in WIDTH columns, else one statement per line."""
    if not body:
        return [f"{pad}{head} {{}}{tail}"]
    if all(_is_simple(s) for s in body):
        line = f"{pad}{head} {{ {'; '.join(_stmt_lines(s, '', 0)[0] for s in body)} }}{tail}"
        if len(line) <= WIDTH:
            return [line]
    return [f"{pad}{head} {{", *_stmts(body, pad + INDENT), f"{pad}}}{tail}"]


def _stmt_lines(s: A.Stmt, pad: str, width: int) -> list[str]:
    """The lines of one statement (without its comment); `width` aligns `=`."""
    if isinstance(s, A.Assign):
        return [f"{pad}{s.name.ljust(width)} = {format_expr(s.value)}"]
    if isinstance(s, A.Use):
        return [pad + _use_text(s)]
    if isinstance(s, (A.Residual, A.Parallel, A.Seq)):
        return _body(s.kind, s.body, "", pad)
    if isinstance(s, A.Branch):
        return _body("branch", s.body, f" as {s.alias}" if s.alias else "", pad)
    if isinstance(s, A.Repeat):
        head = f"repeat({format_expr(s.count)}" + (f", {s.index})" if s.index else ")")
        tail = f" as {s.alias}" if s.alias else ""
        only = s.body[0] if len(s.body) == 1 else None
        if isinstance(only, A.Use) and only.alias is None and only.comment is None:
            return [f"{pad}{head} {_use_text(only)}{tail}"]
        return _body(head, s.body, tail, pad)
    raise TypeError(f"not a statement: {s!r}")


def _stmts(body: list, pad: str) -> list[str]:
    """Statements one per line, `=` aligned within each run of assignments."""
    out: list[str] = []
    widths = _assign_widths(body)
    for s, width in zip(body, widths):
        out += _comment_lines(s, pad) + _stmt_lines(s, pad, width)
    return out


def _assign_widths(body: list) -> list[int]:
    widths = [0] * len(body)
    i = 0
    while i < len(body):
        j = i
        while j < len(body) and isinstance(body[j], A.Assign):
            j += 1
        if j > i:
            w = max(len(a.name) for a in body[i:j])
            widths[i:j] = [w] * (j - i)
            i = j
        else:
            i += 1
    return widths


# ----------------------------------------------------------------- definitions

def _params(params: list[A.Param]) -> str:
    if not params:
        return ""
    parts = [p.name if p.default is None else f"{p.name} = {format_expr(p.default)}" for p in params]
    return f"({', '.join(parts)})"


def _block(b: A.BlockDef, pad: str) -> list[str]:
    return _comment_lines(b, pad) + _section(f"block {b.name}{_params(b.params)}",
                                             _stmts(b.body, pad + INDENT), pad)


def _stack(s: A.StackDef, pad: str) -> list[str]:
    inputs = ", ".join(i.name if i.source is None else f"{i.name} = {i.source}" for i in s.inputs)
    return _comment_lines(s, pad) + _section(f"stack {s.name}({inputs})",
                                             _stmts(s.body, pad + INDENT), pad)


def _section(head: str, inner: list[str], pad: str) -> list[str]:
    if not inner:
        return [f"{pad}{head} {{}}"]
    return [f"{pad}{head} {{", *inner, f"{pad}}}"]


def _join(groups: list[list[str]]) -> list[str]:
    """Groups of lines with one blank line between groups."""
    out: list[str] = []
    for g in groups:
        if out:
            out.append("")
        out += g
    return out


def _model(m: A.ModelDef) -> list[str]:
    head = f"model {m.name}" + (f" extends {m.extends}" if m.extends else "")
    groups = []
    if m.vars:
        groups.append(_stmts(m.vars, INDENT))
    groups += [_block(b, INDENT) for b in m.blocks]
    groups += [_stack(s, INDENT) for s in m.stacks]
    return _comment_lines(m, "") + _section(head, _join(groups), "")


def _import(i: A.Import) -> list[str]:
    if i.names is None:
        line = f"import {format_string(i.path)}"
    else:
        line = f"from {format_string(i.path)} import {', '.join(i.names)}"
    return _comment_lines(i, "") + [line]


def format_spec(spec: A.SpecFile) -> str:
    """The canonical .arch text of `spec` (ends with a newline unless empty).

    >>> from strata.dsl.parser import parse
    >>> format_spec(parse("passes{fuse_qkv;quantize(int8_dynamic,on='*.mlp')}"))
    'passes {\\n  fuse_qkv\\n  quantize(int8_dynamic, on="*.mlp")\\n}\\n'
    """
    groups: list[list[str]] = []
    if spec.imports:
        groups.append([line for i in spec.imports for line in _import(i)])
    groups += [_block(b, "") for b in spec.blocks]
    groups += [_model(m) for m in spec.models]
    if spec.passes is not None:
        groups.append(_comment_lines(spec.passes, "")
                      + _section("passes", _stmts(spec.passes.items, INDENT), ""))
    if spec.train is not None:
        groups.append(_comment_lines(spec.train, "")
                      + _section("train", _stmts(spec.train.items, INDENT), ""))
    lines = _join(groups)
    return "\n".join(lines) + "\n" if lines else ""


def unkept_comments(source: str, spec: A.SpecFile, file: str = "<string>") -> list:
    """Where `source` (.arch text) has comments that rewriting it would drop or
    move out of their block.

    The parser gives each comment to the statement after it (`comment_owners`).
    A comment after the file's last statement has none; one before a block's
    closing `}` would be given to a statement outside the block.  Both are
    reported rather than lost or moved.

    >>> from strata.dsl.parser import parse
    >>> src = "# kept\\nmodel m {\\n  d = 1\\n  # end of m\\n}\\n# lost\\n"
    >>> [str(s) for s in unkept_comments(src, parse(src), "m.arch")]
    ['m.arch:4:3', 'm.arch:6:1']
    """
    import strata.dsl.parser as P  # lazy: startup

    P._comments.clear()
    closes = [(t.line, t.column) for t in P._lark().lex(source) if t.type == "RBRACE"]
    comments, P._comments[:] = list(P._comments), []
    lost = []
    for c, owner in zip(comments, P.comment_owners(spec, comments)):
        at = (c.line, c.column)
        if owner is not None and (owner.span.line, owner.span.col) > at:
            i = bisect.bisect_right(closes, at)  # the first `}` after the comment
            if i == len(closes) or closes[i] > (owner.span.line, owner.span.col):
                continue  # its owner is inside the same block
        elif owner is not None:
            continue  # a trailing comment of the statement on its line
        lost.append(Span(file, c.line, c.column))
    return lost
