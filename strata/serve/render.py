"""What the page shows for one spec text, as JSON-ready data: every diagnostic
(the checker's analysis with parser recovery, the same one the language
server publishes), the diagram as SVG, what hovering each box says, the
summary table and totals, and the passes with what each did.

`Checked.of(text, name)` analyses once per text; `view(toggled, after)` draws
it for one page's folds and before/after-passes choice.  Never imports torch.

    >>> c = Checked.of(open("specs/gpt2.arch").read(), "gpt2.arch")
    >>> v = c.view(set(), after=False)
    >>> v["diagnostics"], v["totals"]["parameters"]
    ([], 124439808)
"""

from __future__ import annotations

from math import prod
from pathlib import Path
from dataclasses import dataclass, field

from strata.compiler import ir
from strata.compiler.cost import analyze
from strata.compiler.ir import to_networkx
from strata.compiler.summary import human, summary_rows
from strata.errors import Diagnostic, SpecError
from strata.lsp.features import Document, no_gc
from strata.passes import apply_passes, report
from strata.serve.svg import draw


def diagnostic_json(d: Diagnostic, file: str) -> dict:
    """1-based line/col (the page's editor converts); one in another file (an
    import) is shown on line 1, naming where it is."""
    sp = d.span if d.span is not None and d.span.file == file else None
    where = f"{Path(d.span.file).name}:{d.span.line}:{d.span.col}: " if d.span is not None and sp is None else ""
    return {"line": sp.line if sp else 1, "col": sp.col if sp else 1,
            "end_line": sp.end_line if sp else None, "end_col": sp.end_col if sp else None,
            "severity": "warning" if d.severity == "warning" else "error",
            "message": where + d.message + (f" (hint: {d.hint})" if d.hint else "")}


@dataclass
class Checked:
    name: str
    text: str
    doc: Document
    diagnostics: list[dict]
    graph: object | None                      # networkx IR when the spec has no errors
    _after: tuple | None = field(default=None, repr=False)
    _fixed: dict = field(default_factory=dict, repr=False)  # id(graph) -> what no fold changes

    @classmethod
    def of(cls, text: str, name: str, root: Path | None = None) -> "Checked":
        """`name`: the spec's path (imports are relative to it); `root`: the served
        folder, which an import may not leave."""
        with no_gc():
            return cls._of(text, name, root)

    @classmethod
    def _of(cls, text: str, name: str, root: Path | None) -> "Checked":
        try:  # an import that leaves the root is an error at the import, and is never read
            doc = Document.of(text, name, within=None if root is None else Path(root).resolve())
        except SpecError as e:  # text no file can hold (a lone surrogate)
            return cls(name, text, None, [diagnostic_json(d, name) for d in e.diagnostics], None)
        a = doc.analysis
        diags = [diagnostic_json(d, name) for d in a.diagnostics]
        # what the passes refuse leaves the model before them whole: it is drawn, the after view is not
        errors = any(d.severity == "error" for d in a.diagnostics if d not in a.refused)
        g = a.graph
        return cls(name, text, doc, diags, None if errors or g is None else to_networkx(g))

    def after(self) -> tuple[object | None, list[dict]]:
        """The graph after the spec's passes, and the mistakes the passes found
        (none new where the check ran them and they refused: listed already)."""
        if self._after is None and self.doc is not None and self.doc.analysis.refused:
            self._after = (None, [])
        if self._after is None:
            try:
                self._after = (apply_passes(self.graph), [])  # a new graph: the passes leave theirs as it was
            except SpecError as e:
                self._after = (None, [diagnostic_json(d, self.name) for d in e.diagnostics])
        return self._after

    def view(self, toggled: set[str], after: bool) -> dict:
        with no_gc():
            return self._view(toggled, after)

    def _view(self, toggled: set[str], after: bool) -> dict:
        out = {"file": self.name, "diagnostics": list(self.diagnostics), "ok": self.graph is not None,
               "after": after}
        if self.graph is None:
            return out
        g = self.graph
        if after and g.graph.passes:
            g, found = self.after()
            out["diagnostics"] += found
            if g is None:
                out["ok"] = False
                return out
        fixed = self._fixed.get(id(g))
        if fixed is None:  # the repeat groups, the layouts and the summary: once per graph
            groups = ir.repeat_groups(g)
            fixed = self._fixed[id(g)] = {"groups": groups, "summary": summary(g, groups), "layouts": {}}
        d = draw(g, toggled, groups=fixed["groups"], layouts=fixed["layouts"])
        out.update(svg=d.text, info={k: self.info(g, k) for k in d.keys}, **fixed["summary"])
        out["passes"] = passes(self.graph, g if after else None)
        return out

    def info(self, g, key: str) -> dict:
        """What hovering the box for IR path `key` shows, and the spec line it
        comes from (for a click): a component's hover is the language server's."""
        comps = g.graph.components
        c = comps.get(key)
        span = c.get("span") if c else g.graph.scopes.get(key, {}).get("span")
        if c is not None and span is not None and span.file == self.name and self.doc is not None:
            text = self.doc.hover(span.line - 1, span.col - 1) or key
            params, _ = self.doc._cost([key]) if key in self.doc.analysis.graph.graph.components \
                else (None, None)
            return {"text": text, "line": span.line, "parameters": params}
        line = span.line if span is not None and span.file == self.name else None
        if key in g.nodes:  # an op of its own: a residual ⊕, an input
            d = g.nodes[key]
            shape = ir.output_shape(g, key)
            what = f"{d.op} ({d.attrs['why']})" if d.attrs.get("why") else d.op
            return {"text": f"**{what}** `{key}`" + (f"\n\n- output: `{ir.format_shape(shape)}`" if shape else ""),
                    "line": line, "parameters": None}
        scope = g.graph.scopes.get(key)
        if scope is not None:  # a closed stack, block or layer: what is inside it
            prefix = key + "."
            params = sum(prod(x) for n, d in g.nodes(data=True) if n.startswith(prefix)
                         for x in d.params.values())
            block = f" ({scope['block']})" if scope.get("block") else ""
            return {"text": f"**{scope['kind']}**{block} `{key}`\n\n- parameters: {params:,}\n\nclick to open",
                    "line": line, "parameters": params}
        return {"text": f"`{key}`", "line": line, "parameters": None}


def summary(g, groups: list[dict] | None = None) -> dict:
    """The summary table (`strata summary`'s rows) and its totals."""
    a = analyze(g)
    return {"rows": [list(r) for r in summary_rows(g, groups=groups)],
            "totals": {"parameters": a["parameters"], "parameters_human": human(a["parameters"]),
                       "trainable": a["trainable_parameters"],
                       "flops_per_token": human(a["flops_per_token"]),
                       "training_flops_per_token": human(a["training_flops_per_token"]),
                       "seq_len": a["seq_len"],
                       "flops": a["flops_per_token"],
                       "weights_fp32_bytes": a["memory"]["weights_fp32_bytes"],
                       "weights_bytes": a["memory"]["weights_bytes"],
                       "kv_cache_bytes_per_token": a["memory"]["kv_cache_bf16_bytes_per_token"]}}


def passes(before, after) -> list[dict]:
    """Each of the spec's passes; after them, with what it did (its badge)."""
    listed = before.graph.passes
    reports = report(after) if after is not None else []
    return [{"name": p["name"], "options": {k: v for k, v in p["options"].items() if v is not None},
             "applied": after is not None, "report": reports[i] if i < len(reports) else None}
            for i, p in enumerate(listed)]
