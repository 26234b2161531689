r"""Rewrite a spec file in a surface (`strata convert`, `strata fmt`), keeping
every comment or writing nothing.

    >>> print(rewrite("model m { d = 8 }\n", "m.arch", "yaml"), end="")
    models:
      m:
        vars: {d: 8}
    >>> rewrite("model m { d = 8 }\n# the end\n", "m.arch", "yaml")
    Traceback (most recent call last):
    ...
    strata.errors.SpecError: m.arch:2:1: error: convert would drop this comment
        2 | # the end
          | ^
    hint: move it above a statement of its own block
"""

from __future__ import annotations

from strata.dsl import YAML_SUFFIXES, load_text
from strata.dsl.ast import SpecFile
from strata.dsl.formatter import format_spec, unkept_comments
from strata.errors import Diagnostic, SpecError

__all__ = ["rewrite", "surface_of", "surface_text"]


def surface_of(path: str) -> str:
    """The surface a file name says: `yaml` for .yaml / .yml, else `arch`."""
    return "yaml" if str(path).endswith(YAML_SUFFIXES) else "arch"


def surface_text(spec: SpecFile, surface: str) -> str:
    """The canonical text of `spec` in `surface` (arch | yaml)."""
    from strata.dsl.yaml_writer import to_yaml  # lazy: startup

    return to_yaml(spec) if surface == "yaml" else format_spec(spec)


def _unkept_comments(source: str, spec: SpecFile, path: str) -> list:
    """Comments the AST does not hold (YAML `#` comments; .arch comments after the
    last statement of a block): a rewrite would drop them."""
    from strata.dsl.yaml_nodes import yaml_comments  # lazy: startup

    if surface_of(path) == "yaml":
        return yaml_comments(source, path)
    return unkept_comments(source, spec, path)


def rewrite(source: str, path: str, to: str | None = None, command: str = "convert",
            change=None) -> str:
    """`source` (the text of `path`) in surface `to` (default: the file's own), or a
    located SpecError when that would drop a comment or the spec has mistakes.
    `change`: SpecFile -> SpecFile before writing (convert -o: paths moved)."""
    spec = load_text(source, path)  # a file with mistakes raises here
    text = surface_text(change(spec) if change else spec, to or surface_of(path))
    if text != source and (lost := _unkept_comments(source, spec, path)):
        hint = ("move it under a 'comment:' key of its statement" if surface_of(path) == "yaml"
                else "move it above a statement of its own block")
        raise SpecError([Diagnostic(f"{command} would drop this comment", lost[0], hint)], {path: source})
    return text
