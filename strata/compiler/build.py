"""Build the IR of a spec: resolve imports and `extends`, elaborate the model
into graph ops, check its passes and train sections.  Never imports torch.

    >>> g = build_text('''
    ... model tiny {
    ...   stack decoder(tokens) { embedding(10, 4) as wte; layernorm; lm_head(tie=wte) }
    ... }''')
    >>> g.graph["parameters"]
    48
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from strata.compiler.elaborate import elaborate
from strata.compiler.ir import to_networkx
from strata.compiler.resolve import resolve_model
from strata.compiler.sections import check_passes, check_train
from strata.dsl import ast as A
from strata.dsl import clean_text, load_text, read_source
from strata.errors import Collector, Span, SpecError

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["as_graph", "build", "build_file", "build_text"]


def build(spec: A.SpecFile, *, model: str | None = None, sources: dict[str, str] | None = None,
          networkx: bool = True) -> "nx.MultiDiGraph":
    """Build the IR of one model of a parsed spec (imports resolved from its path).

    networkx=False returns the builder's plain-dict graph (`ir.Staging`, same
    `graph` data and nodes): enough for `strata check`, without importing networkx."""
    sources = dict(sources or {})
    errors = Collector()
    try:
        resolved = resolve_model(spec, sources, model, errors)
        g = elaborate(resolved, errors)
        g.graph["file"] = spec.path or "<string>"  # the root: paths in the spec are relative to it
        check_passes(resolved.passes, g, errors, resolved.models)
        check_train(resolved.train, g, errors)
    except RecursionError:
        errors.error("the spec is nested too deeply to build", Span(spec.path or "<string>", 1, 1),
                     "split deeply nested expressions or blocks")
    errors.raise_if_any(sources)
    return to_networkx(g) if networkx else g


def build_text(text: str, file: str = "<string>", *, model: str | None = None,
               networkx: bool = True) -> "nx.MultiDiGraph":
    try:
        text = clean_text(text, file)  # the sources errors are shown from: as parsed
        spec = load_text(text, file)
    except SpecError as e:
        e.sources.setdefault(file, text)
        raise
    return build(spec, model=model, sources={file: text}, networkx=networkx)


def build_file(path: str | Path, *, model: str | None = None, networkx: bool = True) -> "nx.MultiDiGraph":
    """Read, parse and build a spec file; raise SpecError with every mistake found."""
    text = read_source(path)
    return build_text(text, str(path), model=model, networkx=networkx)


def as_graph(spec, *, model: str | None = None) -> "nx.MultiDiGraph":
    """The IR of `spec`: a path (str or Path, told apart from text by
    `strata.io.is_spec_path`), spec text, a parsed SpecFile, or an IR graph
    (returned as it is)."""
    from strata.io import is_spec_path

    if isinstance(spec, A.SpecFile):
        return build(spec, model=model)
    if is_spec_path(spec):
        return build_file(spec, model=model)
    if isinstance(spec, str):
        return build_text(spec, model=model)
    if hasattr(spec, "graph") and hasattr(spec, "nodes"):  # already a graph
        return spec
    raise TypeError(f"expected a spec path, spec text or IR graph, got {type(spec).__name__}")
