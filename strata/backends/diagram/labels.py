"""Labels and colours of diagram boxes: human names of components ("Masked
Self-Attention", "Feed Forward"), parameter counts (124.4M), the marks passes
leave (int8, pruned 50%, low-rank r=64) and the palette of the legend.

    >>> human_count(124_439_808)
    '124.4M'
"""

from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING

import networkx as nx

if TYPE_CHECKING:  # pragma: no cover
    from strata.backends.diagram.layout import _Fold

MAX_LINE = 48  # characters per label line; longer user names are cut with "…"

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

ACTS = {"relu": "ReLU", "gelu": "GELU", "gelu_tanh": "GELU (tanh)", "silu": "SiLU",
        "tanh": "tanh", "swiglu": "SwiGLU", "geglu": "GeGLU"}



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
    return sum(prod(s) for n in nodes for s in g.nodes[n]["params"].values())


# ------------------------------------------------------------------ folding

def componentmodel_title(c: dict) -> str:
    kind, o = c["kind"], c["options"]
    if kind == "attention":
        return "Masked Self-Attention" if o.get("causal") else "Self-Attention"
    if kind == "cross_attention":
        return "Encoder-Decoder Attention"
    if kind == "position":
        return {"learned": "Learned Positions", "sinusoidal": "Positional Encoding",
                "rotary": "Rotary Positions", "alibi": "ALiBi", "none": "No Positions"}[o["kind"]]
    return {"mlp": "Feed Forward", "moe": "Mixture of Experts", "layernorm": "LayerNorm",
            "rmsnorm": "RMSNorm", "embedding": "Token Embedding", "token_types": "Token Types",
            "dropout": "Dropout", "linear": "Linear", "activation": "Activation",
            "lm_head": "LM Head", "classifier": "Classifier", "pooler": "Pooler",
            "mlm_head": "MLM Head", "nsp_head": "NSP Head"}.get(kind, kind)


def component_detail(c: dict) -> str | None:
    kind, o = c["kind"], c["options"]
    if kind in ("attention", "cross_attention"):
        kv = o.get("kv_heads") or o["heads"]
        s = f"{o['heads']} heads" + (f", {kv} kv (GQA)" if kv != o["heads"] else "")
        if o.get("window"):
            s += f", window {o['window']}"
        return s
    if kind == "mlp":
        return f"{ACTS.get(o['act'], o['act'])}, hidden {o['hidden']}"
    if kind == "moe":
        return f"{o['experts']} experts, top-{o['top_k']}"
    if kind == "dropout":
        return f"p={o['p']}"
    if kind == "activation":
        return ACTS.get(o["fn"], o["fn"])
    return None


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
        return ACTS.get(a["fn"], a["fn"])
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
    """Marks left by passes on any of `members`: fused, int8, pruned %, low-rank r."""
    out: list[str] = []
    seen = set()

    def add(s):
        if s not in seen:
            seen.add(s)
            out.append(s)

    for n in members:
        a = g.nodes[n]["attrs"]
        if a.get("fused"):
            add(f"fused {'+'.join(a['fused'])}")
        if a.get("quant"):
            add(a["quant"])
        if a.get("pruned"):
            add(f"pruned {a['pruned'] * 100:g}%")
        if a.get("low_rank") == "a":
            add(f"low-rank r={a['rank']}")
    return out


# ------------------------------------------------------------------ describe
def model_title(g: nx.MultiDiGraph) -> str:
    t = f"{g.graph['name']} · {human_count(g.graph['parameters'])} parameters"
    dist = g.graph.get("distill")
    if dist and dist.get("teacher_parameters"):
        ratio = dist["teacher_parameters"] / max(g.graph["parameters"], 1)
        t += f" · student of {dist.get('teacher_name')} ({ratio:.1f}× smaller)"
    return t


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


def cluster_lines(g, key, kind, fold: _Fold, every) -> list[str]:
    name = key.rpartition(".")[2]
    if kind == "stack":
        stack = next(s for s in g.graph["stacks"] if s["name"] == key)
        lines = [cut(key)]
        pos = stack.get("positions", {}).get("type")
        nodes = [n for n in g.nodes if n == key or n.startswith(key + ".")]
        extra = f"{human_count(_params(g, nodes))} parameters"
        if pos in ("rotary", "alibi"):
            extra += f" · {'rotary' if pos == 'rotary' else 'ALiBi'} positions"
        return lines + [extra]
    if kind == "repeat":
        s = g.graph["scopes"][key]
        block = s.get("block") or name
        rep = next((r for r in g.graph["repeats"] if r["path"] == key), None)
        per = _params(g, [n for n in g.nodes if n.startswith(rep["instances"][0] + ".")]) if rep else 0
        total = _params(g, [n for n in g.nodes if n.startswith(key + ".")])
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
        c = g.graph["components"][key]
        return [cut(f"{componentmodel_title(c)} · {name}")]
    block = g.graph["scopes"].get(key, {}).get("block")
    return [cut(name if not block or block == name else f"{name}: {block}")]


def unit_label(g, u, members, every, level, fold: _Fold) -> tuple[list[str], str, str]:
    comps = g.graph["components"]
    scopes = g.graph["scopes"]
    notes = annotations(g, members)
    tied = sorted({_short(t.rpartition(".")[0], u) for n in members
                   for t in g.nodes[n]["tied"].values()})
    tied_note = [cut(f"tied to {', '.join(tied)}")] if tied else []
    if scopes.get(u, {}).get("kind") == "repeat" or (level == "model" and u in scopes
                                                     and scopes[u]["kind"] != "stack"):
        s = scopes[u]
        name = u.rpartition(".")[2]
        count = s.get("count", 1)
        block = s.get("block") or name
        if u in fold.group:  # an unfolded repeat instance: h.3
            block = f"{fold.group[u].rpartition('.')[2]}.{name}: {block}"
        lines = [cut(f"{block} × {count}" if count > 1 else block)]
        first = (next((r["instances"][0] for r in g.graph["repeats"] if r["path"] == u), u))
        inside = [c for c, info in comps.items() if c.startswith(first + ".")
                  and info["category"] in ("attention", "mlp")]
        if inside:
            lines.extend(_wrap([componentmodel_title(comps[c]) for c in inside], " → "))
        per = _params(g, [n for n in every if n.startswith(first + ".") or n == first])
        total = _params(g, every)
        if total:
            lines.append(f"{human_count(per)} per layer · {human_count(total)} total"
                         if count > 1 else human_count(total))
        return lines + [cut(", ".join(notes))] * bool(notes), "block", "box"
    if u in comps:
        c = comps[u]
        name = u.rpartition(".")[2]
        lines = [cut(componentmodel_title(c))]
        detail = component_detail(c) if level != "model" else None
        p = _params(g, members)
        second = name + (f" · {human_count(p)}" if p else "")
        lines.append(cut(second))
        if detail:
            lines.append(cut(detail))
        kind = c["category"] if c["category"] in PALETTE else "linear"
        if c["kind"] in ("pooler", "mlm_head", "nsp_head", "lm_head", "classifier"):
            kind = "head"
        return lines + tied_note + [cut(", ".join(notes))] * bool(notes), kind, "box"
    if u in g:
        nd = g.nodes[u]
        if nd["op"] == "add":
            return ["⊕"], "residual", "circle"
        if nd["op"] == "input":
            return ["Input sequence", cut(nd["attrs"].get("name", u.rpartition(".")[2]))], "io", \
                "stadium"
        name = u.rpartition(".")[2]
        p = _params(g, [u])
        lines = [cut(name), cut(_op_detail(nd))]
        if p:
            lines.append(human_count(p))
        return lines + tied_note + [cut(", ".join(notes))] * bool(notes), kind_of_node(nd), "box"
    # a group of ops without a component (model level: a block used once)
    p = _params(g, every)
    return [cut(u.rpartition(".")[2])] + ([human_count(p)] if p else []), "block", "box"
