"""Layers of a `repeat` made by copying the first one, when nothing tells them apart.

Elaborating a block costs the same for each of its n instances (options bound
and validated by pydantic, names planned, shapes inferred): 2,000 layers are
2,000 times the work of one, for 2,000 copies of the same nodes.  When the
body reads no repeat index, instance i is instance 0 with its paths renamed
(`decoder.h.0.attn.q` -> `decoder.h.i.attn.q`) and its input taken from
instance i-1.  To be sure of that, instance 1 is elaborated as usual and must
equal the renamed copy of instance 0 exactly (nodes, edges, components,
scopes, output, no new mistake, the stack's state untouched); anything else
that tells instances apart makes every instance elaborate as usual.  The
graph is the same either way (tests/compiler/test_fold.py holds the two equal
on every shipped spec).

    >>> from strata.compiler import build_text
    >>> text = open("specs/gpt2.arch").read().replace("depth = 12", "depth = 2000")
    >>> g = build_text(text, networkx=False)
    >>> g.folded, len(g.nodes)
    (1998, 28006)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from itertools import islice
from typing import Any

import strata.compiler.ir as ir
from strata.compiler.scope import Tensor
from strata.dsl import ast as A


def reads(body: list, blocks: dict[str, A.BlockDef], name: str) -> bool:
    """Whether any expression in `body`, or in a block it uses (transitively:
    a block sees its caller's names), mentions `name`."""
    todo, seen = list(body), set()
    while todo:
        s = todo.pop()
        exprs: list = []
        if isinstance(s, A.Use):
            exprs = list(s.args) + [k.value for k in s.kwargs]
            if s.name in blocks and s.name not in seen:
                seen.add(s.name)
                b = blocks[s.name]
                exprs += [p.default for p in b.params if p.default is not None]
                todo += b.body
        elif isinstance(s, A.Assign):
            exprs = [s.value]
        elif isinstance(s, A.Repeat):
            exprs = [s.count]
            todo += s.body
        else:  # residual, parallel, seq, branch
            todo += getattr(s, "body", None) or []
        for e in exprs:
            for x in A.walk_exprs(e):
                if isinstance(x, A.Name) and x.id.split(".")[0] == name:
                    return True
    return False


@dataclass
class Mark:
    """Where the graph stood before an instance was elaborated."""

    nodes: int
    edges: int
    components: int
    scopes: int
    errors: int
    tensors: int
    others: tuple     # what no instance may change: outputs, repeats, stacks, the stack's state


@dataclass
class Piece:
    """What one instance added: its nodes, edges, components and scopes, in order."""

    nodes: list[tuple[str, dict]]
    edges: list[tuple[str, str, dict]]
    components: list[tuple[str, dict]]
    scopes: list[tuple[str, dict]]
    tensors: int


def _last(d: dict, n: int) -> list:
    """The last `n` items of a dict, in insertion order (without listing it all)."""
    return list(islice(reversed(d.items()), n))[::-1]


class Folder:
    """Records instances 0 and 1 of one repeat and, where they agree, makes the rest."""

    def __init__(self, elab, state, cache: "FoldCache | None" = None) -> None:
        self.e = elab
        self.g = elab.g
        self.state = state  # the StackState
        self.cache = cache

    def others(self) -> tuple:
        st, gg = self.state, self.g.graph
        return (len(gg["outputs"]), len(gg["repeats"]), len(gg["stacks"]), repr(st.positions),
                tuple(st.inputs), tuple(st.memory))

    def mark(self) -> Mark:
        g = self.g
        return Mark(len(g.nodes), len(g.edges), len(g.graph.components), len(g.graph.scopes),
                    len(self.e.errors.items), self.e.tensors, self.others())

    def piece(self, m: Mark) -> Piece:
        g = self.g
        return Piece(_last(g.nodes, len(g.nodes) - m.nodes), g.edges[m.edges:],
                     _last(g.graph.components, len(g.graph.components) - m.components),
                     _last(g.graph.scopes, len(g.graph.scopes) - m.scopes),
                     self.e.tensors - m.tensors)

    def agree(self, m0: Mark, p0: Piece, x0: Tensor, y0: Tensor, m1: Mark, p1: Piece, y1: Tensor,
              old: str) -> "Template | None":
        """A template of instance 0 if instance 1 (p1, made from y0) is its
        renamed copy and changed nothing else; else None."""
        if not p0.nodes or len(self.e.errors.items) != m1.errors or self.others() != m1.others \
                or m1.others != m0.others or p0.tensors != p1.tensors:
            return None
        if not all(n.startswith(old + ".") or n == old for n, _ in p0.nodes + [(y0.node, None)]):
            return None  # it made nodes outside its own scope, or its output is not its own
        t = Template(p0, old, x0.node, y0)
        copy, y = t.make(old.rpartition(".")[0] + ".1", y0.node)
        same = (copy.nodes == p1.nodes and copy.edges == p1.edges and copy.components == p1.components
                and copy.scopes == p1.scopes and y == y1)
        return t if same else None

    def copies(self, template: "Template", x: Tensor, group: str, i: int, n: int, instances: list[str],
               max_nodes: int, max_tensors: int) -> tuple[Tensor, int]:
        """Instances i.. of `group`, fed x, as copies of instance 0's `template`;
        stops before one that would pass max_nodes or max_tensors, so
        elaborating it reports that as usual.  With a cache, the copies an
        earlier build made are taken again: whole where instance 0 is as it
        was (an edit elsewhere costs no copy), else node by node where that
        node of instance 0 is (an edit inside the block makes anew only the
        nodes it changed).  -> (output, next i)."""
        g = self.g
        before, old = self.cache.take(group) if self.cache is not None else (None, [])
        same = template.same_as(before) if before is not None else None
        made = []
        while i < n:
            if len(g.nodes) + len(template.nodes) > max_nodes or self.e.tensors + template.tensors > max_tensors:
                break
            if i - 2 < len(old) and same is True:
                piece, x = old[i - 2]
                g.reused += 1
            else:
                piece, x = template.make(f"{group}.{i}", x.node, old[i - 2][0] if i - 2 < len(old) and same
                                         else None, same)
            made.append((piece, x))
            self.add(piece)
            instances.append(f"{group}.{i}")
            g.folded += 1
            i += 1
        if self.cache is not None:
            self.cache.keep(group, template, made)
        return x, i

    def add(self, p: Piece) -> None:
        g = self.g
        before = len(g.nodes)
        g.nodes.update(p.nodes)
        if len(g.nodes) != before + len(p.nodes):
            raise ir.IRError(f"duplicate node id among {p.nodes[0][0]!r} ...")
        g.add_edges(p.edges)
        g.graph.components.update(p.components)
        g.graph.scopes.update(p.scopes)
        self.e.tensors += p.tensors


class FoldCache:
    """The copies of the last build, by repeat path, for the next build of the
    same file (the language server checks after each edit).  The graphs of two
    builds then share the copies' data: for a reader that changes neither."""

    def __init__(self) -> None:
        self._by_group: dict[str, tuple["Template", list]] = {}

    def take(self, group: str) -> tuple["Template | None", list]:
        """(the template of the last build, the (piece, output) of its instances 2..)."""
        return self._by_group.get(group, (None, []))

    def keep(self, group: str, template: "Template", made: list) -> None:
        self._by_group[group] = (template, made)


class Template:
    """Instance 0 compiled into a maker of instance i: which values hold a path
    under `old` (renamed), which containers are mutable (made anew, as
    elaboration would make them); the rest (numbers, spans, tuples of symbols)
    is immutable and shared.  Made once per repeat, so a copy is mostly C-level
    dict copies."""

    def __init__(self, p: Piece, old: str, x_in: str, y: Tensor) -> None:
        self.source = (p.nodes, p.edges, p.components, p.scopes, p.tensors, old, x_in, y)  # what it was made of
        self.n, self.x_in, self.tensors = len(old), x_in, p.tensors
        self.is_path = lambda s: s == old or s.startswith(old + ".")
        self.nodes = [(n[self.n:], self._compile(d)) for n, d in p.nodes]
        # (source: None = the instance's input, a suffix = inside it, else as is; target suffix; data)
        self.edges = [(None if u == x_in else u[self.n:] if self.is_path(u) else u, v[self.n:],
                       self.is_path(u) and u != x_in, d) for u, v, d in p.edges]
        self.components = [(k[self.n:], self._compile(d)) for k, d in p.components]
        self.scopes = [(k[self.n:], self._compile(d)) for k, d in p.scopes]
        self.y = self._compile(y)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and self.source == other.source

    __hash__ = None

    def same_as(self, before: "Template") -> "bool | _Same | None":
        """True: all as `before`; _Same: which nodes, edges, components and scopes
        are (the same list positions and paths; the others differ); None: nothing."""
        if self == before:
            return True
        a, b = self.source, before.source
        if a[5:7] != b[5:7] or [len(x) for x in a[:4]] != [len(x) for x in b[:4]]:
            return None
        same = _Same(*([x == y for x, y in zip(a[k], b[k])] for k in range(4)))
        return same if any(map(any, (same.nodes, same.edges, same.components, same.scopes))) else None

    def make(self, new: str, x_new: str, old: Piece | None = None, same: "_Same | None" = None
             ) -> tuple[Piece, Tensor]:
        """(instance `new`'s piece, fed from node x_new; its output).  Where
        `same` says a node (edge, ...) of instance 0 is as it was, the one of
        `old` (this instance in the last build) is taken instead of made."""
        path = _Path(new, self.n)
        if old is None or same is None:
            edges = [(x_new if u is None else new + u if inside else u, new + v, ir.EdgeData(d))
                     for u, v, inside, d in self.edges]
            piece = Piece([(new + k, f(path)) for k, f in self.nodes], edges,
                          [(new + k, f(path)) for k, f in self.components],
                          [(new + k, f(path)) for k, f in self.scopes], self.tensors)
            return piece, self.y(path)
        edges = [e if keep and u is not None else (x_new if u is None else new + u if inside else u, new + v, ir.EdgeData(d))
                 for (u, v, inside, d), e, keep in zip(self.edges, old.edges, same.edges)]
        piece = Piece([o if keep else (new + k, f(path)) for (k, f), o, keep in zip(self.nodes, old.nodes, same.nodes)],
                      edges,
                      [o if keep else (new + k, f(path))
                       for (k, f), o, keep in zip(self.components, old.components, same.components)],
                      [o if keep else (new + k, f(path)) for (k, f), o, keep in zip(self.scopes, old.scopes, same.scopes)],
                      self.tensors)
        return piece, self.y(path)

    def _compile(self, v: Any):
        """A function path -> v's copy for one instance, or None where v can be shared."""
        t = type(v)
        if t is str:
            return (lambda p, s=v: p(s)) if self.is_path(v) else None
        if t is dict or t in _TYPED:  # the IR's own dicts (ir_types) copy as their type
            copies, fixes = [], []  # values that are dicts of their own, copied inline; the others
            for k, x in v.items():
                f = self._compile(x)
                if isinstance(f, functools.partial) and f.func is _copy:
                    copies.append(k)
                elif f is not None:
                    fixes.append((k, f))
            if not fixes and not copies:  # most dicts (params {"weight": (768, 768)})
                return functools.partial(_copy, v)

            def make_dict(p, v=v, copies=copies, fixes=fixes):
                d = v.copy() if type(v) is dict else type(v)(v)
                for k in copies:
                    d[k] = d[k].copy()
                for k, f in fixes:
                    d[k] = f(p)
                return d
            return make_dict
        if t in (list, set, tuple) or (isinstance(v, tuple) and hasattr(v, "_fields")):
            items = [(self._compile(x), x) for x in v]
            if t is tuple and all(f is None for f, _ in items):
                return None
            if t in (list, set, tuple):
                return lambda p, t=t, items=items: t(x if f is None else f(p) for f, x in items)
            if all(f is None for f, _ in items):
                return None
            return lambda p, t=t, items=items: t(*(x if f is None else f(p) for f, x in items))
        return None


_TYPED = (ir.NodeData, ir.EdgeData)


def _copy(d: dict, _path) -> dict:
    return d.copy() if type(d) is dict else type(d)(d)


@dataclass
class _Same:
    """Which items of instance 0 are as in the last build (by position)."""

    nodes: list[bool]
    edges: list[bool]
    components: list[bool]
    scopes: list[bool]


class _Path:
    """A path of instance 0 (`decoder.h.0.attn`) as instance `new`'s."""

    def __init__(self, new: str, n: int) -> None:
        self.new, self.n = new, n

    def __call__(self, s: str) -> str:
        return self.new + s[self.n:]
