"""Pass selectors: which components (or ops) a pass's `on=` names.

    >>> from strata.compiler import build_text
    >>> g = build_text('''model m { stack s(ids) { embedding(10, 8); attention(2); mlp(16) } }''')
    >>> select(g, "attention"), select(g, "s.m*")
    (['s.attn'], ['s.mlp'])
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["select"]


def select(g: "nx.MultiDiGraph", pattern: str | None) -> list[str]:
    """Component paths matched by a pass selector: a glob over module paths
    (`decoder.h.*.mlp`), or a component kind / category (`attention`, `mlp`)."""
    comps = g.graph.components
    if pattern is None:
        return list(comps)
    out = []
    for path, c in comps.items():
        if pattern in (c["kind"], c["category"]) or fnmatch.fnmatchcase(path, pattern) \
                or fnmatch.fnmatchcase(path + ".x", pattern):
            out.append(path)
    if not out:  # a glob may also name ops inside components (decoder.h.*.attn.q)
        out = [n for n in g.nodes if fnmatch.fnmatchcase(n, pattern)]
    return out
