"""Where each name of a spec file is defined and used, read off its AST.

The parser keeps the span of each statement; a name inside it (the `layer`
of `block layer {`, the `wte` of `as wte`) is found in the statement's own
text.  Positions here are 0-based (line, column), as the Language Server
Protocol counts them.

    >>> ix = Index.of("model m {\\n  d = 8\\n  stack s(tokens) { embedding(10, d) as wte; lm_head(tie=wte) }\\n}\\n",
    ...               "m.arch")
    >>> [(s.kind, s.name, s.at) for s in ix.defs if s.kind != "model"]
    [('var', 'd', (1, 2)), ('stack', 's', (2, 8)), ('alias', 'wte', (2, 40))]
    >>> sorted((r.name, r.at) for r in ix.refs)
    [('d', (2, 34)), ('wte', (2, 57))]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from strata.components import COMPONENTS
from strata.dsl import ast as A
from strata.dsl import load_text_recovering
from strata.errors import source_lines

# What a name can stand for; a reference's kind says where to look for it.
KINDS = ("model", "block", "stack", "var", "param", "index", "alias", "import")


@dataclass(frozen=True)
class Name:
    """One name where it is written: (line, col) 0-based, `end` exclusive."""

    name: str
    kind: str            # a def: one of KINDS; a ref: "value" (a variable or module) or "block" or "model"
    at: tuple[int, int]
    scope: str = ""      # "model/block" it is written in ("" at the top)
    node: object = field(default=None, compare=False, repr=False)

    @property
    def end(self) -> tuple[int, int]:
        return self.at[0], self.at[1] + len(self.name)

    def covers(self, line: int, col: int) -> bool:
        return self.at[0] == line and self.at[1] <= col <= self.at[1] + len(self.name)


@dataclass
class Index:
    file: str
    text: str
    spec: A.SpecFile | None
    defs: list[Name] = field(default_factory=list)
    refs: list[Name] = field(default_factory=list)
    uses: list[tuple[A.Use, str]] = field(default_factory=list)  # every component/block use, with its scope

    @classmethod
    def of(cls, text: str, file: str, spec: A.SpecFile | None = None, parsed: bool = False) -> "Index":
        """`spec`: the text's AST when the caller has it; `parsed`: it has parsed the
        text, so None means nothing parsed (a text that failed is not read twice)."""
        if spec is None and not parsed:
            spec, _ = load_text_recovering(text, file)
        ix = cls(file, text, spec)
        ix._lines = source_lines(text, file)
        if spec is not None:
            ix._walk_spec(spec)
        return ix

    # ------------------------------------------------------------ finding names
    def _find(self, span, pattern: str, group: int = 1) -> tuple[int, int] | None:
        """Where `pattern` first matches from the start of `span` (over its lines)."""
        if span is None or span.file != self.file:
            return None
        last = (span.end_line or span.line) + 1
        for ln in range(span.line, min(last, len(self._lines)) + 1):
            line = self._lines[ln - 1]
            start = span.col - 1 if ln == span.line else 0
            m = re.compile(pattern).search(line, start)
            if m:
                return ln - 1, m.start(group)
        return None

    def _def(self, name: str, kind: str, span, pattern: str, scope: str, node=None) -> None:
        at = self._find(span, pattern)
        if at is not None:
            self.defs.append(Name(name, kind, at, scope, node))

    def _ref(self, name: str, kind: str, span, scope: str, pattern: str | None = None) -> None:
        at = self._find(span, pattern or rf"(?<![\w.])({re.escape(name)})\b")
        if at is not None:
            self.refs.append(Name(name, kind, at, scope))

    # ------------------------------------------------------------ walking the AST
    def _walk_spec(self, spec: A.SpecFile) -> None:
        for imp in spec.imports:
            for n in imp.names or []:
                self._def(n, "import", imp.span, rf"\b({re.escape(n)})\b(?!\")", "", imp)
        for b in spec.blocks:
            self._block(b, "")
        for m in spec.models:
            self._def(m.name, "model", m.span, rf"model\s+({re.escape(m.name)})\b", "", m)
            if m.extends:
                self._ref(m.extends, "model", m.span, "", rf"extends\s+({re.escape(m.extends)})\b")
            for v in m.vars:
                self._def(v.name, "var", v.span, rf"({re.escape(v.name)})\b", m.name, v)
                self._exprs(v.value, m.name)
            for b in m.blocks:
                self._block(b, m.name)
            for s in m.stacks:
                self._def(s.name, "stack", s.span, rf"stack\s+({re.escape(s.name)})\b", m.name, s)
                for inp in s.inputs:
                    if inp.source:
                        self._ref(inp.source, "value", inp.span, m.name, rf"=\s*({re.escape(inp.source)})\b")
                self._body(s.body, m.name)
        if spec.passes is not None:
            for u in spec.passes.items:
                self._args(u, "passes")
        if spec.train is not None:
            for v in spec.train.items:
                self._exprs(v.value, "train")

    def _block(self, b: A.BlockDef, model: str) -> None:
        scope = f"{model}/{b.name}"
        self._def(b.name, "block", b.span, rf"block\s+({re.escape(b.name)})\b", model, b)
        for p in b.params:
            self._def(p.name, "param", p.span, rf"({re.escape(p.name)})\b", scope, p)
            if p.default is not None:
                self._exprs(p.default, scope)
        self._body(b.body, scope)

    def _body(self, body: list, scope: str) -> None:
        for s in body:
            if isinstance(s, A.Assign):
                self._def(s.name, "var", s.span, rf"({re.escape(s.name)})\b", scope, s)
                self._exprs(s.value, scope)
            elif isinstance(s, A.Use):
                self._use(s, scope)
            elif isinstance(s, A.Repeat):
                self._exprs(s.count, scope)
                if s.index:
                    self._def(s.index, "index", s.span, rf",\s*({re.escape(s.index)})\s*\)", scope, s)
                self._body(s.body, scope)
                if s.alias:
                    self._alias(s, scope)
            else:  # residual, parallel, seq, branch
                self._body(s.body, scope)
                if getattr(s, "alias", None):
                    self._alias(s, scope)

    def _alias(self, s, scope: str) -> None:
        # the last `as NAME` of the statement's span: a body may hold other aliases
        if s.span is None or s.span.file != self.file:
            return
        end_line = s.span.end_line or s.span.line
        for ln in range(min(end_line, len(self._lines)), s.span.line - 1, -1):
            hits = list(re.finditer(rf"\bas\s+({re.escape(s.alias)})\b", self._lines[ln - 1]))
            if hits:
                self.defs.append(Name(s.alias, "alias", (ln - 1, hits[-1].start(1)), scope, s))
                return

    def _use(self, u: A.Use, scope: str) -> None:
        self.uses.append((u, scope))
        if u.name not in COMPONENTS:
            self._ref(u.name, "block", u.span, scope, rf"({re.escape(u.name)})\b")
        self._args(u, scope)
        if u.alias:
            self._alias(u, scope)

    def _args(self, u: A.Use, scope: str) -> None:
        for e in list(u.args) + [k.value for k in u.kwargs]:
            self._exprs(e, scope)

    def _exprs(self, e, scope: str) -> None:
        for x in A.walk_exprs(e):
            if isinstance(x, A.Name):
                head = x.id.split(".")[0]
                self._ref(head, "value", x.span, scope, rf"({re.escape(head)})\b")

    # ------------------------------------------------------------ questions
    def at(self, line: int, col: int) -> Name | None:
        """The def or ref written at (line, col)."""
        for n in self.defs + self.refs:
            if n.covers(line, col):
                return n
        return None

    def use_at(self, line: int, col: int) -> tuple[A.Use, str] | None:
        """The component or block use whose name is at (line, col)."""
        for u, scope in self.uses:
            sp = u.span
            if sp is not None and sp.file == self.file and sp.line - 1 == line \
                    and sp.col - 1 <= col <= sp.col - 1 + len(u.name):
                return u, scope
        return None

    def resolve(self, n: Name) -> list[Name]:
        """The definitions a name at a place stands for, innermost scope first."""
        if n.kind in KINDS:  # already a definition
            wanted = {n.kind}
            if n.kind in ("var", "param", "index", "alias"):
                wanted = {"var", "param", "index", "alias"}
        elif n.kind == "block":
            wanted = {"block", "import"}
        elif n.kind == "model":
            wanted = {"model", "import"}
        else:
            wanted = {"var", "param", "index", "alias", "stack"}
        found = [d for d in self.defs if d.name == n.name and d.kind in wanted]
        # nearest scope first: the block's own names, then its model's, then the file's
        return sorted(found, key=lambda d: (not n.scope.startswith(d.scope) if d.scope else True,
                                            -len(d.scope) if n.scope.startswith(d.scope) else 0))

    def references(self, target: Name) -> list[Name]:
        """Every ref (and def) in this file that resolves to `target`."""
        out = [target]
        for r in self.refs + self.defs:
            if r.name == target.name and r is not target and r.kind not in KINDS:
                best = self.resolve(r)
                if best and best[0] == target:
                    out.append(r)
        return out
