"""What the torch backend needs to know about the IR before writing code.

A scope (a stack or a block instance) is cut into *units*: a component
(`attn`), a child block, a repeat, or a bare `add`; units are ordered
topologically and carry their inputs and the one value they produce.  Per
stack, `StackInfo` says what its attentions need (rotary cos/sin, a mask, a
KV cache); `extras` says which of those a block must be passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from strata.compiler import ir


class CodegenError(Exception):
    """The IR holds something the torch backend cannot lower (names the node)."""


@dataclass
class Unit:
    kind: str                   # comp | block | repeat | node
    path: str
    nodes: list[str] = field(default_factory=list)
    ins: list[str] = field(default_factory=list)
    out: str | None = None


@dataclass
class StackInfo:
    name: str
    causal: bool = False             # all its self-attentions are causal
    rope: dict | None = None
    alibi: int | None = None         # heads
    cache: bool = False
    padding: bool = False
    mask: bool = False
    self_attention: bool = False
    # (causal, window) of the stack's self-attentions -> the stack's mask variable,
    # in order of first use: `mask` alone, or `mask` and `local_mask` when layers alternate
    masks: dict = field(default_factory=dict)


RESERVED = {"tokens", "pos", "rope", "mask", "cache", "start_pos", "attention_mask", "T", "B",
            "self", "layer", "layer_mask"}


def camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.replace("-", "_").split("_") if p) or "M"


def shape_comment(shape) -> str:
    return "" if shape is None else "  # (" + ", ".join(str(s) for s in shape) + ")"


def mask_name(kind: tuple, kinds: list[tuple]) -> str:
    """`mask` for a stack's only kind of attention (or its full-length one); `local_mask`
    for its sliding window (`window8_mask` when windows differ); a `causal_` / `full_`
    prefix when causal and bidirectional self-attentions share the stack."""
    if len(kinds) == 1:
        return "mask"
    causal, window = kind
    name = "mask"
    if window:
        name = ("local_" if len({w for _, w in kinds if w}) == 1 else f"window{window}_") + name
    if len({c for c, _ in kinds}) > 1:
        name = ("causal_" if causal else "full_") + name
    return name


def attr_path(path: str) -> str:
    """`decoder.h.0.attn` -> `decoder.h[0].attn` (Python attribute access)."""
    return "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path.split("."))[1:]


class Analysis:
    def __init__(self, g: nx.MultiDiGraph, origin: str | None = None):
        self.g = g
        self.origin = origin
        self.order = ir.topo_order(g)
        self.index = {n: i for i, n in enumerate(self.order)}
        self.scopes = g.graph["scopes"]
        self.comps = g.graph["components"]
        self.stacks = {s["name"]: s for s in g.graph["stacks"]}
        self.outputs = g.graph["outputs"]
        self.branch_of = {v: k for k, v in self.outputs.items() if k != "output"}
        self.helpers: list[str] = []
        self.classes: dict[str, str] = {}      # source (name-less) -> class name
        self.block_classes: dict[tuple, str] = {}
        self.defs: list[str] = []
        self.taken: set[str] = set()
        self.info = {name: self.stack_info(s) for name, s in self.stacks.items()}

    # ------------------------------------------------------------ analysis
    def stack_info(self, st: dict) -> StackInfo:
        name = st["name"]
        cores = [n for n in self.order if n.startswith(name + ".") and self.g.nodes[n]["op"] == "attention"]
        selfs = [self.g.nodes[c]["attrs"] for c in cores if not self.g.nodes[c]["attrs"]["cross"]]
        info = StackInfo(name)
        if not selfs:
            return info
        if len({(a["alibi"], repr(a["rope"])) for a in selfs}) > 1:
            raise CodegenError(f"stack '{name}': its self-attentions differ in positions (rotary / "
                               "alibi); the torch backend needs them alike within a stack")
        kinds = list(dict.fromkeys((a["causal"], a["window"]) for a in selfs))
        a = selfs[0]
        single = len(self.stacks) == 1
        causal = all(c for c, _ in kinds)
        info.self_attention = True
        info.rope = a["rope"]
        info.causal = causal
        info.alibi = a["heads"] if a["alibi"] else None
        info.cache = single and causal
        info.padding = single and not causal
        info.mask = bool(info.cache or info.padding or any(w for _, w in kinds) or info.alibi)
        info.masks = {k: mask_name(k, kinds) for k in kinds}
        return info

    def attention_kinds(self, path: str) -> list[tuple]:
        """(causal, window) of the self-attentions under `path`, in order of first use."""
        return list(dict.fromkeys(
            (d["attrs"]["causal"], d["attrs"]["window"]) for n in self.order
            if n.startswith(path + ".") and (d := self.g.nodes[n])["op"] == "attention"
            and not d["attrs"]["cross"]))

    def mask_params(self, path: str) -> list[str]:
        """The mask arguments of the scope (or repeat) at `path`: `mask` when each of its
        instances runs one kind of attention, else the stack's mask names."""
        info = self.stack_of(path)
        kinds = self.attention_kinds(path)
        if not (info.mask and kinds):
            return []
        rep = next((r for r in self.g.graph["repeats"] if r["path"] == path), None)
        if len(kinds) == 1 or rep and all(len(self.attention_kinds(p)) <= 1 for p in rep["instances"]):
            return ["mask"]
        return [info.masks[k] for k in info.masks if k in kinds]

    def scope_masks(self, scope: str, params: list[str]) -> dict:
        """(causal, window) -> the variable holding its mask inside `scope`."""
        info = self.stack_of(scope)
        if scope != scope.split(".")[0] and [p for p in params if p in info.masks.values()] == ["mask"]:
            return {k: "mask" for k in info.masks}
        return dict(info.masks)

    def stack_inputs(self, st: dict) -> list[str]:
        """Declared token inputs, then inputs components added (token_type_ids)."""
        extra = [self.g.nodes[n]["attrs"]["name"] for n in self.order
                 if self.g.nodes[n]["op"] == "input" and self.g.nodes[n]["scope"] == st["name"]]
        return list(st["inputs"]) + [i for i in extra if i not in st["inputs"]]

    def stack_of(self, path: str) -> StackInfo:
        return self.info[path.split(".")[0]]

    def memory_name(self, node: str, stack: str) -> str | None:
        for mem, src in self.stacks[stack]["memory"].items():
            if self.stacks.get(src, {}).get("output") == node:
                return mem
        return None

    def unit_key(self, scope: str, n: str) -> tuple[str, str]:
        parts = n[len(scope) + 1:].split(".")
        for i in range(1, len(parts) + 1):
            p = scope + "." + ".".join(parts[:i])
            if p in self.scopes:
                return ("repeat" if self.scopes[p]["kind"] == "repeat" else "block"), p
            if p in self.comps:
                return "comp", p
        return "node", n

    def units(self, scope: str) -> list[Unit]:
        by_key: dict[tuple, Unit] = {}
        for n in self.order:
            if n.startswith(scope + "."):
                key = self.unit_key(scope, n)
                by_key.setdefault(key, Unit(key[0], key[1])).nodes.append(n)
        owner = {n: u for u in by_key.values() for n in u.nodes}
        dag = nx.DiGraph()
        for u in by_key.values():
            dag.add_node(u.path)
            inside = set(u.nodes)
            for n in u.nodes:
                for src, _ in ir.operands(self.g, n):
                    if src not in inside and src not in u.ins:
                        u.ins.append(src)
                        if src in owner:
                            dag.add_edge(owner[src].path, u.path)
            outs = [n for n in u.nodes
                    if any(v not in inside for v in self.g.successors(n)) or n in self.branch_of
                    or n == self.outputs.get("output")]
            if len(outs) > 1:
                raise CodegenError(f"'{u.path}' produces {len(outs)} values ({', '.join(outs)}); "
                                   "a unit must produce one")
            u.out = outs[0] if outs else u.nodes[-1]
        first = {u.path: self.index[u.nodes[0]] for u in by_key.values()}
        paths = nx.lexicographical_topological_sort(dag, key=lambda p: f"{first[p]:09d}")
        units = {u.path: u for u in by_key.values()}
        return [units[p] for p in paths]

    def extras(self, path: str) -> list[str]:
        """The arguments beyond the stream that the scope at `path` needs."""
        stack = path.split(".")[0]
        info = self.info[stack]
        mems, selfish = [], False
        for n in self.order:
            if not n.startswith(path + "."):
                continue
            d = self.g.nodes[n]
            if d["op"] == "attention" and not d["attrs"]["cross"]:
                selfish = True
            for src, _ in ir.operands(self.g, n):
                m = self.memory_name(src, stack)
                if m and m not in mems:
                    mems.append(m)
        out = list(mems)
        if selfish and info.rope:
            out.append("rope")
        if selfish:
            out += self.mask_params(path)
        if selfish and info.cache:
            out.append("cache")
        return out

    # ------------------------------------------------------------ classes

    def shape_of(self, node: str):
        shape = ir.output_shape(self.g, node)
        if shape is None and self.g.nodes[node]["op"] in ("activation", "dropout", "norm"):
            shape = next((e["shape"] for _, _, e in self.g.in_edges(node, data=True)), None)
        return shape
