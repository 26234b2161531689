"""`strata summary`: modules, kinds, output shapes, parameters, FLOPs, memory.

The table folds repeats ("decoder.h × 12") and lists one instance's modules
beneath; the JSON lists every module unfolded.

    >>> from strata.compiler import build_file
    >>> s = summary_dict(build_file("specs/tiny_shakespeare.arch"))
    >>> s["parameters"], s["modules"][0]["path"]
    (809856, 'decoder.wte')
"""

from __future__ import annotations

from math import prod

import networkx as nx

from strata.compiler.cost import analyze
from strata.compiler.ir import format_shape, output_shape, repeat_groups, scope_nodes


def _component_rows(g: nx.MultiDiGraph) -> list[dict]:
    rows = []
    by_comp: dict[str, list[str]] = {}
    for n, d in g.nodes(data=True):
        if d["component"]:
            by_comp.setdefault(d["component"], []).append(n)
    for path, c in g.graph["components"].items():
        nodes = by_comp.get(path, [])
        params = sum(prod(s) for n in nodes for s in g.nodes[n]["params"].values())
        tied = sorted({t for n in nodes for t in g.nodes[n]["tied"].values()})
        shape = output_shape(g, nodes[-1]) if nodes else None
        rows.append({"path": path, "kind": c["kind"], "parameters": params,
                     "output_shape": [str(x) if isinstance(x, str) else x for x in shape]
                     if shape else None, "tied": tied})
    return rows


def summary_dict(g: nx.MultiDiGraph) -> dict:
    """Everything `strata summary --json` prints."""
    a = analyze(g)
    repeats = []
    for r in repeat_groups(g):
        each = sum(prod(s) for n in scope_nodes(g, r["instances"][0])
                   for s in g.nodes[n]["params"].values())
        total = sum(prod(s) for n in scope_nodes(g, r["path"]) for s in g.nodes[n]["params"].values())
        repeats.append({"path": r["path"], "block": r["block"], "count": r["count"],
                        "uniform": r["uniform"], "parameters_each": each if r["uniform"] else None,
                        "parameters": total})
    return {
        "name": g.graph["name"],
        **a,
        "stacks": [{"name": s["name"], "inputs": s["inputs"], "memory": s["memory"],
                    "output_shape": [str(x) if isinstance(x, str) else x for x in s["shape"]]}
                   for s in g.graph["stacks"]],
        "outputs": dict(g.graph["outputs"]),
        "repeats": repeats,
        "passes": [{"name": p["name"], "options": p["options"]} for p in g.graph["passes"]],
        "modules": _component_rows(g),
    }


def human(n: float) -> str:
    """124439808 -> '124.4M'."""
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return str(int(n))


def _bytes(n: float) -> str:
    for unit, div in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


def summary_rows(g: nx.MultiDiGraph, depth: int | None = None) -> list[tuple[str, str, str, str]]:
    """(module, kind, output shape, parameters) rows with repeats folded."""
    rows = _component_rows(g)
    groups = repeat_groups(g)
    out: list[tuple[str, str, str, str]] = []
    shown_groups: set[str] = set()
    for r in rows:
        path = r["path"]
        grp = next((x for x in groups if path.startswith(x["path"] + ".")), None)
        if grp is not None:
            rest = path[len(grp["path"]) + 1:]
            idx, _, sub = rest.partition(".")
            if grp["path"] not in shown_groups:
                shown_groups.add(grp["path"])
                total = sum(prod(s) for n in scope_nodes(g, grp["path"])
                            for s in g.nodes[n]["params"].values())
                each = total // grp["count"] if grp["uniform"] else None
                note = f"{total:,}" + (f"  ({each:,} each)" if each is not None else "")
                shape = output_shape(g, scope_nodes(g, grp["instances"][-1])[-1])
                out.append((f"{grp['path']} × {grp['count']}", grp["block"], format_shape(shape), note))
            variant = next(v for v in grp["variants"] if f"{grp['path']}.{idx}" in v)
            if f"{grp['path']}.{idx}" != variant[0] or not sub:
                continue
            label = f"  .{sub}" if grp["uniform"] else f"  [{_indices(variant, grp['path'])}].{sub}"
            if depth is not None and path.count(".") + 1 > depth:
                continue
            out.append((label, r["kind"], format_shape(tuple(r["output_shape"] or ())), _params(r)))
            continue
        if depth is not None and path.count(".") + 1 > depth:
            continue
        out.append((path, r["kind"], format_shape(tuple(r["output_shape"] or ())), _params(r)))
    return out


def _indices(variant: list[str], group: str) -> str:
    return ",".join(v[len(group) + 1:] for v in variant)


def _params(r: dict) -> str:
    s = f"{r['parameters']:,}"
    if r["tied"]:
        s += "  (tied: " + ", ".join(t.rpartition(".")[0] for t in r["tied"]) + ")"
    return s


def print_summary(g: nx.MultiDiGraph, depth: int | None = None, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    a = analyze(g)
    t = Table(title=f"{g.graph['name']}", title_justify="left", show_lines=False)
    t.add_column("module")
    t.add_column("kind")
    t.add_column("output shape")
    t.add_column("parameters", justify="right")
    for row in summary_rows(g, depth):
        t.add_row(*row)
    console.print(t)
    m = a["memory"]
    console.print(
        f"parameters           {a['parameters']:,} ({human(a['parameters'])})\n"
        f"trainable            {a['trainable_parameters']:,}\n"
        f"non-embedding        {a['non_embedding_parameters']:,}\n"
        f"FLOPs per token      {human(a['flops_per_token'])} forward, "
        f"{human(a['training_flops_per_token'])} training (at T={a['seq_len']})\n"
        f"weights              {_bytes(m['weights_fp32_bytes'])} fp32, "
        f"{_bytes(m['weights_bf16_bytes'])} bf16\n"
        f"training state       {_bytes(m['training_fp32_bytes'])} (fp32 weights, grads, AdamW)\n"
        f"KV cache             {_bytes(m['kv_cache_bf16_bytes_per_token'])} per token (bf16)",
        highlight=False)
