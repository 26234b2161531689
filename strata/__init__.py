"""strata: a declarative model-assembly language and compiler for transformer LMs.

    >>> import strata
    >>> g = strata.build("specs/gpt2.arch")
    >>> g.graph.parameters
    124439808

The public API — `load`, `build`, `check`, `summary`, `convert`, `fmt`,
`compile`, `compress`, `generate_source`, `diagram`, `import_hf`, `export`, `train`,
`open_model` — is what the
command line calls; it is imported lazily: `import strata` is cheap and never
imports torch; `strata.compile` and `strata.train` do.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "build", "check", "summary", "convert", "fmt", "compile", "compress",
           "generate_source", "diagram", "import_hf", "export", "train", "open_model", "SpecError"]

from strata.errors import SpecError  # noqa: E402
from strata.io import is_spec_path
from strata.plugins import PASSES as _PASSES  # noqa: E402


def _load_passes() -> None:
    import strata.passes  # noqa: F401 - registers every pass in strata.plugins.PASSES  # lazy: startup


# The dsl and the compiler read the pass table; the passes fill it (strata/plugins.py).
_PASSES.add_loader(_load_passes)


def load(path: str):
    """Parse one spec file (either surface) into its AST (`strata.dsl.ast.SpecFile`)."""
    from strata.dsl import load_file  # lazy: startup

    return load_file(path)


def build(spec: Any, *, model: str | None = None, need_teacher: bool = True):
    """The graph IR (a networkx MultiDiGraph) of a spec path, spec text, or parsed SpecFile.
    need_teacher=False: a `distill(...)` teacher spec that is gone is no mistake
    (for a model compiled or used, not trained)."""
    from strata.compiler import as_graph  # lazy: startup

    return as_graph(spec, model=model, need_teacher=need_teacher)


def check(spec: Any, *, model: str | None = None) -> dict:
    """Check a spec (path or text) and report every mistake (SpecError), those
    its passes find when they run on the graph too (as `summary` reports them);
    return its name and parameter count.  The fast path: no torch, and no
    networkx unless the spec has passes.

        >>> check("specs/gpt2.arch")
        {'name': 'gpt2', 'parameters': 124439808}
    """
    from strata.compiler import build_file, build_text  # lazy: startup

    build_one = build_file if is_spec_path(spec) else build_text
    g = build_one(spec, model=model, networkx=False, run_passes=True)
    return {"name": g.graph.name, "parameters": g.graph.parameters}


def summary(spec: Any, *, model: str | None = None) -> dict:
    """Modules, kinds, shapes, parameters, FLOPs and memory of a spec after its
    passes, as data (what `strata summary --json` prints)."""
    from strata.compiler.summary import summary_dict  # lazy: startup
    from strata.passes import apply_passes, report  # lazy: startup

    g = apply_passes(build(spec, model=model))  # the model as compiled
    return summary_dict(g, report(g))


def convert(path: str, to: str | None = None, out: str | None = None) -> str:
    """The spec file at `path` in the other surface (or `to`: arch | yaml), every
    comment kept (a SpecError names one that could not be).  `out`: the file it
    will be written to; relative paths in it (imports, train data, distill's
    files) are rewritten to mean the same from there."""
    from strata.dsl import read_source  # lazy: startup
    from strata.dsl.rewrite import rewrite, surface_of  # lazy: startup

    to = to or ("arch" if surface_of(path) == "yaml" else "yaml")
    moved = None
    if out is not None:
        from strata.compiler.paths import moved_spec  # lazy: startup

        moved = lambda spec: moved_spec(spec, path, out)  # noqa: E731
    return rewrite(read_source(path), path, to, "convert", moved)


def fmt(path: str) -> str:
    """The spec file at `path` in canonical form (same surface, comments kept)."""
    from strata.dsl import read_source  # lazy: startup
    from strata.dsl.rewrite import rewrite  # lazy: startup

    return rewrite(read_source(path), path, None, "fmt")


def __getattr__(name: str):
    # These pull in torch, renderers or the importer: import them on first use.
    if name in ("compile", "compress", "generate_source", "export"):
        import strata.api  # lazy: startup

        return getattr(strata.api, name)
    if name == "open_model":  # a run folder, a compress output, or a spec with weights -> Run
        from strata.train.run import open_source  # lazy: torch

        return open_source
    if name == "diagram":
        from strata.backends.diagram import diagram  # lazy: startup

        return diagram
    if name == "import_hf":
        from strata.interop import import_hf  # lazy: startup

        return import_hf
    if name == "train":  # the package strata.train, callable: strata.train(spec, steps=100)
        import strata.train  # lazy: torch

        return strata.train
    raise AttributeError(f"module 'strata' has no attribute {name!r}")
