"""Linears grouped by transformer block, for the methods that calibrate block
by block (the backend's stream runs the model one block at a time).

    >>> block_of("decoder.h.3.attn.q"), block_of("decoder.lm_head")
    ('decoder.h.3', 'decoder.lm_head')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["PROBE", "block_of", "blocks", "common_module", "input_of"]

# The key of stream's stats under which a method finds the module-output probe:
# probe(module path, {linear: weight [out, in]}) -> that module's outputs [tokens, d]
# on the captured calibration inputs with those weights (no node is named so).
PROBE = "<module outputs>"


def block_of(name: str) -> str:
    """The block a node belongs to: its path up to the first repeat index
    ("decoder.h.3.attn.q" -> "decoder.h.3"), or the node itself outside repeats."""
    parts = name.split(".")
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[:i + 1])
    return name


def blocks(g: "nx.MultiDiGraph", nodes: list[str]) -> list[list[str]]:
    """`nodes` grouped by block, blocks in the graph's (topological) order."""
    order = {n: i for i, n in enumerate(g.nodes)}
    out: dict[str, list[str]] = {}
    for n in sorted(nodes, key=order.__getitem__):
        out.setdefault(block_of(n), []).append(n)
    return list(out.values())


def input_of(g, n: str) -> str:
    """The node whose output a linear reads (linears reading the same node share statistics)."""
    preds = list(g.predecessors(n))
    return preds[0] if len(preds) == 1 else n


def common_module(names: list[str]) -> str:
    """The innermost module path holding every linear in `names`
    (["a.attn.q", "a.attn.k"] -> "a.attn"); "" when they share none."""
    parts = [n.split(".")[:-1] for n in names]
    out = []
    for level in zip(*parts):
        if len(set(level)) > 1:
            break
        out.append(level[0])
    return ".".join(out)
