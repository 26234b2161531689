"""Syntax-error recovery for the .arch parser: every syntax error of a file in
one pass, each at the token that is wrong, and a parse tree of the rest.

The grammar is LALR(1) with no statement separator, so lark stops at the
first token it cannot shift.  This driver lexes the whole file first, feeds
the tokens to lark's parser one by one, and keeps a snapshot of the parser's
stacks at every statement boundary (a token that starts a line, or follows
`;`, `{` or `}`).  On an error it first tries to put one token right (drop
the operator an unfinished line ends with, drop a stray `)`, add a missing
`,`), so the checker sees what was meant; failing that, it drops the fewest
statements that let the parse go on: it restores the latest snapshot from
which the tokens after a later boundary parse past the error.

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
    ([(2, "the line ends after '+'; expected a value")], ['d', 'heads'])
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.parsers.lalr_parser_state import ParserState

from strata.dsl.clean import MAX_TOKENS, too_many_tokens
from strata.errors import Diagnostic, Span

# A line that ends in one of these wants more on the same line.
CONTINUES = {"ADD_OP", "MUL_OP", "POW", "COMP_OP", "EQUAL", "OR", "AND", "NOT", "IF", "ELSE", "DOT"}
# At most this many syntax errors are reported; past them the rest is noise.
MAX_ERRORS = 50
# How far recovery looks: boundaries back (restore points) and forward (resume points).
BACK, FORWARD = 8, 24
# Tokens fed past the error before a recovery counts as good; at most MAX_TRIAL fed.
TRIAL, MAX_TRIAL = 3, 400
# A character no token starts with re-lexes the file from the start: at most this
# many times in a file over LONG characters, and at most LEX_WORK tokens lexed in all
# (49,000 tokens then 50 stray characters would otherwise lex 2.5 million: 9 s).
LONG, LONG_LEX_ERRORS = 1_000_000, 5
LEX_WORK = 4 * MAX_TOKENS


@dataclass
class Recovered:
    tree: object | None                     # lark parse tree, or None when nothing could be read
    diagnostics: list[Diagnostic] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)  # names defined by statements recovery dropped


def lex_all(lark: Lark, text: str, file: str, comments: list,
            describe: Callable[[UnexpectedInput, str], Diagnostic]) -> tuple[list[Token], list[Diagnostic], set[int]]:
    """Every token of `text`; a character no token starts with is reported and
    blanked (a stray quote blanks the rest of its line), and lexing goes on.
    Also returns the offsets blanked.  Lexing stops one token past MAX_TOKENS."""
    diags: list[Diagnostic] = []
    blanked: set[int] = set()
    work = 0
    while True:
        comments.clear()
        toks: list[Token] = []
        try:
            toks.extend(islice(lark.lex(text), MAX_TOKENS + 1))
            return toks, diags, blanked
        except UnexpectedCharacters as e:
            work += len(toks)
            diags.append(describe(e, text))
            pos = e.pos_in_stream
            end = pos + 1
            if text[pos] in "'\"":
                nl = text.find("\n", pos)
                end = len(text) if nl < 0 else nl
            elif text[pos] == ":" and text[pos - 1:pos].isdigit():  # 2:4 meant as "2:4": all of it
                pos -= len(re.search(r"[0-9]*$", text[:pos]).group())
                end += len(re.match(r"[0-9]*", text[end:]).group())
            blanked.add(pos)
            text = text[:pos] + " " * (end - pos) + text[end:]
            if len(diags) >= (MAX_ERRORS if len(text) < LONG else LONG_LEX_ERRORS) or work > LEX_WORK:
                return [], diags, blanked


def _snapshot(ps: ParserState) -> tuple:
    """The parser's stacks, restorable.  lark's tree builder extends the children
    list of a `__x_star` helper tree on the value stack in place (left recursion),
    so their lengths are saved too: restoring cuts them back."""
    kids = [(v, len(v.children)) for v in ps.value_stack
            if isinstance(v, Tree) and str(v.data).startswith("__")]
    return list(ps.state_stack), list(ps.value_stack), kids


class _Driver:
    def __init__(self, lark: Lark, toks: list[Token], file: str, text: str,
                 describe: Callable[[UnexpectedInput, str], Diagnostic], blanked: set[int]):
        self.file, self.text, self.describe, self.blanked = file, text, describe, blanked
        interactive = lark.parse_interactive("")
        self.conf, self.lexer = interactive.parser_state.parse_conf, interactive.parser_state.lexer
        self.set_tokens(toks)

    def set_tokens(self, toks: list[Token]) -> None:
        self.toks = toks
        self.boundary = [i == 0 or t.line != toks[i - 1].end_line or t.type == "RBRACE"
                         or toks[i - 1].type in ("SEMICOLON", "LBRACE", "RBRACE") for i, t in enumerate(toks)]

    def state(self, snap=None) -> ParserState | None:
        """A parser at `snap` (the start when None); None when an earlier restore
        cut a list back past where `snap` had it (it cannot be restored)."""
        if snap is None:
            return ParserState(self.conf, self.lexer)
        if any(len(tree.children) < n for tree, n in snap[2]):
            return None
        for tree, n in snap[2]:
            del tree.children[n:]
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
        if not self.toks:
            return Token("$END", "", 0, 1, 1)
        return Token.new_borrow_pos("$END", "", self.toks[-1])

    def next_boundary(self, i: int) -> int:
        return next((x for x in range(i + 1, len(self.toks)) if self.boundary[x]), len(self.toks))

    def trial(self, snap, toks: list[Token], start: int, stop: int) -> bool:
        """Does the parse go on from `snap` through toks[start:stop] (and the end
        of the file, when they reach it)?  At most MAX_TRIAL tokens are tried: a
        statement that long parsing so far is a good sign (and the bound keeps
        recovery linear on a one-line file of 10^5 tokens)."""
        stop = min(stop, start + MAX_TRIAL, len(toks))
        ps = self.state(snap)
        if ps is None:
            return False
        try:
            for x in range(start, stop):
                self.feed(ps, toks[x])
            if stop >= len(toks):
                self.feed(ps, self.end_token())
        except UnexpectedInput:
            return False
        return True

    def accepts(self, snap, kind: str) -> bool:
        """Would the parser at `snap` take a token of this kind (reductions included)?"""
        if kind not in self.conf.states[snap[0][-1]]:
            return False
        ps = self.state(snap)
        if ps is None:
            return False
        try:
            ps.feed_token(Token(kind, "}" if kind == "RBRACE" else ""), kind == "$END")
        except UnexpectedInput:
            return False
        return True

    def close_at_end(self, snap):
        """The tree from `snap` with every open `{` closed at the end of the file, or None."""
        ps = self.state(snap)
        if ps is None:
            return None
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
        i = 0
        while True:
            if i == len(self.toks):
                snap = _snapshot(ps)
                try:
                    out.tree = self.feed(ps, self.end_token())
                    return out
                except UnexpectedToken as e:
                    out.diagnostics.append(self.located(e, None, i))
                    for j in [None] + order[::-1][:BACK]:
                        out.tree = self.close_at_end(snap if j is None else snaps[j])
                        if out.tree is not None:
                            if j is not None:
                                out.dropped |= self.defined(j, len(self.toks))
                            return out
                    return out
            if self.boundary[i]:
                snaps[i] = _snapshot(ps)
                order.append(i)
            try:
                self.feed(ps, self.toks[i])
                i += 1
                continue
            except UnexpectedToken as e:
                err = e
            j = self.statement_start(i, order, snaps)
            diag = self.located(err, j, i)
            if diag is not None:
                out.diagnostics.append(diag)
            if len(out.diagnostics) >= MAX_ERRORS:
                return out
            repaired = self.repair(err, j, i, snaps) if j is not None else None
            if repaired is not None:  # one token put right: go on from the statement's start
                self.set_tokens(repaired)
                ps = self.state(snaps[j])
                order = [x for x in order if x < j]
                i = j
                continue
            found = self.resume_point(i, order, snaps)
            if found is None:
                return out
            j, k = found
            out.dropped |= self.defined(j, k)
            ps = self.state(snaps[j])
            order = [x for x in order if x < j]
            i = k

    def statement_start(self, i: int, order: list[int], snaps: dict) -> int | None:
        """The latest boundary before the error at i where a statement starts: the
        parser there could also close the body (`}`) or end the file."""
        for x in [x for x in order if x <= i][::-1][:BACK]:
            if self.accepts(snaps[x], "RBRACE") or self.accepts(snaps[x], "$END"):
                return x
        return next((x for x in reversed(order) if x <= i), None)

    def repair(self, err: UnexpectedToken, j: int, i: int, snaps: dict) -> list[Token] | None:
        """The tokens with one token deleted or inserted so that the statement
        from boundary j parses on past the error at i, or None.  Tried: drop the
        operator an unfinished line ends with, drop a stray `)` `}` `,` `;`, add a
        missing `,` between arguments."""
        t = self.toks[i]
        tries: list[tuple[list[Token], int]] = []  # (tokens, where the error token is now)
        m = self.dangling(j, i)
        if m is not None:
            tries.append((self.toks[:m] + self.toks[m + 1:], i - 1))
        if t.type in ("RPAR", "RBRACE", "COMMA", "SEMICOLON"):
            tries.append((self.toks[:i] + self.toks[i + 1:], i))
        if "COMMA" in err.expected and t.type in ("NAME", "NUMBER", "STRING") and i > 0:
            comma = Token.new_borrow_pos("COMMA", ",", self.toks[i - 1])
            tries.append((self.toks[:i] + [comma] + self.toks[i:], i + 1))
        for toks, at in tries:
            # through the end of the error token's statement or line, whichever
            # comes first: a mistake after it is the next error's, not a sign
            # this repair is wrong
            line = toks[at].line if at < len(toks) else None
            upto = next((x for x in range(at + 1, min(len(toks), at + MAX_TRIAL))
                         if toks[x].line != line or toks[x].type == "RBRACE"
                         or toks[x - 1].type in ("SEMICOLON", "LBRACE", "RBRACE")), len(toks))
            if self.trial(snaps[j], toks, j, upto):
                return toks
        return None

    def resume_point(self, i: int, order: list[int], snaps: dict) -> tuple[int, int] | None:
        """(restore, resume): the latest boundary j to go back to and the first
        boundary k > j from which the tokens parse on past the error at i, up to
        the next boundary after it."""
        before = [x for x in order if x <= i][-BACK:]
        after = [x for x in range(i + 1, len(self.toks)) if self.boundary[x]][:FORWARD]
        for j in reversed(before):  # latest first: restores only cut lists back
            for k in [x for x in before if x > j] + after + [len(self.toks)]:
                upto = max(self.next_boundary(max(k, i)), k + 1)
                if k == len(self.toks):
                    if self.close_at_end(snaps[j]) is not None:
                        return j, k
                elif self.trial(snaps[j], self.toks, k, upto):
                    return j, k
        return None

    def dangling(self, j: int, i: int) -> int | None:
        """The operator that ends a line of the statement from j to the error at i,
        outside brackets (`d = 4096 +` read on into the next line), or None."""
        depth = 0
        for m in range(j, min(i, len(self.toks))):
            t, nxt = self.toks[m], self.toks[m + 1]
            depth += (t.type == "LPAR") - (t.type == "RPAR")
            if t.type in CONTINUES and depth <= 0 and nxt.line > t.end_line:
                return m
        return None

    def unclosed_paren(self, j: int, i: int) -> Token | None:
        """A `(` of the statement from j left open on an earlier line than the error at i."""
        opened: list[Token] = []
        for t in self.toks[j:i]:
            if t.type == "LPAR":
                opened.append(t)
            elif t.type == "RPAR" and opened:
                opened.pop()
        at = self.toks[i] if i < len(self.toks) else None
        if opened and (at is None or at.line > opened[-1].line):
            return opened[-1]
        return None

    def located(self, err: UnexpectedToken, j: int | None, i: int) -> Diagnostic | None:
        """The diagnostic for the error at token i (statement from boundary j), where
        the author made the mistake; None when a character lexing dropped explains it."""
        tok = self.toks[i] if i < len(self.toks) else None
        if tok is not None and any(b < tok.start_pos and self.text.rfind("\n", 0, tok.start_pos) < b
                                   for b in self.blanked):
            return None
        if j is not None:
            m = self.dangling(j, i)
            if m is not None:
                t = self.toks[m]
                what = "a name" if t.type == "DOT" else "a value"
                return Diagnostic(f"the line ends after '{t}'; expected {what}",
                                  Span(self.file, t.end_line, t.end_column, t.end_line, t.end_column + 1),
                                  "finish the expression on this line, or put it in ( ) to go on "
                                  "to the next")
            p = self.unclosed_paren(j, i)
            if p is not None:
                return Diagnostic("this '(' is not closed", Span(self.file, p.line, p.column, p.line,
                                                                 p.column + 1),
                                  "add ')' where what it groups ends")
        d = self.describe(err, self.text)
        if tok is None:  # the end of the file: name the innermost '{' left open
            opened: list[Token] = []
            for t in self.toks:
                if t.type == "LBRACE":
                    opened.append(t)
                elif t.type == "RBRACE" and opened:
                    opened.pop()
            if opened:
                d = Diagnostic(d.message, d.span, f"the '{{' on line {opened[-1].line} is not closed")
        return d

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
    toks, lex_errors, blanked = lex_all(lark, text, file, comments, describe)
    if len(toks) > MAX_TOKENS:  # nothing is parsed: a part of the file would be checked as the whole
        t = toks[MAX_TOKENS]
        comments.clear()
        return Recovered(None, lex_errors + [too_many_tokens(Span(file, t.line, t.column))])
    kept = list(comments)
    result = _Driver(lark, toks, file, text, describe, blanked).run()
    if result.diagnostics:
        fixed, brace_errors = close_by_indent(toks, file)
        if brace_errors:
            result = _Driver(lark, fixed, file, text, describe, blanked).run()
            result.diagnostics = brace_errors + result.diagnostics
    comments[:] = kept
    result.diagnostics = lex_errors + result.diagnostics
    return result
