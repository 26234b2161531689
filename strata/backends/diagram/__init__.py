"""`strata.diagram`: draw a spec as Mermaid or Graphviz, from Python or a notebook.

    >>> d = diagram('''
    ... model m { stack s(ids) { embedding(10, 4) as wte; lm_head(tie=wte) } }''', level="model")
    >>> d.source.splitlines()[7]
    'flowchart TB'
    >>> d._repr_markdown_().startswith("```mermaid")
    True

Never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from strata.errors import UsageError
from strata.io import write_atomic

FORMATS = ("mermaid", "markdown", "dot", "svg", "png")
SUFFIX_FORMAT = {".mmd": "mermaid", ".mermaid": "mermaid", ".md": "markdown", ".gv": "dot",
                 ".dot": "dot", ".svg": "svg", ".png": "png"}


@dataclass(frozen=True)
class Diagram:
    """A rendered diagram: `.source` is Mermaid or dot text; `.save(path)` writes
    it (svg/png through the `dot` binary); notebooks display it."""

    source: str
    format: str
    level: str
    name: str

    @property
    def syntax(self) -> str:
        return "mermaid" if self.format in ("mermaid", "markdown") else "dot"

    def markdown(self) -> str:
        if self.syntax != "mermaid":
            return f"```dot\n{self.source}```\n"
        return f"```mermaid\n{self.source}```\n"

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def _repr_svg_(self) -> str | None:
        if self.syntax != "dot":
            return None  # Mermaid is shown through _repr_markdown_ (Jupyter renders it)
        from strata.backends.diagram.graphviz import DotFailed, DotMissing, render_bytes  # lazy: startup

        try:
            return render_bytes(self.source, "svg").decode()
        except (DotMissing, DotFailed):  # the markdown (dot source) is shown instead
            return None

    def render(self, fmt: str | None = None) -> bytes:
        """The bytes of this diagram as `fmt` (mermaid, markdown, dot, svg, png)."""
        fmt = fmt or self.format
        if fmt == "markdown":
            return self.markdown().encode()
        if fmt in ("mermaid", "dot"):
            return self.source.encode()
        if self.syntax != "dot":
            raise UsageError(f"{fmt} output is drawn by Graphviz: use format='dot' (or --format "
                             f"{fmt}), not {self.format}")
        from strata.backends.diagram.graphviz import render_bytes  # lazy: startup

        return render_bytes(self.source, fmt)

    def save(self, path: str | Path) -> Path:
        """Write atomically (a temporary file in the same folder, then rename)."""
        path = Path(path)
        fmt = self.format
        if fmt in ("dot", "svg", "png") and path.suffix in (".svg", ".png", ".gv", ".dot"):
            fmt = SUFFIX_FORMAT[path.suffix]
        write_atomic(path, self.render(fmt))
        return path


def diagram(spec, *, format: str = "mermaid", level: str = "block", direction: str = "TB",
            unfold: bool = False, after_passes: bool = False, model: str | None = None) -> Diagram:
    """Draw `spec` (a path, spec text, or a built IR graph).

    format: mermaid | markdown | dot | svg | png (svg/png are dot rendered by Graphviz)
    level: model | block | op;  direction: TB | LR;  unfold: draw every repeat instance;
    after_passes: apply the spec's passes first (fused, quantized, low-rank ... marks)."""
    import strata.backends.diagram.graphviz as gv  # lazy: startup
    import strata.backends.diagram.mermaid as mm  # lazy: startup
    from strata.backends.diagram.layout import DIRECTIONS, LEVELS  # lazy: startup
    from strata.compiler import as_graph  # lazy: startup

    if format not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if level not in LEVELS:
        raise UsageError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if direction not in DIRECTIONS:
        raise UsageError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    g = as_graph(spec, model=model)
    if after_passes:
        from strata.passes import apply_passes  # spec mistakes raise SpecError  # lazy: startup

        g = apply_passes(g)
    if format in ("mermaid", "markdown"):
        src = mm.to_mermaid(g, level, direction=direction, unfold=unfold)
    else:
        src = gv.to_dot(g, level, direction=direction, unfold=unfold)
    return Diagram(src, format, level, g.graph.name)
