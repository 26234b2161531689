"""Build the IR of a spec: resolve imports and `extends`, elaborate the model
into graph ops, check its passes and train sections.  Never imports torch.

    >>> g = build_text('''
    ... model tiny {
    ...   stack decoder(tokens) { embedding(10, 4) as wte; layernorm; lm_head(tie=wte) }
    ... }''')
    >>> g.graph.parameters
    48
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import strata.plugins as plugins
from strata.compiler.elaborate import elaborate
from strata.compiler.repeat_copy import FoldCache
from strata.compiler.ir import to_networkx
from strata.compiler.resolve import resolve_model
from strata.compiler.sections import check_passes, check_train
from strata.dsl import ast as A
from strata.dsl import clean_text, load_text_recovering, read_source
from strata.errors import Collector, Diagnostic, Span, SpecError
from strata.io import is_spec_path

if TYPE_CHECKING:
    import networkx as nx

# The checker's findings that a syntax error explains by itself: recovery dropped
# the definition (a model or stack with a mistake in its first line).
ABSENT = ("the file defines no model", "model '")

__all__ = ["Analysis", "analyze_text", "as_graph", "build", "build_file", "build_text"]


def _build(spec: A.SpecFile, model: str | None, sources: dict[str, str],
           open_texts: Mapping[str, str] | None = None, cache: FoldCache | None = None, within=None,
           need_teacher: bool = True):
    """(the plain-dict graph, or None where the model could not be elaborated;
    every mistake found)."""
    errors = Collector()
    g = None
    try:
        resolved = resolve_model(spec, sources, model, errors, open_texts, within)
        g = elaborate(resolved, errors, cache)
        g.graph.file = spec.path or "<string>"  # the root: paths in the spec are relative to it
        check_passes(resolved.passes, g, errors, resolved.models, need_teacher, within)
        check_train(resolved.train, g, errors)
    except RecursionError:
        errors.error("the spec is nested too deeply to build", Span(spec.path or "<string>", 1, 1),
                     "split deeply nested expressions or blocks")
    return g, errors


def build(spec: A.SpecFile, *, model: str | None = None, sources: dict[str, str] | None = None,
          networkx: bool = True, need_teacher: bool = True) -> "nx.MultiDiGraph":
    """Build the IR of one model of a parsed spec (imports resolved from its path).

    networkx=False returns the builder's plain-dict graph (`ir.Staging`, same
    `graph` data and nodes): enough for `strata check`, without importing networkx.
    need_teacher=False: a `distill(...)` teacher spec file that is gone is no
    mistake (the model is built to be used — evaluated, compressed, exported —
    not trained: eval, generate, compress, export and compile build so)."""
    sources = dict(sources or {})
    g, errors = _build(spec, model, sources, need_teacher=need_teacher)
    errors.raise_if_any(sources)
    return to_networkx(g) if networkx else g


@dataclass
class Analysis:
    """What the checker knows of one spec text, mistakes or not (the language
    server's view): the AST of what parses, the graph where the model could be
    built (partial when it has mistakes), and every diagnostic in source order;
    `refused`: those of them the spec's passes gave (run_passes), about a model
    that is itself whole."""

    spec: A.SpecFile | None
    graph: object | None                  # ir.Staging: plain dicts, no networkx
    diagnostics: list[Diagnostic]
    sources: dict[str, str] = field(default_factory=dict)
    refused: list[Diagnostic] = field(default_factory=list)


def analyze_text(text: str, file: str = "<string>", *, model: str | None = None,
                 open_texts: Mapping[str, str] | None = None, cache: FoldCache | None = None,
                 within: Path | None = None, run_passes: bool = False,
                 pass_budget: int | None = None, need_teacher: bool = True) -> Analysis:
    """Check spec text and keep going past its mistakes: syntax errors (every
    one, `strata.dsl.recovery`) and the checker's findings on what parses,
    less those about names that only a dropped statement defined.  Imported
    files whose resolved path is in `open_texts` are read from there (an
    editor's unsaved buffers), the others from disk.  `cache` (one per file,
    kept between calls) lets a repeat's layers come from the last call where
    they are unchanged (`strata.compiler.repeat_copy`); the graphs then share data.
    `within` (a resolved folder): an import that leaves it is an error, never read.
    `run_passes`: where the spec has passes and no other mistake, they also run
    on the graph (graph only, torch-free; strata.passes hands the run down as
    plugins.PASS_CHECK) and what they refuse is reported as `strata summary`
    does (a pass after a calibrated quantize, two quantize passes on the same
    linears): strata check's and the editor's view.  `pass_budget`: the most
    IR nodes x passes they may cost (each pass copies the graph: the editor's
    bound per keystroke); past it they do not run, and a warning at the first
    pass says so.
    `need_teacher`: as `build` takes it.

        >>> a = analyze_text("model m {\\n  d = 8 +\\n  stack s(tokens) { embedding(10, d) }\\n}\\n", "m.arch")
        >>> [(d.span.line, d.message) for d in a.diagnostics]
        [(2, "the line ends after '+'; expected a value")]
    """
    text = clean_text(text, file)  # the sources errors are shown from: as parsed
    sources = {file: text}
    spec, diags = load_text_recovering(text, file)
    g, refused = None, []
    if spec is not None:
        try:
            g, errors = _build(spec, model, sources, open_texts, cache, within, need_teacher)
            found = errors.items
        except SpecError as e:  # a mistake that stops the build (no model, unknown --model)
            sources.update(e.sources)
            found = e.diagnostics
        if diags:  # after a syntax error: not what only the dropped statements would have given
            dropped = [f"'{n}'" for n in spec.dropped]
            found = [d for d in found if not any(n in d.message for n in dropped)
                     and not d.message.startswith(ABSENT)]
        diags = diags + found
        if run_passes and g is not None and g.graph.passes and plugins.PASS_CHECK \
                and not any(d.severity == "error" for d in diags):  # on a graph that is whole
            cost = len(g.nodes) * len(g.graph.passes)
            if pass_budget is not None and cost > pass_budget:
                diags = diags + [_not_run(g, pass_budget)]
            else:
                refused = plugins.PASS_CHECK[0](g)
                diags = diags + refused
    diags.sort(key=lambda d: (d.span is None, d.span.file if d.span else "", d.span.line if d.span else 0,
                              d.span.col if d.span else 0))
    return Analysis(spec, g, diags, sources, refused)


def _not_run(g, budget: int) -> Diagnostic:
    n, k = len(g.nodes), len(g.graph.passes)
    return Diagnostic(f"passes not checked while editing: {n:,} IR nodes x {k} passes is past the bound of "
                      f"{budget:,}", g.graph.passes[0].get("span"),
                      "strata check (or summary) runs them and reports what they refuse", severity="warning")


def build_text(text: str, file: str = "<string>", *, model: str | None = None,
               networkx: bool = True, run_passes: bool = False, need_teacher: bool = True) -> "nx.MultiDiGraph":
    """Parse and build spec text; raise SpecError with every mistake found
    (`run_passes`: those its passes find too, `analyze_text`; `need_teacher`: as
    `build` takes it)."""
    a = analyze_text(text, file, model=model, run_passes=run_passes, need_teacher=need_teacher)
    if a.diagnostics:
        raise SpecError(a.diagnostics, a.sources)
    return to_networkx(a.graph) if networkx else a.graph


def build_file(path: str | Path, *, model: str | None = None, networkx: bool = True,
               run_passes: bool = False, need_teacher: bool = True) -> "nx.MultiDiGraph":
    """Read, parse and build a spec file; raise SpecError with every mistake found."""
    text = read_source(path)
    return build_text(text, str(path), model=model, networkx=networkx, run_passes=run_passes,
                      need_teacher=need_teacher)


def as_graph(spec, *, model: str | None = None, need_teacher: bool = True) -> "nx.MultiDiGraph":
    """The IR of `spec`: a path (str or Path, told apart from text by
    `strata.io.is_spec_path`), spec text, a parsed SpecFile, or an IR graph
    (returned as it is).  `need_teacher`: as `build` takes it."""
    if isinstance(spec, A.SpecFile):
        return build(spec, model=model, need_teacher=need_teacher)
    if is_spec_path(spec):
        return build_file(spec, model=model, need_teacher=need_teacher)
    if isinstance(spec, str):
        return build_text(spec, model=model, need_teacher=need_teacher)
    if hasattr(spec, "graph") and hasattr(spec, "nodes"):  # already a graph
        return spec
    raise TypeError(f"expected a spec path, spec text or IR graph, got {type(spec).__name__}")
