"""How a syntax error of the .arch text reads: lark's exception turned into a
located diagnostic with words a person knows ("expected ')' or ','") and a
hint where the mistake has a usual cause.

    >>> from strata.dsl.parser import parse
    >>> from strata.errors import SpecError
    >>> try:
    ...     parse("model m { d = }", "m.arch")
    ... except SpecError as e:
    ...     print(e.diagnostics[0].message)
    unexpected '}'
"""

from __future__ import annotations

import re

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from strata.errors import Diagnostic, Span

# How lark's token names read in an error message.
TOKEN_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "LBRACE": "'{'",
    "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "COMMA": "','", "EQUAL": "'='",
    "SEMICOLON": "';'", "DOT": "'.'", "ADD_OP": "'+' or '-'", "MUL_OP": "'*', '/', '//' or '%'",
    "POW": "'**'", "COMP_OP": "a comparison", "$END": "the end of the file",
}


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "the end of the file"
    return f"'{tok}'"


def _expected_words(expected) -> str:
    words = sorted({TOKEN_WORDS.get(e, f"'{e.lower()}'" if e.isupper() and len(e) < 9 else e)
                    for e in expected if not e.startswith("__")})
    if len(words) > 6:
        return ""
    return " or ".join(words) if len(words) <= 2 else ", ".join(words[:-1]) + " or " + words[-1]


def syntax_error(e: UnexpectedInput, file: str, text: str) -> Diagnostic:
    line, col = getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "?"
        hint = None
        if ch == "'" or ch == '"':
            hint = "close the string on the same line"
        elif ch == ":" and text[e.pos_in_stream - 1:e.pos_in_stream].isdigit():
            ratio = re.match(r"[0-9]*:[0-9]+", text[e.pos_in_stream - 1:])  # 2:4, as in method=2:4
            start = e.pos_in_stream - len(re.search(r"[0-9]*$", text[:e.pos_in_stream]).group())
            word = text[start:e.pos_in_stream] + (ratio.group()[1:] if ratio else "")
            hint = f'a word with \':\' in it is a string: write "{word}"'
        return Diagnostic(f"unexpected character {ch!r}", Span(file, line, col, line, col + 1), hint)
    if isinstance(e, UnexpectedEOF):
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
        return Diagnostic("unexpected end of file", Span(file, line, col),
                          "a '{' or '(' is not closed" if text.count("{") > text.count("}")
                          or text.count("(") > text.count(")") else None)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    want = _expected_words(e.expected)
    msg = "unexpected end of file" if tok.type == "$END" else f"unexpected {_describe_token(tok)}"
    if want:
        msg += f"; expected {want}"
    hint = None
    if tok.type == "$END":
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
        hint = "a '{' is not closed" if text.count("{") > text.count("}") else None
    elif str(tok) in ("=",) and "EQUAL" not in e.expected:
        hint = "options are written name=value inside the parentheses of a component"
    elif tok.type == "NAME" and "RPAR" in e.expected and "COMMA" in e.expected:
        hint = "separate arguments with ','"
    elif tok.type == "RBRACE" and text.count("{") < text.count("}"):
        hint = "this '}' closes nothing"
    end = getattr(tok, "end_column", None)
    return Diagnostic(msg, Span(file, line, col, line, end), hint)
