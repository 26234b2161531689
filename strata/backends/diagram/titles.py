"""Cluster titles drawn as nodes, so that the layout engine keeps them clear.

Neither dagre (mermaid.js) nor dot reserves room for a cluster's title: a
two-line title ("h: layer × 12 / 7.1M per layer · 85.1M total") lands on the
cluster's first box, and an edge entering the cluster from above runs through
it.  Both renderers therefore draw each cluster's title as a plain text node
at the top of the cluster, held there by invisible links:

    title -> every entry box of the cluster  (a box no arrow inside the cluster reaches)
    source -> title for every box outside the cluster with an arrow into it
    outer title -> inner title               (an entry box of both: nested clusters)

so the title takes a rank of its own between the arrows' sources and the entry
boxes, and the layout routes those arrows beside it, never through it.  Arrows
between stacks (an encoder's memory) and dotted ties are left out: they would
stack the decoder under the encoder.

    >>> from strata.backends.diagram.layout import Arrow, Box, Cluster, Layout
    >>> d = Layout("t", "block", boxes=[Box("n0", "a", ["a"], "io"),
    ...     Box("n1", "b", ["b"], "norm", cluster="c0"), Box("n2", "c", ["c"], "norm", cluster="c0")],
    ...     arrows=[Arrow("n0", "n1"), Arrow("n1", "n2")], clusters=[Cluster("c0", "s", ["s"])])
    >>> title_links(d)
    [('n0', 't_c0'), ('t_c0', 'n1')]
"""

from __future__ import annotations

from strata.backends.diagram.layout import Layout

# Arrows that place boxes: the others (tied weights, the teacher, memory) float.
PLACING = ("data", "residual")


def title_id(cluster_id: str) -> str:
    """The id of the node drawn for a cluster's title: c3 -> t_c3."""
    return f"t_{cluster_id}"


def title_links(d: Layout) -> list[tuple[str, str]]:
    """(from, to) invisible links that hold every cluster's title node at the top
    of its cluster, without repeats; linear in boxes and arrows times nesting depth."""
    parent = {c.id: c.parent for c in d.clusters}

    def chain(c: str | None) -> list[str]:  # outermost first
        out = []
        while c is not None:
            out.append(c)
            c = parent[c]
        return out[::-1]

    where = {b.id: chain(b.cluster) for b in d.boxes}
    out: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()

    def link(a: str, b: str) -> None:
        if (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b))

    shared: dict[str, int] = {}  # box -> deepest cluster level an arrow inside it reaches it from
    for a in d.arrows:
        if a.role not in PLACING:
            continue
        cs, cd = where[a.src], where[a.dst]
        k = 0
        while k < min(len(cs), len(cd)) and cs[k] == cd[k]:
            k += 1
        shared[a.dst] = max(shared.get(a.dst, 0), k)
        if k < len(cd):  # the arrow enters cd[k] (and the clusters inside it) from outside
            link(a.src, title_id(cd[k]))
    for b in d.boxes:  # b is an entry of the clusters deeper than any arrow reaching it
        cd = where[b.id]
        k = shared.get(b.id, 0)
        for outer, inner in zip(cd[k:], cd[k + 1:]):
            link(title_id(outer), title_id(inner))
        if k < len(cd):
            link(title_id(cd[-1]), b.id)
    return out
