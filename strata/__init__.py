"""strata: a declarative model-assembly language and compiler for transformer LMs.

    >>> import strata
    >>> g = strata.build("specs/gpt2.arch")
    >>> g.graph["parameters"]
    124439808

The public API — `load`, `build`, `compile`, `diagram` — is imported lazily:
`import strata` is cheap and never imports torch; `strata.compile` does.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "build", "compile", "diagram", "SpecError"]

from strata.errors import SpecError  # noqa: E402


def load(path: str):
    """Parse one spec file (either surface) into its AST (`strata.dsl.ast.SpecFile`)."""
    from strata.dsl import load_file

    return load_file(path)


def build(spec: Any, *, model: str | None = None):
    """The graph IR (a networkx MultiDiGraph) of a spec path, spec text, or parsed SpecFile."""
    from strata.compiler import as_graph

    return as_graph(spec, model=model)


def __getattr__(name: str):
    # compile and diagram pull in torch / renderers: import them on first use.
    if name == "compile":
        from strata.api import compile

        return compile
    if name == "diagram":
        from strata.backends.diagram import diagram

        return diagram
    raise AttributeError(f"module 'strata' has no attribute {name!r}")
