"""The spec language: two surfaces (.arch text, YAML), one AST.

    >>> from strata.dsl import load_text
    >>> load_text("model m { d = 8 }", "m.arch").models[0].name
    'm'
"""

from __future__ import annotations

from pathlib import Path

from strata.dsl.ast import SpecFile
from strata.dsl.clean import MAX_SPEC_BYTES, clean_text
from strata.errors import Diagnostic, Span, SpecError
from strata.io import read_regular

YAML_SUFFIXES = (".yaml", ".yml")


def load_text(text: str, file: str = "<string>") -> SpecFile:
    """Parse spec text; the surface is chosen by the file's suffix (.yaml/.yml or text)."""
    text = clean_text(text, file)
    if file.endswith(YAML_SUFFIXES):
        from strata.dsl.yaml_loader import parse_yaml  # lazy: startup

        return parse_yaml(text, file)
    from strata.dsl.parser import parse  # lazy: startup

    return parse(text, file)


def load_text_recovering(text: str, file: str = "<string>") -> tuple[SpecFile | None, list[Diagnostic]]:
    """Parse spec text reporting every syntax error: (the AST of what parses, or
    None; the diagnostics).  The YAML surface reports its mistakes together
    already; the text surface recovers after each (`strata.dsl.recovery`).

        >>> spec, diags = load_text_recovering("model m { d = }\\nmodel n { e = 1 }", "m.arch")
        >>> [m.name for m in spec.models], [d.message for d in diags]
        (['m', 'n'], ["unexpected '}'"])
    """
    try:
        text = clean_text(text, file)
    except SpecError as e:  # text no spec can be (too long, a lone surrogate): nothing parsed
        return None, list(e.diagnostics)
    if file.endswith(YAML_SUFFIXES):
        from strata.dsl.yaml_loader import parse_yaml  # lazy: startup

        try:
            return parse_yaml(text, file), []
        except SpecError as e:
            return None, list(e.diagnostics)
    from strata.dsl.parser import parse_recovering  # lazy: startup

    return parse_recovering(text, file)


def read_source(path: str | Path) -> str:
    """A spec file's text (see `clean_text`); a missing or unreadable file, or one
    that is not a regular file of at most `strata.dsl.clean.MAX_SPEC_BYTES`, is a usage error."""
    data = read_regular(path, MAX_SPEC_BYTES, what="spec file")
    try:
        return clean_text(data.decode("utf-8"), str(path))
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise SpecError([Diagnostic(f"the file is not UTF-8 text (byte {e.start})",
                                    Span(str(path), line, col), "save the spec as UTF-8")]) from None


def load_file(path: str | Path) -> SpecFile:
    """Read and parse one spec file (imports are resolved later, by the compiler)."""
    return load_text(read_source(path), str(path))
