"""What the torch backend needs to know about the IR, as plain data.

`index_ir(g)` reads the graph once; `plan_scope` cuts a scope (a stack or a
block instance) into *units* — a component (`attn`), a child block, a repeat,
or a residual `add` — orders them, and names the values they produce by
liveness, so residuals read `x = x + h` whatever the wiring.  Per stack,
`StackInfo` says what its attentions need (rotary cos/sin, masks, a KV cache).
Nothing here writes source: `emit.py` turns these plans into text.

All of it is linear in the size of the graph: members of every scope are
gathered in one pass, so a 2,000-layer model plans in about the time of a
20-layer one per layer.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import networkx as nx

from strata.compiler import ir


class CodegenError(Exception):
    """The IR holds something the torch backend cannot lower (names the node)."""


# Variables a forward may use for its own purposes: values get other names.
RESERVED = frozenset({"pos", "positions", "rope", "mask", "cache", "start_pos", "attention_mask", "memory_mask",
                      "logits_to_keep", "T", "B",
                      "self", "layer", "layer_mask", "config", "return_dict"})


@dataclass
class StackInfo:
    name: str
    causal: bool = False             # all its self-attentions are causal
    rope: dict | None = None         # {"base", "dims"} of its rotary positions
    alibi: int | None = None         # heads, when ALiBi
    cache: bool = False              # decoder-only, or an encoder-decoder's decoder: a KV cache argument
    padding: bool = False            # an attention_mask argument
    memory_mask: bool = False        # an encoder-decoder's decoder: the encoder's padding, for cross-attention
    mask: bool = False               # attentions take a mask argument
    positions: str | None = None     # path of its position component that lives at the stack
    bias: bool = False               # that position adds a bias to attention logits (ALiBi, relative)
    uses_pos: bool = False           # the forward computes `pos`
    # (causal, window) of its self-attentions -> the stack's mask variable, in order of
    # first use: `mask` alone, or `mask` and `local_mask` when layers alternate
    masks: dict = field(default_factory=dict)


@dataclass
class Unit:
    kind: str                        # comp | block | repeat | add | input
    path: str
    nodes: list[str] = field(default_factory=list)
    ins: list[str] = field(default_factory=list)    # IR nodes it reads
    out: str | None = None                          # the IR node it produces
    attr: str = ""                   # its attribute in the scope (`attn`, `h`)
    args: list[str] = field(default_factory=list)   # variables holding `ins`
    target: str = ""                 # the variable it assigns
    uses: int = 0                    # how many later units read `target`
    extras: list[tuple[str, str]] = field(default_factory=list)  # (parameter, variable) it is passed
    layer_masks: list[str] | None = None  # a repeat whose layers take different masks


@dataclass
class ScopePlan:
    path: str
    stack: str
    params: list[str]                # forward parameters after self
    units: list[Unit]
    returns: list[str]               # variables returned (the output, then branch outputs)
    masks: dict                      # (causal, window) -> variable holding that mask here
    keep_logits: str | None = None   # the LM head whose input keeps the last logits_to_keep positions


@dataclass
class IRIndex:
    g: nx.MultiDiGraph
    order: list[str]
    index: dict[str, int]
    members: dict[str, list[str]]    # module path -> the nodes inside it, in order
    scopes: dict
    comps: dict
    stacks: dict
    outputs: dict
    branch_of: dict                  # output node -> branch name
    repeats: dict                    # repeat path -> its record
    info: dict = field(default_factory=dict)  # stack name -> StackInfo


def index_ir(g: nx.MultiDiGraph) -> IRIndex:
    order = ir.topo_order(g)
    members: dict[str, list[str]] = {}
    for n in order:
        parts = n.split(".")
        for i in range(1, len(parts)):
            members.setdefault(".".join(parts[:i]), []).append(n)
    outputs = g.graph.outputs
    ix = IRIndex(g, order, {n: i for i, n in enumerate(order)}, members, g.graph.scopes,
                 g.graph.components, {s["name"]: s for s in g.graph.stacks}, outputs,
                 {v: k for k, v in outputs.items() if k != "output"},
                 {r["path"]: r for r in g.graph.repeats})
    ix.info = {name: stack_info(ix, s) for name, s in ix.stacks.items()}
    return ix


def _self_attentions(ix: IRIndex, path: str) -> list[dict]:
    return [d.attrs for n in ix.members.get(path, ())
            if (d := ix.g.nodes[n]).op == "attention" and not d.attrs["cross"]]


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


def is_decoder_of(ix: IRIndex, st: dict) -> bool:
    """`st` is the last of two stacks and reads the other as memory (an encoder-decoder's
    decoder, whose cache keeps the encoder's output)."""
    others = [s for s in ix.stacks if s != st["name"]]
    return (len(others) == 1 and st["name"] == ix.g.graph.stacks[-1]["name"]
            and set(others) <= set(st["memory"].values()))


def stack_info(ix: IRIndex, st: dict) -> StackInfo:
    name = st["name"]
    info = StackInfo(name)
    info.memory_mask = is_decoder_of(ix, st) and any(
        ix.g.nodes[n].op == "attention" and ix.g.nodes[n].attrs["cross"] for n in ix.members.get(name, ()))
    for path, c in ix.comps.items():
        if c["scope"] == name and c.get("facts", {}).get("at_stack"):  # rotary, alibi, relative
            info.positions = path
            info.bias = bool(c["facts"].get("attention_bias"))
    info.uses_pos = any(c["scope"] == name and c.get("facts", {}).get("uses_pos") for c in ix.comps.values())
    selfs = _self_attentions(ix, name)
    if not selfs:
        return info
    if len({(a["alibi"], repr(a["rope"])) for a in selfs}) > 1:
        raise CodegenError(f"stack '{name}': its self-attentions differ in positions (rotary / "
                           "alibi); the torch backend needs them alike within a stack")
    kinds = list(dict.fromkeys((a["causal"], a["window"]) for a in selfs))
    single = len(ix.stacks) == 1
    info.causal = all(c for c, _ in kinds)
    info.rope = selfs[0]["rope"]
    info.alibi = selfs[0]["heads"] if selfs[0]["alibi"] else None
    info.cache = info.causal and (single or is_decoder_of(ix, st))
    encoder = any(is_decoder_of(ix, t) for t in ix.stacks.values() if name in t["memory"].values())
    info.padding = not info.causal and (single or encoder)
    info.mask = bool(info.cache or info.padding or any(w for _, w in kinds) or info.bias)
    info.masks = {k: mask_name(k, kinds) for k in kinds}
    return info


def attention_kinds(ix: IRIndex, path: str) -> list[tuple]:
    """(causal, window) of the self-attentions under `path`, in order of first use."""
    return list(dict.fromkeys((a["causal"], a["window"]) for a in _self_attentions(ix, path)))


def memory_name(ix: IRIndex, node: str, stack: str) -> str | None:
    for mem, src in ix.stacks[stack]["memory"].items():
        if ix.stacks.get(src, {}).get("output") == node:
            return mem
    return None


def mask_params(ix: IRIndex, path: str) -> list[str]:
    """The mask arguments of the scope (or repeat) at `path`: `mask` when each of its
    instances runs one kind of attention, else the stack's mask names."""
    info = ix.info[path.split(".")[0]]
    kinds = attention_kinds(ix, path)
    if not (info.mask and kinds):
        return []
    rep = ix.repeats.get(path)
    if len(kinds) == 1 or rep and all(len(attention_kinds(ix, p)) <= 1 for p in rep["instances"]):
        return ["mask"]
    return [info.masks[k] for k in info.masks if k in kinds]


def extras(ix: IRIndex, path: str) -> list[str]:
    """The arguments beyond the stream that the scope (or repeat) at `path` needs."""
    stack = path.split(".")[0]
    info = ix.info[stack]
    mems, has_self, has_cross = [], False, False
    for n in ix.members.get(path, ()):
        d = ix.g.nodes[n]
        if d.op == "attention":
            has_self = has_self or not d.attrs["cross"]
            has_cross = has_cross or d.attrs["cross"]
        for src, _ in ir.operands(ix.g, n):
            m = memory_name(ix, src, stack)
            if m and m not in mems:
                mems.append(m)
    out = list(mems)
    if has_self:
        out += ["rope"] * bool(info.rope) + mask_params(ix, path)
    out += ["memory_mask"] * (info.memory_mask and has_cross)
    return out + ["cache"] * (info.cache and (has_self or has_cross))


def component_extras(ix: IRIndex, path: str, masks: dict) -> dict[str, str]:
    """What the component at `path` is passed besides its inputs: `pos` for added
    positions; rotary cos/sin, its mask and the cache for a self-attention; the
    encoder's padding mask and the cache for a cross-attention."""
    info = ix.info[path.split(".")[0]]
    node = ix.g.nodes[path] if path in ix.g else None
    if node is not None and node["op"] == "embedding" and node["attrs"].get("role") == "position":
        return {"pos": "positions"}
    core = f"{path}.core"
    if core not in ix.g:
        return {}
    if ix.g.nodes[core].attrs["cross"]:  # the encoder's padding; its keys and values, cached once
        return {k: v for k, v, use in (("mask", "memory_mask", info.memory_mask), ("cache", "cache", info.cache))
                if use}
    a = ix.g.nodes[core].attrs
    out = {}
    if info.rope:
        out["rope"] = "rope"
    if info.mask:
        out["mask"] = masks.get((a["causal"], a["window"]), "mask")
    if info.cache:
        out["cache"] = "cache"
    return out


def _unit_key(ix: IRIndex, scope: str, n: str) -> tuple[str, str]:
    parts = n[len(scope) + 1:].split(".")
    for i in range(1, len(parts) + 1):
        p = scope + "." + ".".join(parts[:i])
        if p in ix.scopes:
            return ("repeat" if ix.scopes[p]["kind"] == "repeat" else "block"), p
        if p in ix.comps:
            return "comp", p
    return ("input" if ix.g.nodes[n].op == "input" else "add"), n


def units(ix: IRIndex, scope: str) -> list[Unit]:
    """The units of `scope`, each with the IR nodes it reads and the one it produces,
    in topological order (ties broken by the spec's order)."""
    by_key: dict[tuple, Unit] = {}
    for n in ix.members.get(scope, ()):
        key = _unit_key(ix, scope, n)
        by_key.setdefault(key, Unit(key[0], key[1], attr=key[1][len(scope) + 1:])).nodes.append(n)
    owner = {n: u for u in by_key.values() for n in u.nodes}
    dag = nx.DiGraph()
    for u in by_key.values():
        dag.add_node(u.path)
        inside = set(u.nodes)
        for n in u.nodes:
            for src, _ in ir.operands(ix.g, n):
                if src not in inside and src not in u.ins:
                    u.ins.append(src)
                    if src in owner:
                        dag.add_edge(owner[src].path, u.path)
        outs = [n for n in u.nodes
                if any(v not in inside for v in ix.g.successors(n)) or n in ix.branch_of
                or n == ix.outputs.get("output")]
        if len(outs) > 1:
            raise CodegenError(f"'{u.path}' produces {len(outs)} values ({', '.join(outs)}); "
                               "a unit must produce one")
        u.out = outs[0] if outs else u.nodes[-1]
        if u.kind == "add" and ix.g.nodes[u.path].op != "add":
            raise CodegenError(f"'{u.path}': op '{ix.g.nodes[u.path]['op']}' outside a component")
    first = {u.path: ix.index[u.nodes[0]] for u in by_key.values()}
    by_path = {u.path: u for u in by_key.values()}
    return [by_path[p] for p in nx.lexicographical_topological_sort(dag, key=lambda p: f"{first[p]:09d}")]


def scope_masks(ix: IRIndex, scope: str, params: list[str]) -> dict:
    """(causal, window) -> the variable holding its mask inside `scope`."""
    info = ix.info[scope.split(".")[0]]
    if scope != scope.split(".")[0] and [p for p in params if p in info.masks.values()] == ["mask"]:
        return {k: "mask" for k in info.masks}
    return dict(info.masks)


def child_arg(ix: IRIndex, e: str, child: str, masks: dict) -> str:
    """The variable a scope passes as argument `e` of its child block or repeat instance."""
    stack = child.split(".")[0]
    info = ix.info[stack]
    if e == "mask" or e in info.masks.values():
        kinds = attention_kinds(ix, child)
        if e == "mask" and len(kinds) <= 1:
            return masks[kinds[0]] if kinds else "None"
        kind = next(k for k, v in info.masks.items() if v == e)
        return masks[kind]
    return e


def plan_scope(ix: IRIndex, scope: str, params: list[str]) -> ScopePlan:
    """Name every value of `scope` (a stack or a block instance) by liveness."""
    stack = scope.split(".")[0]
    info = ix.info[stack]
    us = units(ix, scope)
    env: dict[str, str] = {}          # IR node -> the variable holding it
    inside = {n for u in us for n in u.nodes}
    for u in us:
        for src in u.ins:
            if src not in inside and src not in env:
                env[src] = memory_name(ix, src, stack) or "x"
        if u.kind == "input":
            env[u.path] = ix.g.nodes[u.path].attrs["name"]
    last: dict[str, int] = {}
    for i, u in enumerate(us):
        for src in u.ins:
            last[src] = i
    end = len(us)
    for u in us:
        if u.out in ix.branch_of or u.out == ix.outputs.get("output"):
            last[u.out] = end
    scope_out = ix.stacks[stack]["output"] if scope == stack else us[-1].out
    last[scope_out] = end
    inputs = {ix.g.nodes[u.path].attrs["name"] for u in us if u.kind == "input"}
    reserved = RESERVED | set(info.masks.values()) | (set(params) - {"x"}) | inputs
    masks = scope_masks(ix, scope, params)
    planned = []
    for i, u in enumerate(us):
        if u.kind == "input":
            continue
        u.args = [env[s] for s in u.ins]
        live = {env[n] for n, j in last.items() if j > i and n in env}
        if u.out in ix.branch_of:
            name = ix.branch_of[u.out]
        elif u.ins and last.get(u.ins[0]) == i and u.args[0] not in reserved:
            name = u.args[0]
        else:
            name = next(c for c in itertools.chain(("x", "h"), (f"h{k}" for k in itertools.count(2)))
                        if c not in live and c not in reserved)
        u.target = name
        if u.kind in ("block", "repeat"):
            first = ix.repeats[u.path]["instances"][0] if u.kind == "repeat" else u.path
            wanted = extras(ix, u.path)
            if u.kind == "repeat" and first not in ix.scopes:  # repeated components: their own needs
                wanted = [e for e in wanted if e in component_extras(ix, first, masks)]
            u.extras = [(e, child_arg(ix, e, first, masks)) for e in wanted]
            if u.kind == "repeat" and "mask" in wanted:
                per = [child_arg(ix, "mask", p, masks) for p in ix.repeats[u.path]["instances"]]
                if len(set(per)) > 1:
                    u.layer_masks = per
        elif u.kind == "comp":
            u.extras = list(component_extras(ix, u.path, masks).items())
        env[u.out] = name
        planned.append(u)
    for i, u in enumerate(planned):  # how often each value is read before it is reassigned
        for v in planned[i + 1:]:
            u.uses += v.args.count(u.target)
            if v.target == u.target:
                break
        if u.out in ix.branch_of or u.out == scope_out:
            u.uses += 1
    returns = [env[scope_out]]
    if scope == stack:
        returns += [env[n] for n in ix.outputs.values() if n in ix.branch_of and n.startswith(stack + ".")]
    return ScopePlan(scope, stack, params, planned, returns, masks)


def stack_inputs(ix: IRIndex, st: dict) -> tuple[list[str], list[str]]:
    """(required, optional) token inputs of a stack: declared ones, then those
    components added (`token_type_ids`)."""
    extra = [ix.g.nodes[n].attrs["name"] for n in ix.members.get(st["name"], ())
             if ix.g.nodes[n].op == "input"]
    names = list(st["inputs"]) + [i for i in extra if i not in st["inputs"]]
    optional = [i for i in names if ix.g.nodes[f"{st['name']}.{i}"]["attrs"].get("optional")]
    return [i for i in names if i not in optional], optional
