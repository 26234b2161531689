"""Syntax-error recovery for the .arch parser: every syntax error of a file in
one pass, each at the token that is wrong, and a parse tree of the rest.

The grammar is LALR(1) with no statement separator, so lark stops at the
first token it cannot shift.  This driver lexes the whole file first, feeds
the tokens to lark's parser one by one, and keeps a snapshot of the parser's
stacks at every statement boundary (a token that starts a line, or follows
`;`, `{` or `}`).  On an error it drops the fewest statements that let the
parse go on: it restores the latest snapshot from which the tokens after a
later boundary parse past the error, and goes on from there.

Two mistakes are reported where the author made them rather than where lark
notices them:

- an unfinished line (`d = 4096 +` then `heads = 12`): lark reads on into
  the next line, so the error is placed at the end of the unfinished line;
- a missing `}`: lark pairs the next `}` with the wrong `{` and fails at the
  next `stack` or at the end of the file.  When the braces do not balance, the
  indentation (a `}` that starts a line closes the `{` of the line indented
  like it) says which `{` is left open; a `}` is put back where the block's
  indentation ends, and the error names that block.

    >>> from strata.dsl.parser import parse_recovering
    >>> spec, diags = parse_recovering("model m {\\n  d = 4096 +\\n  heads = 12\\n}\\n", "m.arch")
    >>> [(d.span.line, d.message) for d in diags], [v.name for v in spec.models[0].vars]
    ([(2, "the line ends after '+'; expected a value")], ['heads'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.parsers.lalr_parser_state import ParserState

from strata.errors import Diagnostic, Span

# A line that ends in one of these wants more on the same line.
CONTINUES = {"ADD_OP", "MUL_OP", "POW", "COMP_OP", "EQUAL", "OR", "AND", "NOT", "IF", "ELSE", "DOT"}
# At most this many syntax errors are reported; past them the rest is noise.
MAX_ERRORS = 50
# How far recovery looks: boundaries back (restore points) and forward (resume points).
BACK, FORWARD = 8, 24
# Tokens fed past the error before a recovery counts as good.
TRIAL = 3


@dataclass
class Recovered:
    tree: object | None                     # lark parse tree, or None when nothing could be read
    diagnostics: list[Diagnostic] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)  # names defined by statements recovery dropped


def lex_all(lark: Lark, text: str, file: str, comments: list,
            describe: Callable[[UnexpectedInput, str], Diagnostic]) -> tuple[list[Token], list[Diagnostic]]:
    """Every token of `text`; a character no token starts with is reported and
    blanked (a stray quote blanks the rest of its line), and lexing goes on."""
    diags: list[Diagnostic] = []
    while True:
        comments.clear()
        try:
            return list(lark.lex(text)), diags
        except UnexpectedCharacters as e:
            diags.append(describe(e, text))
            pos = e.pos_in_stream
            end = pos + 1
            if text[pos] in "'\"":
                nl = text.find("\n", pos)
                end = len(text) if nl < 0 else nl
            text = text[:pos] + " " * (end - pos) + text[end:]
            if len(diags) >= MAX_ERRORS:
                return [], diags


class _Driver:
    def __init__(self, lark: Lark, toks: list[Token], file: str, text: str,
                 describe: Callable[[UnexpectedInput, str], Diagnostic]):
        self.toks, self.file, self.text, self.describe = toks, file, text, describe
        self.conf = lark.parse_interactive("").parser_state.parse_conf
        self.lexer = lark.parse_interactive("").parser_state.lexer
        self.boundary = [i == 0 or t.line != toks[i - 1].end_line or toks[i - 1].type in ("SEMICOLON", "LBRACE",
                         "RBRACE") or t.type == "RBRACE" for i, t in enumerate(toks)]

    def state(self, snap=None) -> ParserState:
        if snap is None:
            return ParserState(self.conf, self.lexer)
        return ParserState(self.conf, self.lexer, list(snap[0]), list(snap[1]))

    def feed(self, ps: ParserState, tok: Token):
        """Feed one token; a keyword where only a name fits is that name (as lark's
        contextual lexer reads it: the transformer then says it is a keyword)."""
        choices = self.conf.states[ps.position]
        if tok.type not in choices and "NAME" in choices and tok.type == tok.value.upper() \
                and tok.value.isidentifier():
            tok = Token.new_borrow_pos("NAME", tok.value, tok)
        return ps.feed_token(tok, tok.type == "$END")

    def end_token(self) -> Token:
        last = self.toks[-1] if self.toks else None
        if last is None:
            return Token("$END", "", 0, 1, 1)
        return Token.new_borrow_pos("$END", "", last)

    def trial(self, snap, start: int, through: int) -> bool:
        """Does the parse go on from `snap` fed tokens[start:], past index `through`?"""
        ps = self.state(snap)
        stop = min(len(self.toks), max(through + 1, start + TRIAL) + TRIAL)
        try:
            for t in self.toks[start:stop]:
                self.feed(ps, t)
            if stop == len(self.toks):
                self.feed(ps, self.end_token())
        except UnexpectedInput:
            return False
        return True

    def close_at_end(self, snap):
        """The tree from `snap` with every open `{` closed at the end of the file, or None."""
        ps = self.state(snap)
        end = self.end_token()
        try:
            for _ in range(len(ps.state_stack) + 1):
                if "RBRACE" not in self.conf.states[ps.position]:
                    break
                self.feed(ps, Token.new_borrow_pos("RBRACE", "}", end))
            return self.feed(ps, end)
        except UnexpectedInput:
            return None

    def run(self) -> Recovered:
        out = Recovered(None)
        ps = self.state()
        snaps: dict[int, tuple] = {}
        order: list[int] = []
        i, n = 0, len(self.toks)
        while True:
            if i == n:
                snap = (list(ps.state_stack), list(ps.value_stack))
                try:
                    out.tree = self.feed(ps, self.end_token())
                    return out
                except UnexpectedToken as e:
                    out.diagnostics.append(self.describe(e, self.text))
                    for j in [None] + order[::-1][:BACK]:
                        out.tree = self.close_at_end(snap if j is None else snaps[j])
                        if out.tree is not None:
                            if j is not None:
                                out.dropped |= self.defined(j, n)
                            return out
                    return out
            if self.boundary[i]:
                snaps[i] = (list(ps.state_stack), list(ps.value_stack))
                order.append(i)
            try:
                self.feed(ps, self.toks[i])
                i += 1
                continue
            except UnexpectedToken as e:
                err = e
            found = self.resume_point(i, order, snaps)
            out.diagnostics.append(self.unfinished_line(found[0] if found else None, i)
                                   or self.describe(err, self.text))
            if found is None or len(out.diagnostics) >= MAX_ERRORS:
                return out
            j, k = found
            out.dropped |= self.defined(j, k)
            ps = self.state(snaps[j])
            order = [x for x in order if x < j]
            i = k

    def resume_point(self, i: int, order: list[int], snaps: dict) -> tuple[int, int] | None:
        """(restore, resume): the latest boundary j to go back to and the first
        boundary k > j from which the tokens parse on past the error at i."""
        before = [x for x in order if x <= i][-BACK:]
        after = [x for x in range(i + 1, len(self.toks)) if self.boundary[x]][:FORWARD]
        for k in [x for x in before if x > before[0]] + after + [len(self.toks)]:
            for j in reversed([x for x in before if x < k]):
                if k == len(self.toks):
                    if self.close_at_end(snaps[j]) is not None:
                        return j, k
                elif self.trial(snaps[j], k, i):
                    return j, k
        return None

    def unfinished_line(self, j: int | None, i: int) -> Diagnostic | None:
        """The error, placed at the end of a line that ends in an operator when the
        statement went on to the next line from there (outside any brackets)."""
        start = j if j is not None else max(0, i - 1)
        depth = 0
        for m in range(start, min(i, len(self.toks) - 1) + 1):
            t = self.toks[m]
            depth += t.type == "LPAR"
            depth -= t.type == "RPAR"
            nxt = self.toks[m + 1] if m + 1 < len(self.toks) else None
            if (t.type in CONTINUES and depth <= 0 and m < i and nxt is not None
                    and nxt.line > t.end_line):
                what = "a name" if t.type == "DOT" else "a value"
                return Diagnostic(f"the line ends after '{t}'; expected {what}",
                                  Span(self.file, t.end_line, t.end_column, t.end_line, t.end_column + 1),
                                  "finish the expression on this line, or put it in ( ) to go on "
                                  "to the next")
        return None

    def defined(self, j: int, k: int) -> set[str]:
        """Names that the dropped tokens [j, k) define (`d = ...`, `block b`, `stack s`)."""
        out = set()
        for m in range(j, min(k, len(self.toks)) - 1):
            a, b = self.toks[m], self.toks[m + 1]
            if self.boundary[m] and a.type == "NAME" and b.type == "EQUAL":
                out.add(str(a))
            if a.type in ("BLOCK", "STACK", "MODEL") and b.type == "NAME":
                out.add(str(b))
        return out


def _indents(toks: list[Token]) -> dict[int, int]:
    """line -> column of its first token."""
    out: dict[int, int] = {}
    for t in toks:
        out.setdefault(t.line, t.column)
    return out


def close_by_indent(toks: list[Token], file: str) -> tuple[list[Token], list[Diagnostic]]:
    """Put back each `}` that the indentation says is missing: a `}` starting a
    line indented less than the innermost open `{`'s line, when an outer open `{`
    is on a line indented like it, leaves the inner ones open.  Each goes back
    before the first line indented no deeper than its `{`'s line."""
    budget = sum(t.type == "LBRACE" for t in toks) - sum(t.type == "RBRACE" for t in toks)
    if budget <= 0:
        return toks, []
    indent = _indents(toks)
    first = [i == 0 or t.line != toks[i - 1].line for i, t in enumerate(toks)]
    stack: list[int] = []
    inserts: list[tuple[int, Token]] = []
    diags: list[Diagnostic] = []
    for idx, t in enumerate(toks):
        if t.type == "LBRACE":
            stack.append(idx)
        elif t.type == "RBRACE":
            here = indent[t.line]
            if (first[idx] and budget > 0 and stack and indent[toks[stack[-1]].line] > here
                    and any(indent[toks[o].line] == here for o in stack[:-1])):
                while budget > 0 and stack and indent[toks[stack[-1]].line] > here:
                    o = stack.pop()
                    budget -= 1
                    at = next((m for m in range(o + 1, idx) if first[m] and toks[m].line > toks[o].line
                               and indent[toks[m].line] <= indent[toks[o].line]), idx)
                    last = toks[at - 1]
                    inserts.append((at, Token.new_borrow_pos("RBRACE", "}", last)))
                    opener = toks[o]
                    diags.append(Diagnostic(
                        f"missing '}}': the '{{' on line {opener.line} is not closed",
                        Span(file, last.end_line, last.end_column, last.end_line, last.end_column + 1),
                        f"add '}}' here: the next line is indented like line {opener.line}, which opened "
                        "the block"))
            if stack:
                stack.pop()
    out = list(toks)
    for at, tok in sorted(inserts, key=lambda p: p[0], reverse=True):
        out.insert(at, tok)
    return out, diags


def recover(lark: Lark, text: str, file: str, comments: list,
            describe: Callable[[UnexpectedInput, str], Diagnostic]) -> Recovered:
    """Parse `text` reporting every syntax error (see the module's docstring)."""
    toks, lex_errors = lex_all(lark, text, file, comments, describe)
    kept = list(comments)
    result = _Driver(lark, toks, file, text, describe).run()
    if result.diagnostics:
        fixed, brace_errors = close_by_indent(toks, file)
        if brace_errors:
            result = _Driver(lark, fixed, file, text, describe).run()
            result.diagnostics = brace_errors + result.diagnostics
    comments[:] = kept
    result.diagnostics = lex_errors + result.diagnostics
    return result
