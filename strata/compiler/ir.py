"""The graph IR: a networkx MultiDiGraph of a small, closed set of ops.

Nodes are keyed by hierarchical module paths (`decoder.h.3.attn.q`).  Each node
carries:
    op          one of OPS
    attrs       op attributes (heads, eps, act fn, ...)
    scope       the block instance it belongs to (`decoder.h.3`), or the stack
    component   the component instance it belongs to (`decoder.h.3.attn`), or None
                for structural ops (residual `add`, stack `input`)
    kind        the component kind (`attention`, `mlp`, ... as in the registry)
    params      {local name: shape}; the state_dict key is f"{node}.{name}"
    tied        {local name: state_dict key it shares}; not counted as parameters
    span        where the spec wrote it (for errors)
Edges carry `shape` (a tuple of ints and symbols such as "B", "T"), `dtype`
("int64" for token ids, "float" for activations) and `port` (the input slot
of the destination: attention takes q=0, k=1, v=2).

Graph-level data (`g.graph`): name, stacks, outputs, scopes, repeats,
components, vars, passes, train, parameters.  Each of these keys, on the graph,
a node and an edge, is a typed field (`g.graph.stacks`, `g.nodes[n].op`,
`e.shape`) whose type and meaning are in strata/compiler/ir_types.py.

    >>> g = new_graph("m")
    >>> add_node(g, "s.ids", "input", scope="s", attrs={"name": "ids"})
    's.ids'
    >>> lint(g)
"""

from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Any, Iterable

from strata.components import COMPONENTS
from strata.compiler.ir_types import EdgeData, GraphData, NodeData, check_attrs, check_fields, ir_graph_class
from strata.errors import format_shape  # noqa: F401 - re-exported

if TYPE_CHECKING:  # networkx is imported where a graph is made: `strata check` needs none
    import networkx as nx

OPS = frozenset({
    "input",       # token ids or another input: no operands
    "embedding",   # attrs.role: token (ids -> x), position / token_type (x -> x + e)
    "linear",      # y = x W^T (+ b); params weight [out, in], bias [out]
    "norm",        # attrs.type: layer | rms
    "attention",   # the attention core: softmax(q k^T * scale + mask) v, operands q, k, v
    "activation",  # attrs.fn
    "add",         # residual / parallel sum
    "mul",         # gating (SwiGLU / GeGLU)
    "dropout",
    "moe",         # routed experts (router + expert MLPs inside one op)
    "pool",        # first token: [B, T, d] -> [B, d]
    "split",       # a fused projection split into parts (attrs.sizes)
})


class IRError(Exception):
    """An invariant of the IR is broken (a bug in strata, not in the spec)."""


class _NodeView(dict):
    """`g.nodes` of a Staging graph: a dict that can also be called like networkx's."""

    def __call__(self, data: bool = False):
        return list(self.items()) if data else list(self)


class Staging:
    """The part of networkx's MultiDiGraph API the builder uses, in plain dicts.

    Elaboration fills one of these and `to_networkx` turns it into the IR; so
    `strata check`, which needs only the errors and totals, never pays for
    importing networkx."""

    def __init__(self) -> None:
        self.graph = GraphData()
        self.nodes = _NodeView()
        self.edges: list[tuple[str, str, dict]] = []
        self._in: dict[str, list[tuple[str, str, dict]]] = {}
        self._indexed = 0  # edges[:_indexed] are in _in (add_edges defers the rest to in_edges)

    def __contains__(self, n: object) -> bool:
        return n in self.nodes

    def __iter__(self):
        return iter(self.nodes)

    def number_of_nodes(self) -> int:
        return len(self.nodes)

    def add_node(self, n: str, **attr) -> None:
        self.nodes[n] = NodeData(attr)

    def add_edge(self, u: str, v: str, **attr) -> None:
        e = (u, v, EdgeData(attr))
        self.edges.append(e)
        if self._indexed == len(self.edges) - 1:
            self._in.setdefault(v, []).append(e)
            self._indexed += 1

    def add_edges(self, edges: list[tuple[str, str, dict]]) -> None:
        """add_edge for each (u, v, attr) (attr is kept, not copied); indexed by
        target only when in_edges is next asked (a repeat's copies: 10^4 edges)."""
        self.edges += edges

    def in_edges(self, n: str, data: bool = False):
        if self._indexed < len(self.edges):
            for e in self.edges[self._indexed:]:
                self._in.setdefault(e[1], []).append(e)
            self._indexed = len(self.edges)
        return [e if data else e[:2] for e in self._in.get(n, [])]


def to_networkx(g: "Staging | nx.MultiDiGraph") -> "nx.MultiDiGraph":
    """The IR as a networkx MultiDiGraph (a Staging graph is converted)."""
    import networkx as nx  # lazy: startup

    if isinstance(g, nx.MultiDiGraph):
        return g
    out = ir_graph_class()()
    out.graph.update(g.graph)
    out.add_nodes_from(g.nodes.items())
    out.add_edges_from(g.edges)
    return out


def new_graph(name: str, staging: bool = False) -> "nx.MultiDiGraph | Staging":
    g = Staging() if staging else ir_graph_class()()
    g.graph.update(name=name, stacks=[], outputs={}, scopes={}, repeats=[], components={},
                   vars={}, passes=[], train=None)
    return g


def without_passes(g: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """A copy of `g` (its nodes and edges shared as networkx's copy shares them)
    whose metadata lists no passes: the spec's own model, whose weights exist
    before any pass transforms them (what calibration runs and a fresh model inits)."""
    plain = g.copy()
    plain.graph = type(g.graph)({**g.graph, "passes": []})
    return plain


def add_node(g: nx.MultiDiGraph, node_id: str, op: str, *, scope: str, attrs: dict | None = None,
             component: str | None = None, kind: str | None = None,
             params: dict[str, tuple] | None = None, tied: dict[str, str] | None = None,
             span: Any = None) -> str:
    if node_id in g:
        raise IRError(f"duplicate node id {node_id!r}")
    if op not in OPS:
        raise IRError(f"unknown op {op!r} for node {node_id!r}")
    g.add_node(node_id, op=op, attrs=dict(attrs or {}), scope=scope, component=component,
               kind=kind or op, params=dict(params or {}), tied=dict(tied or {}), span=span)
    return node_id


def connect(g: nx.MultiDiGraph, src: str, dst: str, shape: tuple, dtype: str = "float",
            port: int = 0) -> None:
    g.add_edge(src, dst, shape=tuple(shape), dtype=dtype, port=port)


def operands(g: nx.MultiDiGraph, node: str) -> list[tuple[str, dict]]:
    """The (source, edge data) pairs feeding `node`, in port order."""
    ins = [(u, d) for u, _, d in g.in_edges(node, data=True)]
    return sorted(ins, key=lambda t: t[1]["port"])


def output_shape(g: nx.MultiDiGraph, node: str) -> tuple | None:
    """The shape a node produces (from any out-edge, or recorded for outputs)."""
    for _, _, d in g.out_edges(node, data=True):
        return d.shape
    return g.nodes[node].get("out_shape")


def param_count(g: nx.MultiDiGraph, nodes: Iterable[str] | None = None) -> int:
    nodes = g.nodes if nodes is None else nodes
    return sum(prod(s) for n in nodes for s in g.nodes[n].params.values())


def state_dict_shapes(g: nx.MultiDiGraph) -> dict[str, tuple]:
    """Every parameter's state_dict key and shape, in graph order (ties excluded)."""
    return {f"{n}.{k}": tuple(s) for n in g.nodes for k, s in g.nodes[n].params.items()}


def lint(g: nx.MultiDiGraph) -> None:
    """Check the IR's invariants; raise IRError naming the offending node."""
    import networkx as nx  # lazy: startup

    if not nx.is_directed_acyclic_graph(g):
        cycle = nx.find_cycle(g)
        raise IRError(f"the graph has a cycle through {cycle[0][0]!r}")
    check_fields(g.graph, "the graph")
    keys = set()
    for n, d in g.nodes(data=True):
        check_fields(d, f"node {n!r}")
        comp = COMPONENTS.get(d.kind)
        check_attrs(d.op, d.attrs, f"node {n!r}", comp.attrs if comp is not None else None)
        if d.get("op") not in OPS:
            raise IRError(f"node {n!r}: unknown op {d.get('op')!r}")
        if d.scope and not (n == d.scope or n.startswith(d.scope + ".")):
            raise IRError(f"node {n!r}: not inside its scope {d.scope!r}")
        if d.component and not (n == d.component or n.startswith(d.component + ".")):
            raise IRError(f"node {n!r}: not inside its component {d.component!r}")
        ports = [e.port for _, _, e in g.in_edges(n, data=True)]
        if len(ports) != len(set(ports)):
            raise IRError(f"node {n!r}: two operands on one port")
        if d.op == "input" and ports:
            raise IRError(f"node {n!r}: an input has operands")
        if d.op != "input" and not ports:
            raise IRError(f"node {n!r}: op {d.op} has no operands")
        for k, s in d.params.items():
            if not all(isinstance(x, int) and x > 0 for x in s):
                raise IRError(f"node {n!r}: parameter {k!r} has shape {s}")
            keys.add(f"{n}.{k}")
    for n, d in g.nodes(data=True):
        for k, target in d.tied.items():
            if target not in keys:
                raise IRError(f"node {n!r}: {k!r} is tied to {target!r}, which is not a parameter")
    for u, v, e in g.edges(data=True):
        check_fields(e, f"edge {u!r} -> {v!r}")
    for name, node in g.graph.outputs.items():
        if node not in g:
            raise IRError(f"output {name!r} names a missing node {node!r}")


def _fmt_attrs(attrs: dict) -> str:
    parts = []
    for k, v in attrs.items():
        if v is None or v is False:
            continue
        parts.append(k if v is True else f"{k}={v}")
    return " ".join(parts)


def format_table(g: nx.MultiDiGraph) -> str:
    """A readable dump of the IR, one node per line in topological order
    (like torch.fx's print_tabular)."""
    rows = [("node", "op", "operands", "shape", "params", "attrs")]
    for n in topo_order(g):
        d = g.nodes[n]
        ins = ", ".join(u for u, _ in operands(g, n))
        params = " ".join(f"{k}{format_shape(s)}" for k, s in d.params.items())
        params += "".join(f" {k}->{t}" for k, t in d.tied.items())
        rows.append((n, d.op, ins, format_shape(output_shape(g, n)), params.strip(),
                     _fmt_attrs(d.attrs)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 5)
    outs = ", ".join(f"{k}={v}" for k, v in g.graph.outputs.items())
    lines.append(f"\noutputs: {outs}")
    for r in g.graph.repeats:
        lines.append(f"repeat: {r['path']} = {r['block']} x {r['count']}")
    return "\n".join(line.rstrip() for line in lines)


def _order_key(g: nx.MultiDiGraph):
    # Insertion order is the spec's order: keep it where the graph allows.
    index = {n: i for i, n in enumerate(g.nodes)}
    return lambda n: f"{index[n]:09d}"


def topo_order(g: nx.MultiDiGraph) -> list[str]:
    """Nodes in topological order, ties broken by the order the spec wrote them."""
    import networkx as nx  # lazy: startup

    return list(nx.lexicographical_topological_sort(g, key=_order_key(g)))


def scope_nodes(g: nx.MultiDiGraph, path: str) -> list[str]:
    """Every node inside the module path `path` (itself included), in graph order."""
    prefix = path + "."
    return [n for n in g.nodes if n == path or n.startswith(prefix)]


def scope_signature(g: nx.MultiDiGraph, path: str, nodes: list[str] | None = None) -> tuple:
    """What a scope computes, independent of where it sits: relative node ids,
    ops, attributes, parameter shapes and internal wiring.  Two instances of a
    repeat with equal signatures can share one generated class / one diagram box."""
    nodes = scope_nodes(g, path) if nodes is None else nodes
    inside = set(nodes)
    cut = len(path) + 1

    def rel(n: str) -> str:
        return n[cut:] if n in inside and n != path else ("<self>" if n == path else "<in>")

    sig = []
    for n in nodes:
        d = g.nodes[n]
        ins = tuple((rel(u), e.port) for u, e in operands(g, n))
        tied = tuple(sorted((k, "<tied>") for k in d.tied))
        sig.append((rel(n), d.op, tuple(sorted((k, repr(v)) for k, v in d.attrs.items())),
                    tuple(sorted(d.params.items())), tied, ins))
    return tuple(sig)


def repeat_groups(g: nx.MultiDiGraph) -> list[dict]:
    """The recorded repeats, each with `uniform` (all instances compute the same
    thing) and `variants` (instance paths grouped by signature, in order)."""
    out = []
    members: dict[str, list[str]] = {}
    owner = {inst: r["path"] for r in g.graph.repeats for inst in r["instances"]}
    for n in g.nodes:  # one pass: node -> the repeat instances containing it
        parts = n.split(".")
        for i in range(1, len(parts) + 1):
            p = ".".join(parts[:i])
            if p in owner:
                members.setdefault(p, []).append(n)
    for r in g.graph.repeats:
        groups: dict[tuple, list[str]] = {}
        for inst in r["instances"]:
            groups.setdefault(scope_signature(g, inst, members.get(inst, [])), []).append(inst)
        out.append({**r, "uniform": len(groups) == 1, "variants": list(groups.values())})
    return out
