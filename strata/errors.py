"""Located diagnostics: every spec mistake becomes `FILE:LINE:COL: error: ...`.

A `Span` points into a source file (1-based line and column, both surfaces).
A `Diagnostic` is one message at one span; `SpecError` carries every
diagnostic found in one run so independent mistakes are all reported.

>>> d = Diagnostic("unknown component 'atention'", Span("a.arch", 1, 5, 1, 13),
...                hint="did you mean 'attention'?")
>>> print(render(d, source="    atention(heads)"))
a.arch:1:5: error: unknown component 'atention'
    1 |     atention(heads)
      |     ^~~~~~~~
hint: did you mean 'attention'?
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Iterable

# The command line's exit codes, by kind of mistake: a spec's (SpecError, and a
# training run stopped by TrainingError), a usage error (UsageError), a bug.
EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


@dataclass(frozen=True)
class Span:
    file: str
    line: int
    col: int
    end_line: int | None = None
    end_col: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Span | None = None
    hint: str | None = None
    severity: str = "error"


@dataclass
class SpecError(Exception):
    """One or more located mistakes in a spec (exit code 1)."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return "\n".join(render(d, self.sources.get(d.span.file) if d.span else None)
                         for d in self.diagnostics)


class EvalError(Exception):
    """One located mistake found while evaluating or elaborating a spec; the
    compiler collects these into a SpecError."""

    def __init__(self, message: str, span, hint: str | None = None):
        super().__init__(message)
        self.message, self.span, self.hint = message, span, hint


def format_shape(shape: tuple | None) -> str:
    """`[B, T, 768]` (a tensor shape as messages and tables show it)."""
    return "[" + ", ".join(str(d) for d in shape) + "]" if shape is not None else "-"


class UsageError(Exception):
    """The command line itself is wrong (exit code 2): missing file, bad flag value."""


class WriteError(UsageError):
    """A file could not be written — a full disk, a quota, the file-size limit, a
    folder without write permission (exit code 2) — `strerror` saying why.  A
    training run reports it as its files not written, naming the checkpoint kept;
    any other UsageError keeps its own message."""

    def __init__(self, message: str, strerror: str | None = None):
        super().__init__(message)
        self.strerror = strerror


class TrainingError(Exception):
    """A training run stopped on its own account (exit code 1): the loss went NaN,
    a resumed run does not fit its checkpoint.  The message says what is kept."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest candidate, or None when nothing is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


# The most columns of a source line an error shows (a window around the caret).
MAX_SHOWN = 160


def render(d: Diagnostic, source: str | None = None) -> str:
    """The compiler-style text of one diagnostic: location, message, line, caret, hint."""
    where = f"{d.span}: " if d.span else ""
    # one line each: a string from the spec quoted in the message (distill("x\nstrata: error: ..."))
    # cannot start a line of its own, a fake error or a fake `ok`
    out = [visible(f"{where}{d.severity}: {d.message}").replace("\n", "\\n")]
    if d.span and source is not None:
        lines = source_lines(source, d.span.file)
        if 1 <= d.span.line <= len(lines):
            line = lines[d.span.line - 1].expandtabs(1)
            col, shift = d.span.col, 0
            if len(line) > MAX_SHOWN:  # a window around the column, not a megabyte of text
                shift = max(0, min(col - 1 - MAX_SHOWN // 2, len(line) - MAX_SHOWN))
                line = line[shift:shift + MAX_SHOWN]
                col -= shift
            # one character for one, so the caret stays under its column
            text = "".join(c if c.isprintable() else "\ufffd" for c in line)
            gutter = f"{d.span.line:>5} | "
            out.append(gutter + text)
            width = 1
            if d.span.end_line == d.span.line and d.span.end_col and d.span.end_col > d.span.col:
                width = d.span.end_col - d.span.col
            width = max(1, min(width, len(text) - col + 1))
            out.append(" " * (len(gutter) - 2) + "| " + " " * (col - 1) + "^" + "~" * (width - 1))
    if d.hint:
        out.append(visible(f"hint: {d.hint}").replace("\n", "\\n"))
    return "\n".join(out)


def visible(text: str) -> str:
    r"""`text` with control and format characters escaped (`\x1b`, `\u202e`): a
    hostile name or string in a message must not drive the user's terminal.

        >>> print(visible("a[2Jb"))
        a\x1b[2Jb
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\n" else ascii(c)[1:-1] for c in text)


# What ends a line for each surface (after CR LF and CR became LF): the .arch
# grammar counts only LF; YAML also counts NEL, LINE and PARAGRAPH SEPARATOR.
# str.splitlines would also split at form feeds and the like, showing the
# wrong line.
_YAML_BREAKS = re.compile("\n|\x85|\u2028|\u2029")


def source_lines(source: str, file: str = "") -> list[str]:
    """The lines of `source` as the parser of `file`'s surface numbers them."""
    source = source.removeprefix("\ufeff")
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    if file.endswith((".yaml", ".yml")):
        return _YAML_BREAKS.split(source)
    return source.split("\n")


class Collector:
    """Gathers diagnostics while a stage keeps going, dropping exact repeats
    (a mistake inside a block repeated 80 times is reported once)."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self._seen: set[tuple] = set()

    def error(self, message: str, span: Span | None, hint: str | None = None) -> None:
        key = (message, span)
        if key not in self._seen:
            self._seen.add(key)
            self.items.append(Diagnostic(message, span, hint))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, sources: dict[str, str] | None = None) -> None:
        if self.items:
            # In source order, as a reader goes through the file.
            ordered = sorted(self.items, key=lambda d: (d.span is None, d.span.file if d.span else "",
                                                        d.span.line if d.span else 0,
                                                        d.span.col if d.span else 0))
            raise SpecError(ordered, dict(sources or {}))
