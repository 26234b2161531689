"""Structured pruning: remove whole MLP neurons and attention heads.

The IR shrinks: an MLP's hidden width becomes `keep` (its up / gate rows and
down columns), an attention keeps `keep` heads (under GQA, `keep` key/value
groups with their query heads) with head_dim unchanged; the component's options
say so, so the summary, the diagram and the generated code show the smaller
model.  Every layer of a selection keeps the same count, so a repeat stays one
class; which neurons / heads stay is chosen per layer when the weights load —
from the weights (largest norms), or with calibration statistics from what each
unit adds to the output it writes (activation_aware) — and recorded:

    record = {"components": {"decoder.h.0.mlp": {"kind": "mlp", "of": 3072,
              "keep": 2150, "kept": [indices] or None, "linears": {...}}}}

`kept` is None until weights arrive (a model compiled without weights keeps
the first `keep`).  gather / scatter move state dicts between the full and the
shrunk shapes; scatter fills removed rows with zeros (the masked model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.compiler import ir
from strata.passes._rewrite import PassError, copy_graph, select
from strata.passes.lora import LoRA
from strata.passes.pass_base import drop_misfit_marks

if TYPE_CHECKING:
    import networkx as nx


def _keep(n: int, amount: float) -> int:
    return max(1, n - int(round(n * amount)))


def shrink(graph: "nx.MultiDiGraph", amount: float, on: str | None, label: str, merge: str | None = None):
    """merge: how the caller merges LoRA adapters it kept (PassContext.merge), for the
    refusal of an adapted linear; None: the spec's own lora pass put them there."""
    g = copy_graph(graph)
    comps = [c for c in select(g, on) if g.graph.components.get(c, {}).get("kind")
             in ("mlp", "attention", "cross_attention")]
    if not comps:
        raise PassError(f"{label}: structured pruning removes attention heads and MLP neurons; "
                        "the selection holds no attention or mlp")
    out, dropped = {}, {}
    for c in comps:
        out[c] = _mlp(g, c, amount, label, merge) if g.graph.components[c]["kind"] == "mlp" \
            else _attention(g, c, amount, label, merge)
        if out[c]["keep"] == out[c]["of"]:
            what = "MLP neurons" if out[c]["kind"] == "mlp" else "key/value head groups"
            raise PassError(f"{label}: removes nothing from '{c}': {amount:g} of its {out[c]['of']} "
                            f"{what} rounds to none (select other layers, or prune more)")
        _reshape_edges(g, c)
        for n in {**out[c]["rows"], **out[c]["cols"]}:  # an earlier pass's kernel may not hold the new width
            if why := drop_misfit_marks(g.nodes[n].attrs):
                dropped[n] = why
    before = sum(r["of"] for r in out.values())
    return g, {"components": out, "units": before, "removed": sum(r["of"] - r["keep"] for r in out.values()),
               "kept_float": dropped}


def _need(g, node: str, c: str, label: str, merge: str | None):
    if node not in g or g.nodes[node].op != "linear":  # low_rank put n.a, n.b in its place
        raise PassError(f"{label}: '{c}' was already factored by low_rank",
                        "list prune(method=structured) before low_rank in the passes")
    if LoRA.adapter(g.nodes[node].attrs):  # its adapters' rows and columns are the full width's
        raise PassError(f"{label}: '{node}' carries LoRA adapters, which fit its full width, not "
                        "the pruned one",
                        f"merge them first: {merge} (the default) merges them into the weights, and "
                        "the pruning then runs on plain linears" if merge else
                        "list prune(method=structured) before lora in the passes (the adapters are "
                        "then made for the pruned widths), or narrow on= to modules without adapters")
    return g.nodes[node]


def _resize(d: dict, out: int | None = None, d_in: int | None = None) -> None:
    """Set a linear node's widths and parameter shapes."""
    o0, i0 = d["params"]["weight"]
    o, i = out or o0, d_in or i0
    d["attrs"].update({"out": o, "in": i})
    d["params"]["weight"] = (o, i)
    if "bias" in d["params"]:
        d["params"]["bias"] = (o,)


def _mlp(g, c: str, amount: float, label: str, merge: str | None) -> dict:
    comp = g.graph.components[c]
    hidden = comp["options"]["hidden"]
    k = _keep(hidden, amount)
    fused = comp.get("facts", {}).get("fused") == "gate_up"
    rows = [f"{c}.gate_up"] if fused else [n for n in (f"{c}.gate", f"{c}.up") if n in g]
    for n in rows + [f"{c}.down"]:
        _need(g, n, c, label, merge)
    for n in rows:
        _resize(g.nodes[n], out=2 * k if fused else k)
    if fused:
        g.nodes[f"{c}.gate_up_split"].attrs["sizes"] = [k, k]
    _resize(g.nodes[f"{c}.down"], d_in=k)
    comp["options"] = {**comp["options"], "hidden": k}
    comp["syms"] = {s: v for s, v in comp.get("syms", {}).items() if s != "hidden"}
    # rows: (node, [(offset, size)] blocks of hidden units stacked in its weight)
    layout = {n: [(0, hidden), (hidden, hidden)] if fused else [(0, hidden)] for n in rows}
    return {"kind": "mlp", "of": hidden, "keep": k, "kept": None, "unit": 1,
            "rows": layout, "cols": {f"{c}.down": [(0, hidden)]}}


def _attention(g, c: str, amount: float, label: str, merge: str | None) -> dict:
    comp = g.graph.components[c]
    core = g.nodes[f"{c}.core"].attrs
    if core.get("alibi"):
        raise PassError(f"{label}: ALiBi's slopes depend on each head's index; pruning heads "
                        f"of '{c}' would change them (prune its MLP instead)")
    H, K, hd = core["heads"], core["kv_heads"], core["head_dim"]
    group = H // K                      # query heads per key/value head
    keep_kv = _keep(K, amount)          # GQA: whole groups go; MHA (group 1): heads
    kh = keep_kv * group
    fused = comp.get("facts", {}).get("fused")
    qw, kvw = H * hd, K * hd
    if fused == "qkv":
        rows = {f"{c}.qkv": ("qkv", [(0, qw, group), (qw, kvw, 1), (qw + kvw, kvw, 1)])}
    else:
        rows = {f"{c}.q": ("q", [(0, qw, group)])}
        if fused == "kv":
            rows[f"{c}.kv"] = ("kv", [(0, kvw, 1), (kvw, kvw, 1)])
        else:
            rows.update({f"{c}.k": ("k", [(0, kvw, 1)]), f"{c}.v": ("v", [(0, kvw, 1)])})
    for n in list(rows) + [f"{c}.o"]:
        _need(g, n, c, label, merge)
    new_w = {"q": kh * hd, "k": keep_kv * hd, "v": keep_kv * hd}
    for n, (role, _) in rows.items():
        _resize(g.nodes[n], out=sum(new_w[r] for r in role))
    if fused in ("qkv", "kv"):
        g.nodes[f"{c}.{fused}_split"].attrs["sizes"] = [new_w[r] for r in fused]
    _resize(g.nodes[f"{c}.o"], d_in=kh * hd)
    core.update(heads=kh, kv_heads=keep_kv)
    opts = dict(comp["options"])
    opts.update(heads=kh, head_dim=hd, kv_heads=keep_kv if keep_kv != kh else None)
    comp["options"] = opts
    comp["syms"] = {s: v for s, v in comp.get("syms", {}).items() if s not in ("heads", "kv_heads", "head_dim")}
    # A unit is one key/value group: `group` query heads and one k and v head,
    # each block of rows holding `count` units of width hd * (heads per unit).
    return {"kind": "attention", "of": K, "keep": keep_kv, "kept": None, "heads": H, "kv_heads": K,
            "head_dim": hd, "group": group,
            "rows": {n: [(off, size) for off, size, _ in blocks] for n, (_, blocks) in rows.items()},
            "unit_rows": {n: [hd * per for _, _, per in blocks] for n, (_, blocks) in rows.items()},
            "cols": {f"{c}.o": [(0, qw)]}, "unit_cols": {f"{c}.o": [hd * group]}}


def _width(g, n: str, e: dict) -> int | None:
    d = g.nodes[n]
    if d.op == "linear":
        return d.attrs["out"]
    if d.op == "split":
        return d.attrs["sizes"][e.get("part", 0)]
    if d.op == "attention":
        return d.attrs["heads"] * d.attrs["head_dim"]
    ins = ir.operands(g, n)
    return ins[0][1]["shape"][-1] if ins else None


def _reshape_edges(g, c: str) -> None:
    """Recompute the last dim of every edge leaving a node of component `c`,
    in topological order, and forget symbolic widths that no longer hold."""
    members = [n for n in ir.topo_order(g) if g.nodes[n].component == c]
    for n in members:
        for _, _, key, e in list(g.out_edges(n, keys=True, data=True)):
            w = _width(g, n, e)
            if w is not None and e["shape"][-1] != w:
                g.edges[n, _, key]["shape"] = e["shape"][:-1] + (w,)
                sym = g.nodes[n].get("sym")
                if sym:
                    g.nodes[n].sym = tuple(sym[:-1]) + (None,)


# ---------------------------------------------------------------- weights (torch)

def _importance(rec: dict, state: dict) -> "object":
    """One score per unit (MLP neuron / key-value group): the product of the
    norms of what it reads and writes (rows in, columns out)."""
    import torch  # lazy: torch

    score = torch.ones(rec["of"], dtype=torch.float64)
    for n, blocks in rec["rows"].items():
        w = state[f"{n}.weight"].double()
        per = rec.get("unit_rows", {}).get(n, [rec.get("unit", 1)] * len(blocks))
        for (off, size), width in zip(blocks, per):
            part = w[off:off + size].reshape(rec["of"], -1)  # (units, width * d)
            score = score * part.norm(dim=1).clamp_min(1e-30)
    for n, blocks in rec["cols"].items():
        w = state[f"{n}.weight"].double()
        for off, size in blocks:
            part = w[:, off:off + size].T.reshape(rec["of"], -1)
            score = score * part.norm(dim=1).clamp_min(1e-30)
    return score


def _output_importance(rec: dict, state: dict, stats: dict) -> "object | None":
    """One score per unit from calibration: the expected norm of what it adds to
    the output of the linears reading it (down for an MLP neuron, o for a
    key/value group's heads), sqrt(sum over its columns c of E[x_c^2] ||W[:, c]||^2)
    — the activation importance of Minitron (Muralidharan et al. 2024), weighted
    by the columns that carry it out.  None when no calibration row reached them."""
    import torch  # lazy: torch

    score = torch.zeros(rec["of"], dtype=torch.float64)
    for n, blocks in rec["cols"].items():
        s = stats.get(n)
        if s is None or not s["n"]:
            return None
        w = state[f"{n}.weight"].double()
        carried = w.pow(2).sum(0) * (s["sq"].double().to(w.device) / s["n"])  # [in]
        for off, size in blocks:
            score += carried[off:off + size].reshape(rec["of"], -1).sum(1).cpu()
    return score.sqrt()


def _index(rec: dict, blocks, per_unit: list[int]) -> "object":
    """Row (or column) indices of the kept units within each block, concatenated."""
    import torch  # lazy: torch

    kept = torch.tensor(rec["kept"])
    out = []
    for (off, _), width in zip(blocks, per_unit):
        out.append((off + kept[:, None] * width + torch.arange(width)[None, :]).flatten())
    return torch.cat(out)


def _per(rec: dict, n: str, key: str, blocks) -> list[int]:
    return rec.get(f"unit_{key}", {}).get(n, [rec.get("unit", 1)] * len(blocks))


def gather(record: dict, state: dict, stats: dict | None = None, chosen: bool = False) -> dict:
    """The kept units' rows and columns of `state` (the spec's shapes -> the
    pruned ones).  Which units: by `stats` (calibration statistics of the
    linears reading the units: activation importance) when given, else those
    already chosen (`chosen`: an activation-aware choice is not redone from the
    weights when a checkpoint is renamed later), else by weight norms."""
    import torch  # lazy: torch

    out = dict(state)
    for rec in record["components"].values():
        if not all(f"{n}.weight" in out for n in list(rec["rows"]) + list(rec["cols"])):
            continue
        score = _output_importance(rec, out, stats) if stats is not None else None
        if score is None and chosen:
            if rec["kept"] is None:
                raise PassError("prune(method=structured, activation_aware=true) chooses from calibration "
                                "data when the weights load: compile(spec, weights=..., calibration=...)")
        else:
            rec["kept"] = sorted(torch.topk(score if score is not None else _importance(rec, out),
                                            rec["keep"]).indices.tolist())
        for n, blocks in rec["rows"].items():
            idx = _index(rec, blocks, _per(rec, n, "rows", blocks))
            out[f"{n}.weight"] = out[f"{n}.weight"][idx].clone()
            if f"{n}.bias" in out:
                out[f"{n}.bias"] = out[f"{n}.bias"][idx].clone()
        for n, blocks in rec["cols"].items():
            idx = _index(rec, blocks, _per(rec, n, "cols", blocks))
            out[f"{n}.weight"] = out[f"{n}.weight"][:, idx].clone()
    return out


def scatter(record: dict, state: dict) -> dict:
    import torch  # lazy: torch

    out = dict(state)
    for rec in record["components"].values():
        if rec["kept"] is None:
            rec = {**rec, "kept": list(range(rec["keep"]))}
        for n, blocks in rec["rows"].items():
            idx = _index(rec, blocks, _per(rec, n, "rows", blocks))
            full = sum(size for _, size in blocks)
            for suffix in ("weight", "bias"):
                t = out.get(f"{n}.{suffix}")
                if t is not None:
                    z = torch.zeros((full,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
                    z[idx] = t
                    out[f"{n}.{suffix}"] = z
        for n, blocks in rec["cols"].items():
            idx = _index(rec, blocks, _per(rec, n, "cols", blocks))
            t = out.get(f"{n}.weight")
            if t is not None:
                z = torch.zeros((t.shape[0], sum(size for _, size in blocks)), dtype=t.dtype, device=t.device)
                z[:, idx] = t
                out[f"{n}.weight"] = z
    return out


def report(record: dict) -> str:
    comps = record["components"].values()
    parts = []
    for kind, unit in (("mlp", "MLP neurons"), ("attention", "key/value head groups")):
        rs = [r for r in comps if r["kind"] == kind]
        if rs:
            if kind == "attention" and all(r["group"] == 1 for r in rs):
                unit = "attention heads"
            parts.append(f"{sum(r['of'] - r['keep'] for r in rs):,} of {sum(r['of'] for r in rs):,} "
                         f"{unit} removed in {len(rs)} layer{'s' * (len(rs) != 1)} "
                         f"({rs[0]['of']} -> {rs[0]['keep']} each)")
    kept = record.get("kept_float") or {}
    if kept:  # an earlier quantize's marks the new widths cannot hold
        reasons = sorted(set(kept.values()))
        parts.append(f"{len(kept)} linear{'s' * (len(kept) != 1)} kept in float: {', '.join(reasons[:3])}"
                     + (" ..." if len(reasons) > 3 else ""))
    return "prune (structured): " + "; ".join(parts)
