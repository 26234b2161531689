"""What the language server answers, as plain data: one `Document` per open
file holds the checker's analysis (`strata.compiler.analyze_text`) and the
name index; hover, completion and definitions read them and the registries
the checker validates with (`strata.components`, `strata.passes`).  No LSP
types here, so every answer is testable without a server.

    >>> doc = Document.of(open("specs/gpt2.arch").read(), "specs/gpt2.arch")
    >>> print(doc.hover(12, 30).splitlines()[0])
    **attention** `decoder.h.0.attn` … `decoder.h.11.attn` (12 uses)
"""

from __future__ import annotations

import gc
import re
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

from strata.compiler import Analysis, analyze_text
from strata.compiler.cost import node_flops, seq_len
from strata.compiler.repeat_copy import FoldCache
from strata.compiler.symbolic import text as sym_text
from strata.components import COMPONENTS
from strata.dsl import YAML_SUFFIXES, read_source
from strata.dsl.registry import PASSES, TRAIN_CALLS, TrainConfig
from strata.lsp.index import Index, Name
from strata.lsp.items import Item
from strata.lsp.refused import refused, scalar
from strata.lsp.yaml_complete import complete as complete_yaml

# Statement words a body accepts besides components and blocks.
CONSTRUCTS = ("residual", "parallel", "seq", "branch", "repeat")
# The most IR nodes x passes the check runs the spec's passes on, per keystroke:
# each pass copies the graph (strata.compiler.ir_copy) and rewrites it, ~30 us a
# node on this project's 2-core VM, so 5,000 is ~150 ms (Llama 2 70B's 1,124
# nodes with 4 passes; GPT-2's 174 with 28), inside the 300 ms to diagnostics
# with the 150 ms wait; with copy.deepcopy it was 2,500 for the same time.  Past
# it, a warning says `strata check` runs them (docs/benchmarks.md, Language server).
PASS_BUDGET = 5_000


@dataclass
class Document:
    uri_path: str
    text: str
    analysis: Analysis
    index: Index
    _components: dict | None = field(default=None, repr=False)
    _nodes: dict | None = field(default=None, repr=False)

    @classmethod
    def of(cls, text: str, path: str, open_texts: dict[str, str] | None = None,
           cache: FoldCache | None = None, within: Path | None = None) -> "Document":
        """`open_texts`: resolved path -> the editor's text of the files open in it,
        read instead of the disk where this file imports them; `cache`: this
        file's, kept from check to check (unchanged layers are not made again);
        `within`: a resolved folder no import may leave (strata serve's)."""
        with no_gc():
            a = analyze_text(text, path, open_texts=open_texts, cache=cache, within=within, run_passes=True,
                             pass_budget=PASS_BUDGET)
        return cls(path, a.sources.get(path, text), a, Index.of(a.sources.get(path, text), path, a.spec,
                                                                     parsed=True))

    # ------------------------------------------------------------ components built from each use
    def components(self) -> dict[tuple[int, int], list[str]]:
        """(line, col) 0-based of a use -> the module paths built from it (all its
        repeats), read off the graph once."""
        if self._components is None:
            found: dict[tuple[int, int], list[str]] = {}
            g = self.analysis.graph
            if g is not None:
                for path, c in g.graph.components.items():
                    sp = c.get("span")
                    if sp is not None and sp.file == self.uri_path:
                        found.setdefault((sp.line - 1, sp.col - 1), []).append(path)
            self._components = found
        return self._components

    def warm(self) -> None:
        """Build the map hover reads (one pass over the components), so the first
        hover after a check is as quick as the next."""
        with no_gc():
            self.components()

    def _cost(self, paths: list[str]) -> tuple[int, int]:
        """(parameters, forward FLOPs per token) of the first module of `paths`:
        its nodes are those under its path (one scan of the graph's keys, ~10^4)."""
        g = self.analysis.graph
        if self._nodes is None:
            self._nodes = {}
        path = paths[0]
        if path not in self._nodes:
            under = path + "."
            self._nodes[path] = [n for n in g.nodes if (n == path or n.startswith(under))
                                 and g.nodes[n].get("component") == path]
        nodes = self._nodes[path]
        params = sum(prod(s) for n in nodes for s in g.nodes[n].params.values())
        ctx = seq_len(g)
        return params, sum(node_flops(g, n, ctx) for n in nodes)

    # ------------------------------------------------------------ hover
    def hover(self, line: int, col: int) -> str | None:
        """Markdown for the thing at (line, col) 0-based, or None."""
        hit = self.index.use_at(line, col)
        if hit is not None:
            use, _ = hit
            if use.name in COMPONENTS:
                return self._hover_component(use)
            if self.section(line, col) == "passes":
                return _hover_pass(use.name)
        word = self.word_at(line, col)
        if word and word in PASSES and self.section(line, col) == "passes":
            return _hover_pass(word)
        n = self.index.at(line, col)
        if n is not None:
            defs = self.index.resolve(n) or []
            d = defs[0] if defs else None
            if d is not None and d.kind in ("var", "param", "index"):
                return self._hover_var(d)
            if d is not None and d.kind == "block":
                return f"**block** `{d.name}` — line {d.at[0] + 1}\n\n```\n{self.line(d.at[0]).strip()}\n```"
            if d is not None and d.kind in ("model", "stack", "alias", "import"):
                return f"**{d.kind}** `{d.name}` — line {d.at[0] + 1}"
        if word in COMPONENTS:
            return _hover_registry(word)
        return None

    def _hover_component(self, use) -> str:
        spec = COMPONENTS[use.name]
        paths = self.components().get((use.span.line - 1, use.span.col - 1), [])
        if not paths:
            return _hover_registry(use.name)
        g = self.analysis.graph
        c = g.graph.components[paths[0]]
        where = f"`{paths[0]}`" if len(paths) == 1 else f"`{paths[0]}` … `{paths[-1]}` ({len(paths)} uses)"
        shape = "[" + ", ".join(sym_text(s) for s in c["out_sym"]) + "]" if c.get("out_sym") else "?"
        params, flops = self._cost(paths)
        each = " each" if len(paths) > 1 else ""
        opts = ", ".join(f"{k}={v}" for k, v in c["options"].items() if v is not None)
        return "\n".join([
            f"**{use.name}** {where}", "",
            f"- kind: {spec.category}",
            f"- output: `{shape}`",
            f"- parameters: {params:,}{each}",
            f"- FLOPs per token: {flops:,}{each}",
            f"- options: `{opts}`", "",
            spec.doc.splitlines()[0] if spec.doc else ""]).rstrip()

    def _hover_var(self, d: Name) -> str:
        g = self.analysis.graph
        value = g.graph.vars.get(d.name) if g is not None and d.kind == "var" else None
        head = f"**{d.kind}** `{d.name}`" + (f" = `{value!r}`" if value is not None else "")
        return f"{head}\n\ndefined at line {d.at[0] + 1}:\n```\n{self.line(d.at[0]).strip()}\n```"

    # ------------------------------------------------------------ definitions
    def definition(self, line: int, col: int) -> list[tuple[str, Name]]:
        """(file, name) of what the name at (line, col) stands for; blocks and models
        imported from another file are looked up there."""
        n = self.index.at(line, col)
        if n is None:
            return []
        defs = self.index.resolve(n)
        if defs and defs[0].kind != "import":
            return [(self.uri_path, defs[0])]
        return [(p, d) for p, d in self.imported(n.name)][:1] or [(self.uri_path, d) for d in defs[:1]]

    def imported(self, name: str) -> list[tuple[str, Name]]:
        """Definitions of `name` in the files this one imports (one level, then theirs)."""
        spec = self.analysis.spec
        if spec is None:
            return []
        out: list[tuple[str, Name]] = []
        seen: set[str] = set()
        todo = [(Path(self.uri_path).parent, imp.path) for imp in spec.imports]
        while todo and len(seen) < 64:
            base, rel = todo.pop(0)
            if "\0" in rel:  # the checker reports it; resolve() would raise ValueError
                continue
            path = (base / rel).resolve()
            if str(path) in seen:
                continue
            seen.add(str(path))
            try:
                text = read_source(path)
            except Exception:  # a missing import is the checker's diagnostic, not ours
                continue
            ix = Index.of(text, str(path))
            out += [(str(path), d) for d in ix.defs if d.name == name and d.kind in ("block", "model")]
            if ix.spec is not None:
                todo += [(path.parent, imp.path) for imp in ix.spec.imports]
        return out

    # ------------------------------------------------------------ completion
    def completion(self, line: int, col: int) -> list[Item]:
        """What may be written at (line, col) 0-based (in a YAML file: the keys
        and words its JSON Schema allows there, `strata.lsp.yaml_complete`)."""
        if self.uri_path.endswith(YAML_SUFFIXES):
            return complete_yaml(self.text, line, col)
        before = self.line(line)[:col]
        where = _context(self.text, self.offset(line, col))
        if where.call is not None:
            name = where.call
            table = PASSES if where.section == "passes" else COMPONENTS
            if name in table:
                opts = table[name].options
                m = re.search(r"(\w+)\s*=\s*\w*$", before)
                if m and m.group(1) in opts.model_fields:
                    return _values(opts, m.group(1))
                positional: list[Item] = []
                if "(" in before:  # in the n-th positional slot: the words that option takes
                    slot = before[before.rindex("(") + 1:]
                    n = slot.count(",")
                    if "=" not in slot and n < len(table[name].positional):
                        positional = _values(opts, table[name].positional[n])
                written = _written(self.text[where.opened + 1:self.offset(line, col)], table[name].positional)
                left_out = set(written) | refused(opts, written)  # what the checker would refuse beside them
                return positional + [i for i in _options(opts) if i.label.rstrip("=") not in left_out] \
                    + self._variables(line)
            if where.section == "train" and name in TRAIN_CALLS:
                return _options(TRAIN_CALLS[name])
            return self._variables(line)
        if re.search(r"=\s*\w*$", before):  # a value
            m = re.search(r"(\w+)\s*=\s*\w*$", before)
            if where.section == "train" and m and m.group(1) in TrainConfig.model_fields:
                return _values(TrainConfig, m.group(1)) + self._variables(line)
            return self._variables(line)
        if where.section == "passes":
            return [Item(n, "pass", _first(p.doc), p.doc) for n, p in PASSES.items()]
        if where.section == "train":
            return _options(TrainConfig, equals=" = ")
        if where.section == "model":
            return [Item(w, "keyword") for w in ("block", "stack")]
        if where.section == "top":
            return [Item(w, "keyword") for w in ("model", "block", "import", "from", "passes", "train")]
        return ([Item(n, "component", c.category, c.doc) for n, c in COMPONENTS.items()]
                + [Item(d.name, "block", f"block, line {d.at[0] + 1}") for d in self.index.defs
                   if d.kind in ("block", "import")]
                + [Item(w, "keyword") for w in CONSTRUCTS])

    def _variables(self, line: int) -> list[Item]:
        seen, out = set(), []
        for d in self.index.defs:
            if d.kind in ("var", "param", "index") and d.name not in seen and d.at[0] <= line + 10**9:
                seen.add(d.name)
                out.append(Item(d.name, "variable", f"{d.kind}, line {d.at[0] + 1}"))
        return out

    # ------------------------------------------------------------ text helpers
    def section(self, line: int, col: int) -> str:
        return _context(self.text, self.offset(line, col)).section

    def line(self, n: int) -> str:
        lines = self.text.split("\n")
        return lines[n] if 0 <= n < len(lines) else ""

    def offset(self, line: int, col: int) -> int:
        lines = self.text.split("\n")
        return sum(len(x) + 1 for x in lines[:line]) + min(col, len(lines[line]) if line < len(lines) else 0)

    def word_at(self, line: int, col: int) -> str | None:
        text = self.line(line)
        for m in re.finditer(r"[A-Za-z_]\w*", text):
            if m.start() <= col <= m.end():
                return m.group()
        return None


@contextmanager
def no_gc():
    """The cyclic garbage collector paused: an analysis allocates 10^5 small
    objects next to a heap of 10^6 (a 2,000-layer graph), and each collection it
    triggers walks them all (the warm maps take 0.4 s with it, 0.03 s without).
    Nothing here makes reference cycles that must be freed meanwhile.  The
    workbench (strata.serve.render) checks and draws under it too."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class _Where:
    section: str              # top | model | body | passes | train
    call: str | None = None   # the component / pass / call whose parentheses hold the cursor
    opened: int = -1          # the offset of that call's `(`


def _context(text: str, offset: int) -> _Where:
    """The section and open call at `offset`, from the brackets before it
    (strings and comments skipped), so it works while the file does not parse."""
    opened: list[tuple[str, str, int]] = []  # (bracket, the word before it, its offset)
    i, n = 0, min(offset, len(text))
    word_before = ""
    words: list[str] = []
    while i < n:
        ch = text[i]
        if ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if ch in "\"'":
            j = i + 1
            while j < n and text[j] not in (ch, "\n"):
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        m = re.compile(r"[A-Za-z_]\w*").match(text, i)
        if m:
            words.append(m.group())
            word_before = m.group()
            i = m.end()
            continue
        if ch in "({":
            head = word_before if ch == "(" else _section_word(words)
            opened.append((ch, head, i))
            words = []
        elif ch in ")}" and opened:
            opened.pop()
            words = []
        elif not ch.isspace():
            word_before = ""
        i += 1
    braces = [h for b, h, _ in opened if b == "{"]
    section = "top"
    if braces:
        first = braces[0]
        section = {"model": "model", "passes": "passes", "train": "train", "block": "body"}.get(first, "body")
        if first == "model" and len(braces) > 1:
            section = "body"
    call = opened[-1][1] if opened and opened[-1][0] == "(" else None
    if call in ("repeat",):
        call = None
    return _Where(section, call, opened[-1][2] if call is not None else -1)


def _written(args: str, positional) -> dict:
    """{option: value} of a call's arguments before the cursor (`args`: the text
    from its `(`), each finished by a comma; positional ones named by `positional`."""
    pieces, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(args):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append(args[start:i])
            start = i + 1
    out: dict = {}
    for n, piece in enumerate(pieces):
        m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*=(?!=)(.*)", piece, re.S)
        if m:
            out[m.group(1)] = scalar(m.group(2))
        elif n < len(positional) and not any("=" in p for p in pieces[:n]):
            out[positional[n]] = scalar(piece)
    return out


def _section_word(words: list[str]) -> str:
    """What a `{` opens, from the words before it on its statement."""
    for w in words:
        if w in ("model", "block", "stack", "passes", "train", "residual", "parallel", "seq", "branch", "repeat"):
            return w
    return words[-1] if words else ""


def _first(doc: str) -> str:
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _type_text(annotation) -> str:
    text = str(annotation).replace("typing.", "")
    return re.sub(r"<class '(\w+)'>", r"\1", text)


def _options(opts, equals: str = "=") -> list[Item]:
    """Each option of an options model, with its type and default (the checker's schema)."""
    out = []
    for name, f in opts.model_fields.items():
        default = "required" if f.is_required() else f"default {f.get_default(call_default_factory=True)!r}"
        out.append(Item(f"{name}{equals.strip()}", "option", f"{_type_text(f.annotation)}, {default}",
                        f.description or "", insert=f"{name}{equals}"))
    return out


def _values(opts, name: str) -> list[Item]:
    """The words an option takes (a Literal's values), from the options model."""
    ann = opts.model_fields[name].annotation
    words: list = []
    todo = [ann]
    while todo:
        t = todo.pop()
        if typing.get_origin(t) is typing.Literal:
            words += list(typing.get_args(t))
        else:
            todo += list(typing.get_args(t))
    return [Item(str(w).lower() if isinstance(w, bool) else str(w), "value", f"{name}") for w in words]


def _hover_registry(name: str) -> str:
    spec = COMPONENTS[name]
    opts = "\n".join(f"- `{i.label}` {i.detail}" for i in _options(spec.options))
    return f"**{name}** ({spec.category})\n\n{spec.doc}\n\n{opts}"


def _hover_pass(name: str) -> str | None:
    if name not in PASSES:
        return None
    p = PASSES[name]
    opts = "\n".join(f"- `{i.label}` {i.detail}" for i in _options(p.options))
    return f"**pass {name}**\n\n{p.doc}\n\n{opts}"


def is_spec_file(path: str) -> bool:
    return path.endswith((".arch", *YAML_SUFFIXES))
