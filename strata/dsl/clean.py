"""Spec text as both surfaces read it (the parser, the YAML loader, the editor):
one module below them, so each reads it without importing the package that
loads them both."""

from __future__ import annotations

from strata.errors import Diagnostic, Span, SpecError

__all__ = ["MAX_SPEC_BYTES", "MAX_TOKENS", "clean_text", "too_many_tokens"]

# The UTF-8 bytes of one spec text, either surface, from a file or an editor.  Real
# specs are 1-2 KB; YAML is scanned at ~2 MB/s, so 1 MiB is read in under 0.5 s.
MAX_SPEC_BYTES = 1 << 20

# The tokens of one spec file, either surface (in YAML: its values and the words
# and symbols in them).  Reading costs 15-30 us a token, every later stage more:
# 50,000 is 0.5-1.5 s, where a real spec has a few hundred (t5_small: 334).  The
# bound is met while lexing, before the parse spends anything on the rest.
MAX_TOKENS = 50_000


def too_many_tokens(where: Span) -> Diagnostic:
    """The located error for the first token past MAX_TOKENS."""
    return Diagnostic(f"the spec has more than {MAX_TOKENS:,} tokens", where,
                      "a model's spec is a few hundred: write a repeated layer once in "
                      "`repeat(n)`, and long lists of values as expressions")


def clean_text(text: str, file: str = "<string>") -> str:
    r"""Spec text as both surfaces read it: a leading UTF-8 byte order mark dropped
    (as YAML does), CR LF and lone CR line endings made LF (so line numbers and
    comments end where an editor shows them).  A lone surrogate (only Python
    callers can pass one) is a located error: no file can hold it.

        >>> clean_text("\ufeffmodel m {}\r\r")
        'model m {}\n\n'
    """
    text = text.removeprefix("\ufeff")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise SpecError([Diagnostic(f"the text holds a lone surrogate {text[e.start]!r}, which "
                                    "no UTF-8 file can", _span(text, e.start, file),
                                    "pass text decoded from UTF-8")]) from None
    if len(data) > MAX_SPEC_BYTES:  # where the limit falls, in characters
        at = len(data[:MAX_SPEC_BYTES].decode("utf-8", "ignore"))
        raise SpecError([Diagnostic(f"the spec is {len(data):,} bytes, more than {MAX_SPEC_BYTES:,}",
                                    _span(text, at, file),
                                    "a model's spec is a few KB: move long notes out of it")],
                        {file: text}) from None
    return text


def _span(text: str, at: int, file: str) -> Span:
    line = text.count("\n", 0, at) + 1
    return Span(file, line, at - (text.rfind("\n", 0, at) + 1) + 1)
