"""Labels and colours of diagram boxes: human names of components ("Masked
Self-Attention", "Feed Forward"), parameter counts (124.4M), the marks passes
leave (int8, pruned 50%, low-rank r=64) and the palette of the legend.

A component's title and detail line come from its registration in
`strata.components` (next to its options, elaboration and lowering).

    >>> human_count(124_439_808)
    '124.4M'
    >>> component_title({"kind": "attention", "options": {"causal": True}})
    'Masked Self-Attention'
"""

from __future__ import annotations

from math import prod

import networkx as nx

from strata.backends.diagram.fold import Fold
from strata.components import COMPONENTS
from strata.components.embeddings import Position
from strata.components.feedforward import ACT_NAMES
from strata.passes import REGISTRY

MAX_LINE = 48  # characters per label line; longer user names are cut with "…"
ROPE_THETA = Position.model_fields["base"].default  # a stack's title names any other base

# kind -> (legend label, fill, stroke)
PALETTE: dict[str, tuple[str, str, str]] = {
    "io": ("Input / output", "#eeeeee", "#777777"),
    "embedding": ("Embedding", "#fde2c4", "#c98a3c"),
    "position": ("Positions", "#fff2b3", "#b8a23a"),
    "attention": ("Attention", "#cfe2ff", "#4a78c2"),
    "mlp": ("Feed forward", "#d4f0d4", "#4b9a4b"),
    "norm": ("Norm", "#eadcf8", "#8a63b8"),
    "dropout": ("Dropout", "#f4f4f4", "#9a9a9a"),
    "residual": ("Residual add", "#ffffff", "#555555"),
    "linear": ("Linear", "#e3e3e3", "#777777"),
    "activation": ("Activation", "#f5f5dc", "#a0a060"),
    "head": ("Head", "#f9d0d0", "#c25a5a"),
    "block": ("Repeated block", "#e8eef7", "#5a6f94"),
    "teacher": ("Teacher (distillation)", "#ffe0f0", "#b8487f"),
}

# cluster kind -> (fill, stroke, stroke width, dashed): quieter than the boxes, a
# repeat in the "Repeated block" colours; both renderers draw clusters with these.
CLUSTER_STYLE: dict[str, tuple[str, str, int, bool]] = {
    "stack": ("#fafafa", "#999999", 1, False),
    "repeat": ("#f3f6fb", "#5a6f94", 2, False),
    "instance": ("#f3f6fb", "#5a6f94", 2, False),
    "block": ("#ffffff", "#b3b3b3", 1, False),
    "component": ("#ffffff", "#bbbbbb", 1, True),
    "legend": ("#ffffff", "#bbbbbb", 1, False),
}
TEXT = "#111111"  # every label's colour


def human_count(n: float) -> str:
    """124439808 -> '124.4M'; 7_100_000 -> '7.1M'; 512 -> '512'."""
    for div, suffix in ((10 ** 12, "T"), (10 ** 9, "B"), (10 ** 6, "M"), (10 ** 3, "K")):
        if n >= div:
            return f"{n / div:.1f}{suffix}"
    return str(int(n))


def cut(s: str) -> str:
    s = " ".join(str(s).split())  # no newlines or tabs in labels
    return s if len(s) <= MAX_LINE else s[:MAX_LINE - 1] + "…"


def _params(g: nx.MultiDiGraph, nodes) -> int:
    return sum(prod(s) for n in nodes for s in g.nodes[n].params.values())


# ------------------------------------------------------------------ component labels

def component_title(c: dict) -> str:
    """The human title of a component (`g.graph.components[path]`), as its
    registration in `strata.components` gives it from its options."""
    comp = COMPONENTS.get(c["kind"])
    return comp.title(c["options"]) if comp else c["kind"]


def component_detail(c: dict) -> str | None:
    """The detail line of a component's box ("SwiGLU, hidden 11008"), or None."""
    comp = COMPONENTS.get(c["kind"])
    return comp.detail(c["options"]) if comp else None


# ------------------------------------------------------------------ op labels

def _op_detail(d: dict) -> str:
    a, op = d["attrs"], d["op"]
    if op == "linear":
        return f"Linear {a.get('in')}→{a.get('out')}"
    if op == "attention":
        return f"Attention {a['heads']} heads" + (" causal" if a.get("causal") else "") \
            + (" cross" if a.get("cross") else "")
    if op == "norm":
        return "RMSNorm" if a.get("type") == "rms" else "LayerNorm"
    if op == "activation":
        return ACT_NAMES.get(a["fn"], a["fn"])
    if op == "embedding":
        return {"token": "Embedding", "position": "Position", "token_type": "Token types"
                }.get(a.get("role"), "Embedding") + (f" ({a['type']})" if a.get("type") else "")
    if op == "dropout":
        return f"Dropout p={a.get('p')}"
    if op == "split":
        return "Split " + "/".join(str(s) for s in a["sizes"])
    if op == "moe":
        return f"MoE {a['experts']} experts top-{a['top_k']}"
    if op == "pool":
        return f"Pool ({a.get('mode')})"
    if op == "mul":
        return "⊗ gate"
    return op


def kind_of_node(d: dict) -> str:
    if d["op"] == "input":
        return "io"
    if d["op"] == "add":
        return "residual"
    k = d["kind"]
    return k if k in PALETTE else "linear"


def annotations(g: nx.MultiDiGraph, members: list[str]) -> list[str]:
    """Marks left by passes on any of `members`: fused, int8, pruned %, low-rank r,
    LoRA r (each pass's `badges` hook, in the registry's order)."""
    out: list[str] = []
    names = {a["name"] for a in g.graph.get("applied", [])}
    passes = [cls for name, cls in REGISTRY.items() if name in names]
    for n in members:
        a = g.nodes[n].attrs
        for cls in passes:
            out += [s for s in cls.badges(a) if s not in out]
    return out


# ------------------------------------------------------------------ totals under a path

class Totals:
    """Parameters at or under every scope (stack, block, repeat, repeat instance),
    and the attention / MLP components under it, from one pass over the graph,
    so that labelling every layer of a deep model stays linear in its size."""

    def __init__(self, g: nx.MultiDiGraph):
        scopes = g.graph.scopes
        self._own: dict[str, int] = {}
        self._under: dict[str, int] = {}
        for n, d in g.nodes(data=True):
            p = sum(prod(s) for s in d.params.values())
            if not p:
                continue
            self._own[n] = p
            for prefix in _prefixes(n):
                if prefix in scopes:
                    self._under[prefix] = self._under.get(prefix, 0) + p
        self._parts: dict[str, list[str]] = {}
        for c, info in g.graph.components.items():
            if info["category"] in ("attention", "mlp"):
                for prefix in _prefixes(c)[:-1]:
                    if prefix in scopes:
                        self._parts.setdefault(prefix, []).append(c)

    def params(self, scope: str, *, inclusive: bool = True) -> int:
        """Parameters of the nodes under `scope` (and of a node named `scope` itself
        if inclusive)."""
        total = self._under.get(scope, 0)
        return total if inclusive else total - self._own.get(scope, 0)

    def parts(self, scope: str) -> list[str]:
        """The attention and MLP components under `scope`, in spec order."""
        return self._parts.get(scope, [])


def _prefixes(path: str) -> list[str]:
    """'a.b.c' -> ['a', 'a.b', 'a.b.c']."""
    out = []
    i = path.find(".")
    while i >= 0:
        out.append(path[:i])
        i = path.find(".", i + 1)
    out.append(path)
    return out


# ------------------------------------------------------------------ titles and boxes

def model_title(g: nx.MultiDiGraph) -> str:
    t = f"{g.graph['name']} · {human_count(g.graph['parameters'])} parameters"
    dist = g.graph.distill
    if dist and dist.get("teacher_parameters"):
        ratio = dist["teacher_parameters"] / max(g.graph.parameters, 1)
        t += f" · student of {dist.get('teacher_name')} ({ratio:.1f}× smaller)"
    return t


def teacher_lines(dist: dict) -> list[str]:
    """The teacher box of a distilled model: its name over up to three lines, its size."""
    who = dist.get("teacher_name") or dist["teacher"]
    text = " ".join(f"Teacher: {who}".split())
    lines = [text[i:i + MAX_LINE] for i in range(0, min(len(text), 3 * MAX_LINE), MAX_LINE)]
    lines[-1] = cut(text[(len(lines) - 1) * MAX_LINE:])
    if dist.get("teacher_parameters"):
        lines.append(f"{human_count(dist['teacher_parameters'])} parameters")
    return lines


def _short(target: str, here: str) -> str:
    """`decoder.wte` seen from `decoder.lm_head` -> `wte`; from another stack the
    stack name stays: `encoder.embed`."""
    if target.split(".")[0] == here.split(".")[0]:
        return target.rpartition(".")[2]
    return target.split(".")[0] + "." + target.rpartition(".")[2]


def _wrap(parts: list[str], sep: str) -> list[str]:
    """Join `parts` with `sep` into lines of at most MAX_LINE characters."""
    lines, cur = [], ""
    for i, p in enumerate(parts):
        piece = p + (sep.rstrip() if i < len(parts) - 1 else "")
        if cur and len(cur) + 1 + len(piece) > MAX_LINE:
            lines.append(cur)
            cur = piece
        else:
            cur = f"{cur} {piece}" if cur else piece
    return [cut(x) for x in lines + [cur]]


def cluster_lines(g: nx.MultiDiGraph, key: str, kind: str, fold: Fold, totals: Totals
                  ) -> list[str]:
    """The title lines of the cluster drawn for scope `key` (kind: stack | repeat |
    instance | component | block)."""
    name = key.rpartition(".")[2]
    if kind == "stack":
        stack = next(s for s in g.graph.stacks if s["name"] == key)
        pos = stack.get("positions", {}).get("type")
        extra = f"{human_count(totals.params(key))} parameters"
        if pos in ("rotary", "alibi"):
            extra += f" · {'rotary' if pos == 'rotary' else 'ALiBi'} positions"
            base = stack["positions"].get("base")
            if pos == "rotary" and base is not None and base != ROPE_THETA:
                extra += f" θ={base:,.0f}" if base == int(base) else f" θ={base:g}"
        return [cut(key), extra]
    if kind == "repeat":
        s = g.graph.scopes[key]
        block = s.get("block") or name
        first = fold.first.get(key)
        per = totals.params(first, inclusive=False) if first else 0
        total = totals.params(key, inclusive=False)
        lines = [cut(f"{name}: {block} × {s['count']}")]
        if per:
            lines.append(f"{human_count(per)} per layer · {human_count(total)} total")
        return lines
    if kind == "instance":
        n = fold.count.get(key, 1)
        group = fold.group[key].rpartition(".")[2]
        lines = [cut(f"{group}.{name}" + (f" × {n}" if n > 1 else ""))]
        if n > 1:
            idx = [m.rpartition(".")[2] for m in fold.members[key]]
            lines.append(cut("instances " + ", ".join(idx)))
        return lines
    if kind == "component":
        c = g.graph.components[key]
        return [cut(f"{component_title(c)} · {name}")]
    block = g.graph.scopes.get(key, {}).get("block")
    return [cut(name if not block or block == name else f"{name}: {block}")]


def box_label(g: nx.MultiDiGraph, u: str, members: list[str], every: list[str], level: str,
              fold: Fold, totals: Totals) -> tuple[list[str], str, str]:
    """(lines, palette kind, shape) of the box drawn for unit `u`: `members` are
    the IR nodes of the drawn instance, `every` all the IR nodes it stands for."""
    comps = g.graph.components
    scopes = g.graph.scopes
    notes = [cut(", ".join(n))] if (n := annotations(g, members)) else []
    tied = sorted({_short(t.rpartition(".")[0], u) for n in members
                   for t in g.nodes[n].tied.values()})
    tied_note = [cut(f"tied to {', '.join(tied)}")] if tied else []
    if scopes.get(u, {}).get("kind") == "repeat" or (level == "model" and u in scopes
                                                     and scopes[u]["kind"] != "stack"):
        return _block_lines(g, u, every, fold, totals) + notes, "block", "box"
    if u in comps:
        c = comps[u]
        p = _params(g, members)
        lines = [cut(component_title(c)), cut(u.rpartition(".")[2] + (f" · {human_count(p)}" if p else ""))]
        detail = component_detail(c) if level != "model" else None
        if detail:
            lines.append(cut(detail))
        kind = c["category"] if c["category"] in PALETTE else "linear"
        return lines + tied_note + notes, kind, "box"
    if u in g:
        nd = g.nodes[u]
        if nd.op == "add":
            return ["⊕"], "residual", "circle"
        if nd.op == "input":
            return ["Input sequence", cut(nd.attrs.get("name", u.rpartition(".")[2]))], "io", \
                "stadium"
        p = _params(g, [u])
        lines = [cut(u.rpartition(".")[2]), cut(_op_detail(nd))] + ([human_count(p)] if p else [])
        return lines + tied_note + notes, kind_of_node(nd), "box"
    # a group of ops without a component (model level: a block used once)
    p = _params(g, every)
    return [cut(u.rpartition(".")[2])] + ([human_count(p)] if p else []), "block", "box"


def _block_lines(g: nx.MultiDiGraph, u: str, every: list[str], fold: Fold, totals: Totals
                 ) -> list[str]:
    """A repeat or a block drawn as one box (model level): "layer × 12", the
    attention and MLP titles of one layer, parameters per layer and in total."""
    s = g.graph.scopes[u]
    name = u.rpartition(".")[2]
    count = s.get("count", 1)
    block = s.get("block") or name
    if u in fold.group:  # an unfolded repeat instance: h.3
        block = f"{fold.group[u].rpartition('.')[2]}.{name}: {block}"
    lines = [cut(f"{block} × {count}" if count > 1 else block)]
    first = fold.first.get(u, u)
    inside = totals.parts(first)
    if inside:
        comps = g.graph.components
        lines.extend(_wrap([component_title(comps[c]) for c in inside], " → "))
    total = _params(g, every)
    if total:
        per = totals.params(first)
        lines.append(f"{human_count(per)} per layer · {human_count(total)} total"
                     if count > 1 else human_count(total))
    return lines
