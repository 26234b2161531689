"""Spec text as both surfaces read it (the parser, the YAML loader, the editor):
one module below them, so each reads it without importing the package that
loads them both."""

from __future__ import annotations

from strata.errors import Diagnostic, Span, SpecError

__all__ = ["clean_text"]


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
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        line = text.count("\n", 0, e.start) + 1
        col = e.start - (text.rfind("\n", 0, e.start) + 1) + 1
        raise SpecError([Diagnostic(f"the text holds a lone surrogate {text[e.start]!r}, which "
                                    "no UTF-8 file can", Span(file, line, col),
                                    "pass text decoded from UTF-8")]) from None
    return text
