"""The spec language: two surfaces (.arch text, YAML), one AST.

    >>> from strata.dsl import load_text
    >>> load_text("model m { d = 8 }", "m.arch").models[0].name
    'm'
"""

from __future__ import annotations

from pathlib import Path

from strata.dsl.ast import SpecFile
from strata.errors import Diagnostic, Span, SpecError, UsageError

YAML_SUFFIXES = (".yaml", ".yml")


def load_text(text: str, file: str = "<string>") -> SpecFile:
    """Parse spec text; the surface is chosen by the file's suffix (.yaml/.yml or text)."""
    if file.endswith(YAML_SUFFIXES):
        from strata.dsl.yaml_loader import parse_yaml

        return parse_yaml(text, file)
    from strata.dsl.parser import parse

    return parse(text, file)


def read_source(path: str | Path) -> str:
    """A spec file's text; a missing or unreadable file is a usage error."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a spec file") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise SpecError([Diagnostic(f"the file is not UTF-8 text (byte {e.start})",
                                    Span(str(path), line, col), "save the spec as UTF-8")]) from None


def load_file(path: str | Path) -> SpecFile:
    """Read and parse one spec file (imports are resolved later, by the compiler)."""
    return load_text(read_source(path), str(path))
