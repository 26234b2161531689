"""YAML nodes for the YAML surface: safe composing, and scalars read as expressions.

The file is composed into PyYAML's node tree (never constructed into Python
objects), so every node keeps its line and column; anchors, aliases and
non-standard tags are refused where they start.  A scalar's text is read with
the text form's own grammar (`start="expr"` / `"stmt"`), its spans moved to
where the scalar sits in the YAML file.

Values mean what they mean in the text form, not what YAML 1.1 makes of them:
only true/false (any case YAML 1.2 allows) are booleans, `yes`/`no`/`on`/`off`
are names; a number is spelled as the text form spells it (`1000`, `1_000`,
`1e3`, `0.5`), and YAML-only spellings (`0x10`, `0o17`, `1:30`, `.inf`) are
located errors, as they are in a .arch file.

    >>> read_scalar(INT, "-1").op, read_scalar(STR, "1e3").value
    ('-', 1000.0)
    >>> read_scalar(STR, "decoder.h.*").kind, read_scalar(STR, "yes").kind
    ('str', 'name')
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from itertools import islice

import yaml
from lark import Lark
from lark.exceptions import UnexpectedInput, VisitError

import strata.dsl.ast as A
from strata.dsl.clean import MAX_TOKENS, too_many_tokens
from strata.dsl.parser import GRAMMAR, KEYWORDS, MAX_INT_DIGITS, _Dup, _syntax_error, _ToAST  # noqa: F401 (KEYWORDS re-exported)
from strata.errors import Diagnostic, Span, SpecError, did_you_mean

TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (TAG + t for t in ("str", "int", "float", "bool", "null"))
_STANDARD_TAGS = {STR, INT, FLOAT, BOOL, NULL, TAG + "seq", TAG + "map", "!"}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# A plain scalar starting like a number is a number of the text form or a mistake
# (`0o17`, `2d`), never quietly a string.
NUMBER_LIKE = re.compile(r"[-+]?\.?[0-9]")
# YAML 1.2's booleans; YAML 1.1 also reads yes/no/on/off, which here are names.
BOOL_WORDS = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
# YAML nesting: a statement level of the AST is up to three YAML levels (a
# mapping, its body list, the statement); past this the AST would be too deep anyway.
MAX_YAML_DEPTH = 3 * A.MAX_DEPTH
# What a node costs against MAX_TOKENS: NODE_COST (composing a node and reading its
# scalar as a snippet take ~200 us, four tokens' worth of the text form), and each
# word and symbol of its scalar (`4 * d`: 3), counted before any of it is parsed.
NODE_COST = 4
WORD = re.compile(r"\w+|[^\w\s]")
# Words that start a construct statement in the YAML form (for "did you mean").
STATEMENT_WORDS = ("residual", "parallel", "seq", "branch", "repeat", "let")


class Bad(Exception):
    """One located mistake; caught per statement/definition so others are still found."""

    def __init__(self, message: str, span: Span | None, hint: str | None = None):
        super().__init__(message)
        self.diagnostic = Diagnostic(message, span, hint)


# ------------------------------------------------- text-form snippets in scalars

_snippet_comments: list = []


@lru_cache(maxsize=1)
def _snippet_lark() -> Lark:
    return Lark(GRAMMAR.read_text(), parser="lalr", start=["expr", "stmt"], propagate_positions=True,
                maybe_placeholders=True, cache=True,
                lexer_callbacks={"COMMENT": _snippet_comments.append})


def parse_snippet(text: str, start: str, file: str):
    """Parse `text` as one `expr` or `stmt` of the text form (lark errors propagate)."""
    _snippet_comments.clear()
    tree = _snippet_lark().parse(text, start=start)
    if _snippet_comments:
        c = _snippet_comments[0]
        raise Bad("a '#' comment inside a statement string", Span(file, c.line, c.column),
                  "put it under a 'comment:' key")
    builder = _ToAST(file)
    try:
        node = builder.transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, _Dup):
            raise Bad(e.orig_exc.message, e.orig_exc.span, e.orig_exc.hint) from None
        raise
    if builder.errors:  # the first of the snippet's mistakes (a snippet is one value or statement)
        first = builder.errors[0]
        raise Bad(first.message, first.span, first.hint)
    return node[0] if isinstance(node, list) else node


def parse_expression(text: str) -> A.Node | None:
    """The expression `text` spells in the text form, or None when it spells none.

    >>> parse_expression("4*d").op, parse_expression("decoder.*")
    ('*', None)
    """
    try:
        return parse_snippet(text, "expr", "<expr>")
    except (UnexpectedInput, Bad, RecursionError):
        return None


class Where:
    """Where a scalar's text sits in the file, to place the nodes parsed from it."""

    def __init__(self, file: str, node: yaml.Node, source: str):
        self.file, self.node, self.span = file, node, node_span(file, node)
        q = 1 if node.style in ("'", '"') else 0
        start = node.start_mark.index + q
        # Exact columns only when the scalar is its own source text on one line.
        self.exact = (node.style in (None, "'", '"') and node.start_mark.line == node.end_mark.line
                      and source[start:start + len(node.value)] == node.value)
        self.col0 = node.start_mark.column + q

    def shift(self, span: Span | None) -> Span:
        if not self.exact or span is None:
            return self.span
        return Span(self.file, self.span.line, self.col0 + span.col,
                    self.span.line, self.col0 + (span.end_col or span.col))


def place(node, where: Where | None):
    """Move every span under `node` from snippet coordinates into the file."""
    if isinstance(node, A.Node):
        node.span = where.shift(node.span) if where else None
        for name in type(node).model_fields:
            place(getattr(node, name), where)
    elif isinstance(node, list):
        for x in node:
            place(x, where)
    return node


def read_scalar(tag: str, text: str, where: Where | None = None) -> A.Node:
    """The expression a YAML scalar means: YAML null/bool as constants, anything the
    text form reads as an expression, else a string.  A plain scalar that starts like
    a number (and any `!!int`/`!!float`) is read as the text form reads it or refused.
    `where` None means a plain scalar (the writer asks how one would read back)."""
    span = where.span if where else None
    if tag == NULL:
        return A.Const(value=None, span=span)
    if tag == BOOL:
        value = yaml.constructor.SafeConstructor.bool_values.get(text.lower())
        if value is None:  # only an explicit `!!bool maybe` gets here
            raise Bad(f"'{text}' is not a YAML boolean", span, "write true or false")
        return A.Const(value=value, span=span)
    plain = where is None or where.node.style is None
    if tag in (INT, FLOAT) or (plain and NUMBER_LIKE.match(text)):
        return place(_number(tag, text, where), where)
    e = parse_expression(text)
    if e is not None:
        return place(e, where)
    return A.Str(value=text, span=span)


def _number(tag: str, text: str, where: Where | None) -> A.Node:
    """`text` as the text form reads it, or the located error it would give there."""
    span = where.span if where else None
    try:
        return parse_snippet(text, "expr", where.file if where else "<expr>")
    except Bad as b:  # e.g. a number too long: the text form's own words
        raise Bad(b.diagnostic.message, where.shift(b.diagnostic.span) if where else span,
                  b.diagnostic.hint) from None
    except (UnexpectedInput, RecursionError):
        pass
    shown = text if len(text) <= 30 else text[:24] + "..."
    if text.lstrip("+-").lower() in (".inf", ".nan"):
        raise Bad(f"{shown} is not a finite number", span)
    value = _yaml_number(tag, text)
    hint = (f"write {value}: numbers are written as in the text form" if value is not None
            else "numbers are written as in the text form (1000, 1_000, 1e3, 0.5); quote text: "
                 "'\"text\"'")
    if value is not None and len(text) <= 30:
        hint += f"; a word is quoted: '{text}'"
    raise Bad(f"'{shown}' is not a number of the spec language", span, hint)


def _yaml_number(tag: str, text: str) -> int | float | None:
    """What YAML would have made of `text` (0x10, 0o17, 1:30), for the hint."""
    clean = text.replace("_", "")
    if len(clean) > MAX_INT_DIGITS:
        return None
    try:
        if re.fullmatch(r"[-+]?0[xXoObB][0-9a-fA-F]+", clean):
            return int(clean, 0)
        if tag in (INT, FLOAT):
            c, node = yaml.constructor.SafeConstructor(), yaml.ScalarNode(tag, text)
            v = c.construct_yaml_int(node) if tag == INT else c.construct_yaml_float(node)
            return v if math.isfinite(v) else None
    except (ValueError, OverflowError):
        pass
    return None


def read_statement(where: Where) -> A.Node:
    """A string in a statement list: one statement of the text form (`layernorm`,
    `attention(heads) as attn`, `w = 256`)."""
    text = where.node.value
    try:
        return place(parse_snippet(text, "stmt", where.file), where)
    except UnexpectedInput as e:
        d = _syntax_error(e, where.file, text)
        raise Bad(f"in statement '{text}': {d.message}", where.shift(d.span),
                  d.hint or did_you_mean(text, STATEMENT_WORDS)) from None
    except Bad as b:
        raise Bad(b.diagnostic.message, where.shift(b.diagnostic.span), b.diagnostic.hint) from None


# ------------------------------------------------------------------ composing

class _Composer(yaml.SafeLoader):
    """Node tree only; anchors, aliases and unknown tags are refused where they start,
    and so are nesting past MAX_YAML_DEPTH (PyYAML composes recursively) and
    MAX_TOKENS, before the node that passes it is composed or its text parsed.  Only
    YAML 1.2's true/false resolve to booleans (`on: x`, `causal: yes` are not true)."""

    _depth = 0
    _tokens = 0   # nodes composed and the words of their scalars (MAX_TOKENS)
    yaml_implicit_resolvers = {
        ch: [(tag, BOOL_WORDS if tag == BOOL else rx) for tag, rx in rs]
        for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def compose_node(self, parent, index):
        ev = self.peek_event()
        where = Span("", ev.start_mark.line + 1, ev.start_mark.column + 1)
        if isinstance(ev, yaml.AliasEvent):
            raise Bad(f"alias '*{ev.anchor}' is not allowed", where, "write the value out in full")
        if ev.anchor is not None:
            raise Bad(f"anchor '&{ev.anchor}' is not allowed", where, "write each value out in full")
        if getattr(ev, "tag", None) not in (None, *_STANDARD_TAGS):
            raise Bad(f"tag '{ev.tag}' is not allowed", where, "remove the tag: values are plain YAML")
        if self._depth >= MAX_YAML_DEPTH and isinstance(ev, (yaml.MappingStartEvent,
                                                              yaml.SequenceStartEvent)):
            raise Bad(f"the YAML nests more than {MAX_YAML_DEPTH} levels deep here", where,
                      "split deep bodies into blocks")
        self._tokens += NODE_COST
        if isinstance(ev, yaml.ScalarEvent):
            self._tokens += sum(1 for _ in islice(WORD.finditer(ev.value), MAX_TOKENS + 1))
        if self._tokens > MAX_TOKENS:
            d = too_many_tokens(where)
            raise Bad(d.message, where, d.hint)
        if isinstance(ev, yaml.ScalarEvent):
            try:  # a "\ud800" escape makes a lone surrogate: no file can hold it
                ev.value.encode("utf-8")
            except UnicodeEncodeError as e:
                raise Bad(f"the escape for {ev.value[e.start]!r} makes a lone surrogate, which no "
                          "UTF-8 text can hold", where, "write the character itself") from None
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def node_span(file: str, node) -> Span:
    s, e = node.start_mark, node.end_mark
    return Span(file, s.line + 1, s.column + 1, e.line + 1, e.column + 1)


def compose(text: str, file: str) -> yaml.Node:
    try:
        root = yaml.compose(text, Loader=_Composer)
    except Bad as b:
        d = b.diagnostic
        raise SpecError([Diagnostic(d.message, Span(file, d.span.line, d.span.col), d.hint)],
                        {file: text}) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        hint = e.context if e.context and e.problem_mark else None
        if "'\\t'" in (e.problem or ""):
            hint = "YAML is indented with spaces, not tabs"
        elif "expected <block end>" in (e.problem or ""):
            hint = "check the indentation of this line against the lines above"
        raise SpecError([Diagnostic(f"invalid YAML: {e.problem or e.context}", Span(file, line, col),
                                    hint)], {file: text}) from None
    except yaml.reader.ReaderError as e:
        before = text[:e.position]
        line, col = before.count("\n") + 1, e.position - (before.rfind("\n") + 1) + 1
        raise SpecError([Diagnostic(f"invalid YAML: character {e.character!r} is not allowed",
                                    Span(file, line, col))], {file: text}) from None
    except RecursionError:
        raise SpecError([Diagnostic("the YAML is nested too deeply to read", Span(file, 1, 1))],
                        {file: text}) from None
    if root is None:
        raise SpecError([Diagnostic("the file is empty", Span(file, 1, 1),
                                    "a spec is a mapping with models, blocks, passes, train")],
                        {file: text})
    return root


def yaml_comments(text: str, file: str = "<string>") -> list[Span]:
    """Where `text` has `# ...` comments: PyYAML drops them, so a rewrite would lose them.

    >>> [str(s) for s in yaml_comments("a: 1  # one\\nb: '#not'\\n", "f.yaml")]
    ['f.yaml:1:7']
    """
    inside = bytearray(len(text) + 1)
    for tok in yaml.scan(text, Loader=yaml.SafeLoader):
        inside[tok.start_mark.index:tok.end_mark.index] = b"\1" * (tok.end_mark.index - tok.start_mark.index)
    out = []
    for i, ch in enumerate(text):
        if ch == "#" and not inside[i] and (i == 0 or text[i - 1] in " \t\n"):
            line = text.count("\n", 0, i) + 1
            out.append(Span(file, line, i - (text.rfind("\n", 0, i) + 1) + 1))
    return out
