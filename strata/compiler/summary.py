"""`strata summary`: modules, kinds, output shapes, parameters, FLOPs, memory.

The table folds repeats ("decoder.h × 12") and lists one instance's modules
beneath; a repeat whose layers differ (alternating windows) lists one instance
per variant under a heading naming the layers it stands for ("[0,2,…,22] × 12").
The JSON lists every module unfolded.

    >>> from strata.compiler import build_file
    >>> s = summary_dict(build_file("specs/tiny_shakespeare.arch"))
    >>> s["parameters"], s["modules"][0]["path"]
    (809856, 'decoder.wte')
"""

from __future__ import annotations

import textwrap
from math import prod

import networkx as nx

from strata.compiler.cost import analyze
from strata.compiler.ir import format_shape, output_shape, repeat_groups

Row = tuple[str, str, str, str]  # module, kind, output shape, parameters


def _component_rows(g: nx.MultiDiGraph) -> list[dict]:
    rows = []
    by_comp: dict[str, list[str]] = {}
    for n, d in g.nodes(data=True):
        if d.component:
            by_comp.setdefault(d.component, []).append(n)
    for path, c in g.graph.components.items():
        nodes = by_comp.get(path, [])
        params = sum(prod(s) for n in nodes for s in g.nodes[n].params.values())
        tied = sorted({t for n in nodes for t in g.nodes[n].tied.values()})
        shape = output_shape(g, nodes[-1]) if nodes else None
        rows.append({"path": path, "kind": c["kind"], "parameters": params,
                     "output_shape": [str(x) if isinstance(x, str) else x for x in shape]
                     if shape else None, "tied": tied})
    return rows


class _Scopes:
    """Parameters at or under, and the last node of, every repeat and repeat instance,
    from one pass over the graph (so a 2000-layer summary stays linear)."""

    def __init__(self, g: nx.MultiDiGraph, groups: list[dict]):
        paths = {r["path"] for r in groups} | {i for r in groups for i in r["instances"]}
        self.params: dict[str, int] = dict.fromkeys(paths, 0)
        self.last: dict[str, str] = {}
        for n, d in g.nodes(data=True):
            p = sum(prod(s) for s in d.params.values())
            i = n.find(".")
            while True:  # every prefix of n at a dot, and n itself
                prefix = n if i < 0 else n[:i]
                if prefix in self.params:
                    self.params[prefix] += p
                    self.last[prefix] = n
                if i < 0:
                    break
                i = n.find(".", i + 1)


def summary_dict(g: nx.MultiDiGraph, reports: list[str] = ()) -> dict:
    """Everything `strata summary --json` prints; `reports`: one line per applied
    pass, what it did (strata.passes.report(g): the caller's, as the compiler
    sits below the passes)."""
    a = analyze(g)
    groups = repeat_groups(g)
    scopes = _Scopes(g, groups)
    repeats = []
    for r in groups:
        repeats.append({"path": r["path"], "block": r["block"], "count": r["count"],
                        "uniform": r["uniform"],
                        "parameters_each": scopes.params[r["instances"][0]] if r["uniform"] else None,
                        "parameters": scopes.params[r["path"]]})
    return {
        "name": g.graph.name,
        **a,
        "stacks": [{"name": s["name"], "inputs": s["inputs"], "memory": s["memory"],
                    "output_shape": [str(x) if isinstance(x, str) else x for x in s["shape"]]}
                   for s in g.graph.stacks],
        "outputs": dict(g.graph.outputs),
        "repeats": repeats,
        "passes": [{"name": p["name"], "options": p["options"]} for p in g.graph.passes],
        "applied": [{"name": p["name"], "options": p["options"], "report": r}
                    for p, r in zip(g.graph.get("applied", []), reports)],
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


def index_ranges(indices: list[int]) -> str:
    """Layer indices, short: a run as a-b, four or more evenly spaced as a,b,…,z.

    >>> index_ranges([0, 2, 4, 6, 8]), index_ranges([1, 2, 3, 7]), index_ranges([0, 3, 6])
    ('0,2,…,8', '1-3,7', '0,3,6')
    """
    out, i = [], 0
    while i < len(indices):
        j = i + 1  # indices[i:j] is evenly spaced
        if j < len(indices):
            step = indices[j] - indices[i]
            while j < len(indices) and indices[j] - indices[j - 1] == step:
                j += 1
            if step == 1 and j - i >= 3:
                out.append(f"{indices[i]}-{indices[j - 1]}")
                i = j
                continue
            if j - i >= 4:
                out.append(f"{indices[i]},{indices[i + 1]},…,{indices[j - 1]}")
                i = j
                continue
        out.append(str(indices[i]))
        i += 1
    return ",".join(out)


def summary_rows(g: nx.MultiDiGraph, depth: int | None = None, groups: list[dict] | None = None
                 ) -> list[Row]:
    """(module, kind, output shape, parameters) rows with repeats folded: a repeat's
    row, then the modules of its first instance (of each variant, under a heading
    naming its layers) indented beneath; nested repeats fold the same way.
    `groups`: `repeat_groups(g)` when the caller has it already."""
    groups = repeat_groups(g) if groups is None else groups
    scopes = _Scopes(g, groups)
    instance_of: dict[str, tuple[dict, list[str]]] = {}  # instance -> (its group, its variant)
    for r in groups:
        for variant in r["variants"]:
            for inst in variant:
                instance_of[inst] = (r, variant)
    out: list[Row] = []
    shown: set[str] = set()  # repeat and variant headings already emitted

    def visible(path: str) -> bool:
        return depth is None or path.count(".") + 1 <= depth

    for row in _component_rows(g):
        path = row["path"]
        parts = path.split(".")
        indent, anchor, drawn = "", None, True  # anchor: innermost instance on the path
        for k in range(1, len(parts)):
            inst = ".".join(parts[:k])
            if inst not in instance_of:
                continue
            r, variant = instance_of[inst]
            if inst != variant[0]:
                drawn = False  # another instance of its variant stands for it
                break
            if r["path"] not in shown:
                shown.add(r["path"])
                if visible(r["path"]):
                    out.append(_group_row(g, r, scopes, _relative(r["path"], anchor, indent)))
            indent += "  "
            if not r["uniform"]:
                if inst not in shown:
                    shown.add(inst)
                    if visible(inst):
                        idx = index_ranges([int(v.rpartition(".")[2]) for v in variant])
                        many = len(variant) > 1
                        out.append((f"{indent}[{idx}]" + f" × {len(variant)}" * many, r["block"],
                                    "", f"{scopes.params[inst]:,}" + " each" * many))
                indent += "  "
            anchor = inst
        if drawn and visible(path):
            out.append((_relative(path, anchor, indent), row["kind"],
                        format_shape(tuple(row["output_shape"] or ())), _params(row)))
    return out


def _relative(path: str, anchor: str | None, indent: str) -> str:
    """`decoder.h.0.attn` under the instance `decoder.h.0` -> `  .attn`."""
    return path if anchor is None else f"{indent}.{path[len(anchor) + 1:]}"


def _group_row(g: nx.MultiDiGraph, r: dict, scopes: _Scopes, label: str) -> Row:
    total = scopes.params[r["path"]]
    each = total // r["count"] if r["uniform"] else None
    note = f"{total:,}" + (f"  ({each:,} each)" if each is not None else "")
    last = scopes.last.get(r["instances"][-1])
    shape = output_shape(g, last) if last else None
    return (f"{label} × {r['count']}", r["block"], format_shape(shape), note)


def _params(r: dict) -> str:
    s = f"{r['parameters']:,}"
    if r["tied"]:
        s += "  (tied: " + ", ".join(t.rpartition(".")[0] for t in r["tied"]) + ")"
    return s


def print_summary(g: nx.MultiDiGraph, depth: int | None = None, console=None, reports: list[str] = ()) -> None:
    """The table and totals on `console` (a rich Console; default: stdout), and
    `reports`, what each applied pass did (see summary_dict)."""
    from rich.console import Console  # lazy: startup
    from rich.table import Table  # lazy: startup

    console = console or Console()
    a = analyze(g)
    t = Table(title=f"{g.graph['name']}", title_justify="left", show_lines=False)
    rows = summary_rows(g, depth)
    # A narrow terminal wraps the module column rather than cutting it with "…":
    # a module's name never vanishes.
    t.add_column("module", overflow="fold")
    t.add_column("kind")
    t.add_column("output shape")
    t.add_column("parameters", justify="right")
    for row in rows:
        t.add_row(*row)
    console.print(t)
    m = a["memory"]
    n = a["active_parameters"]  # a mixture of experts runs top_k of them per token
    active = f"active per token     {n:,} ({human(n)}, top_k experts)\n" if n != a["parameters"] else ""
    quantized = m["weights_bytes"] != m["weights_fp32_bytes"]
    nonzero = (f"nonzero              {a['nonzero_parameters']:,} "
               f"({a['nonzero_parameters'] / max(a['parameters'], 1):.1%}: pruned weights are zeros)\n"
               if a["nonzero_parameters"] != a["parameters"] else "")
    # a compressed checkpoint's bytes: quantized linears' integers (what the kernels hold too),
    # pruned ones' kept weights and bitmask (strata/passes/sparse_storage.py; loading makes them dense)
    how = {("quantize",): "as compiled (quantized linears)", ("prune",): "stored sparse (pruned linears)"}
    weights = (f"{_bytes(m['weights_bytes'])} {how.get(tuple(m['weights_stored_by']), 'as stored (int + sparse)')}, "
               f"{_bytes(m['weights_fp32_bytes'])} fp32" if quantized else
               f"{_bytes(m['weights_fp32_bytes'])} fp32, {_bytes(m['weights_bf16_bytes'])} bf16")
    console.print(
        f"parameters           {a['parameters']:,} ({human(a['parameters'])})\n"
        f"trainable            {a['trainable_parameters']:,}\n"
        + nonzero +
        f"non-embedding        {a['non_embedding_parameters']:,}\n{active}"
        f"FLOPs per token      {human(a['flops_per_token'])} forward, "
        f"{human(a['training_flops_per_token'])} training (at T={a['seq_len']})\n"
        f"weights              {weights}\n"
        f"training state       {_bytes(m['training_fp32_bytes'])} (fp32 weights, grads, AdamW)\n"
        f"KV cache             {_bytes(m['kv_cache_bf16_bytes_per_token'])} per token (bf16)",
        highlight=False)
    for line in reports:  # wrapped under its text, within 80 columns
        console.print(textwrap.fill(line, 80, initial_indent="pass                 ",
                                    subsequent_indent=" " * 21), highlight=False, soft_wrap=True)
