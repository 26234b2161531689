"""`strata lsp`: the Language Server Protocol over stdio (pygls), a thin layer
over the checker's own analysis (`strata.lsp.features`).

Diagnostics are published on open and, debounced, after each change; a file
that imports a changed, saved or closed file (directly or not) is checked
again, and its imports read the editor's open buffers, not only the disk.  Positions: lines and
columns 0-based; the analysis counts columns in characters, the protocol in the
negotiated units (UTF-16 code units unless the client offers another): `units`
and `chars` convert at the edge, and differ only past the Basic Multilingual Plane.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
from pathlib import Path

from lsprotocol import types as T
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from strata.compiler.repeat_copy import FoldCache
from strata.compiler.symbolic import text as sym_text
from strata.dsl import clean_text, read_source
from strata.dsl.parser import KEYWORDS
from strata.dsl.rewrite import rewrite
from strata.errors import Diagnostic, SpecError, UsageError
from strata.lsp.features import Document, Item, is_spec_file
from strata.lsp.index import Index
from strata.lsp.workspace import spec_texts

# Wait this long after a keystroke before checking (a burst of typing is one check).
DEBOUNCE_S = 0.15
# Every this many checks, the objects frozen out of the garbage collector's scans
# (see StrataServer.check) are scanned again, so any cycle among them is freed.
GC_THAW = 64
# The names one namespace holds: a rename may not make two of them one.
_NAMESPACES = ({"var", "param", "index"}, {"block"}, {"model"}, {"stack", "alias"})

_ITEM_KINDS = {"component": T.CompletionItemKind.Class, "block": T.CompletionItemKind.Module,
               "option": T.CompletionItemKind.Property, "value": T.CompletionItemKind.EnumMember,
               "variable": T.CompletionItemKind.Variable, "pass": T.CompletionItemKind.Function,
               "keyword": T.CompletionItemKind.Keyword}
_SYMBOL_KINDS = {"model": T.SymbolKind.Class, "block": T.SymbolKind.Function, "stack": T.SymbolKind.Module,
                 "var": T.SymbolKind.Variable, "param": T.SymbolKind.TypeParameter, "alias": T.SymbolKind.Field,
                 "index": T.SymbolKind.Variable, "import": T.SymbolKind.Namespace}


class StrataServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("strata-lsp", "1")
        self.docs: dict[str, Document] = {}       # uri -> latest analysis
        self.pending: dict[str, asyncio.Task] = {}
        self.inlay_hints = False
        self.checks = 0
        self.caches: dict[str, FoldCache] = {}   # uri -> its layers of the last check

    def path_of(self, uri: str) -> str:
        return to_fs_path(uri) or uri

    # ------------------------------------------------------------ columns: characters <-> client units
    def lines_of(self, path: str) -> list[str]:
        """The lines of a spec file as the analysis counts them: the editor's buffer
        where it is open, else the disk (none when unreadable)."""
        real = os.path.realpath(path)
        for doc in list(self.docs.values()):
            if doc.uri_path == path or os.path.realpath(doc.uri_path) == real:
                return doc.text.split("\n")
        try:
            return clean_text(read_source(path), path).split("\n")
        except (SpecError, UsageError, OSError, ValueError):
            return []

    def units(self, lines: list[str], line: int, col: int) -> T.Position:
        """(line, column in characters) -> the client's Position."""
        if 0 <= line < len(lines):
            col = self.workspace.position_codec.client_num_units(lines[line][:col]) + max(col - len(lines[line]), 0)
        return T.Position(line, col)

    def chars(self, uri: str, pos: T.Position) -> tuple[int, int]:
        """The client's Position in the open document `uri` -> (line, column in characters)."""
        doc = self.docs.get(uri)
        lines = doc.text.split("\n") if doc is not None else []
        if not 0 <= pos.line < len(lines):
            return pos.line, pos.character
        impl, seen = self.workspace.position_codec.impl, 0
        for i, c in enumerate(lines[pos.line]):
            if seen >= pos.character:
                return pos.line, i
            seen += impl.code_units_for_char(c)
        return pos.line, len(lines[pos.line]) + max(pos.character - seen, 0)

    def range(self, lines: list[str], at: tuple[int, int], length: int) -> T.Range:
        """The range of `length` characters from `at` (line, column in characters)."""
        return T.Range(self.units(lines, *at), self.units(lines, at[0], at[1] + length))

    def location(self, path: str, at: tuple[int, int], length: int) -> T.Location:
        return T.Location(uri=from_fs_path(path) or path, range=self.range(self.lines_of(path), at, length))

    def check(self, uri: str) -> Document:
        """Analyse the open text of `uri` and publish its diagnostics."""
        text = self.workspace.get_text_document(uri).source
        path = self.path_of(uri)
        try:
            doc = Document.of(text, path, self.open_texts(uri), self.caches.setdefault(uri, FoldCache()))
        except SpecError as e:  # text no file can hold (a lone surrogate): its own diagnostic
            self.publish(uri, path, e.diagnostics, text.split("\n"))
            return self.docs.get(uri)
        doc.warm()  # before publishing: a client asks for hovers as soon as it has diagnostics
        self.docs[uri] = doc
        self.publish(uri, path, doc.analysis.diagnostics, doc.text.split("\n"))
        self.checks += 1
        # What is alive now (the analyses: 10^5-10^6 objects for a deep spec) is
        # left out of the cyclic collector's scans: else each check is followed,
        # at some later keystroke or hover, by a full collection walking them all
        # (0.3 s on 2,000 layers).  They are still freed by reference counting
        # (an analysis makes no cycles); every GC_THAW checks they are scanned again.
        if self.checks % GC_THAW == 0:
            gc.unfreeze()
        else:
            gc.freeze()
        return doc

    def publish(self, uri: str, path: str, diags: list[Diagnostic], lines: list[str]) -> None:
        """`lines`: the text the spans count characters of."""
        out = []
        for d in diags:
            if d.span is None or d.span.file != path:
                where = f" ({d.span})" if d.span else ""
                rng = T.Range(T.Position(0, 0), T.Position(0, 0))
                message = d.message + where
            else:
                line, col = d.span.line - 1, d.span.col - 1
                end_line = (d.span.end_line or d.span.line) - 1
                end_col = (d.span.end_col or d.span.col + 1) - 1
                if (end_line, end_col) <= (line, col):
                    end_line, end_col = line, col + 1
                rng = T.Range(self.units(lines, line, col), self.units(lines, end_line, end_col))
                message = d.message
            if d.hint:
                message += f"\nhint: {d.hint}"
            severity = T.DiagnosticSeverity.Warning if d.severity == "warning" else T.DiagnosticSeverity.Error
            out.append(T.Diagnostic(range=rng, message=message, severity=severity, source="strata"))
        self.text_document_publish_diagnostics(T.PublishDiagnosticsParams(uri=uri, diagnostics=out))

    def open_texts(self, uri: str) -> dict[str, str]:
        """Resolved path -> text of the other spec files open in the editor: an
        import reads the buffer (saved or not), as the user sees it."""
        out = {}
        for other, td in list(self.workspace.text_documents.items()):
            path = self.path_of(other)
            if other == uri or not is_spec_file(path):
                continue
            try:
                out[str(Path(path).resolve())] = clean_text(td.source, path)
            except SpecError:  # text no file can hold: the import reads the disk
                continue
        return out

    def dependents(self, uri: str) -> list[str]:
        """Open documents that import the file at `uri`, directly or through
        other files (those nearest first)."""
        found: list[str] = []
        targets = {Path(self.path_of(uri)).resolve()}
        while True:
            more = []
            for other, doc in self.docs.items():
                spec = doc.analysis.spec
                if other == uri or other in found or spec is None:
                    continue
                base = Path(doc.uri_path).parent
                if any((base / imp.path).resolve() in targets for imp in spec.imports):
                    more.append(other)
            if not more:
                return found
            found += more
            targets = {Path(self.path_of(o)).resolve() for o in more}

    def schedule(self, uri: str) -> None:
        """Check `uri` after DEBOUNCE_S unless another change comes first."""
        old = self.pending.pop(uri, None)
        if old is not None:
            old.cancel()

        async def later():
            await asyncio.sleep(DEBOUNCE_S)
            self.pending.pop(uri, None)
            self.check(uri)
            for other in self.dependents(uri):
                self.check(other)

        self.pending[uri] = asyncio.ensure_future(later())

    def document(self, uri: str) -> Document | None:
        """The analysis of `uri`, made now if a change is still waiting."""
        if uri in self.pending or uri not in self.docs:
            task = self.pending.pop(uri, None)
            if task is not None:
                task.cancel()
            if uri in self.workspace.text_documents:
                return self.check(uri)
        return self.docs.get(uri)


server = StrataServer()


@server.feature(T.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: StrataServer, params: T.DidOpenTextDocumentParams) -> None:
    ls.check(params.text_document.uri)


@server.feature(T.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: StrataServer, params: T.DidChangeTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri)


@server.feature(T.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: StrataServer, params: T.DidSaveTextDocumentParams) -> None:
    for other in ls.dependents(params.text_document.uri):
        ls.check(other)


@server.feature(T.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: StrataServer, params: T.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    dependents = ls.dependents(uri)
    ls.docs.pop(uri, None)
    ls.caches.pop(uri, None)
    task = ls.pending.pop(uri, None)
    if task is not None:
        task.cancel()
    ls.text_document_publish_diagnostics(T.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
    for other in dependents:  # they import the file on disk again, not the closed buffer
        ls.check(other)


@server.feature(T.TEXT_DOCUMENT_HOVER)
def hover(ls: StrataServer, params: T.HoverParams) -> T.Hover | None:
    doc = ls.document(params.text_document.uri)
    if doc is None:
        return None
    text = doc.hover(*ls.chars(params.text_document.uri, params.position))
    if text is None:
        return None
    return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=text))


@server.feature(T.TEXT_DOCUMENT_COMPLETION, T.CompletionOptions(trigger_characters=["(", ",", "=", " "]))
def completion(ls: StrataServer, params: T.CompletionParams) -> T.CompletionList:
    doc = ls.document(params.text_document.uri)
    items: list[Item] = doc.completion(*ls.chars(params.text_document.uri, params.position)) if doc else []
    return T.CompletionList(is_incomplete=False, items=[
        T.CompletionItem(label=i.label, kind=_ITEM_KINDS.get(i.kind), detail=i.detail or None,
                         documentation=T.MarkupContent(kind=T.MarkupKind.Markdown, value=i.doc) if i.doc else None,
                         insert_text=i.insert) for i in items])


@server.feature(T.TEXT_DOCUMENT_DEFINITION)
def definition(ls: StrataServer, params: T.DefinitionParams) -> list[T.Location]:
    doc = ls.document(params.text_document.uri)
    if doc is None:
        return []
    return [ls.location(path, d.at, len(d.name))
            for path, d in doc.definition(*ls.chars(params.text_document.uri, params.position))]


@server.feature(T.TEXT_DOCUMENT_REFERENCES)
def references(ls: StrataServer, params: T.ReferenceParams) -> list[T.Location]:
    doc = ls.document(params.text_document.uri)
    if doc is None:
        return []
    n = doc.index.at(*ls.chars(params.text_document.uri, params.position))
    if n is None:
        return []
    defs = doc.index.resolve(n)
    if not defs:
        return []
    found = doc.index.references(defs[0])
    if not params.context.include_declaration:
        found = found[1:]
    return [ls.location(doc.uri_path, r.at, len(r.name)) for r in found]


@server.feature(T.TEXT_DOCUMENT_RENAME)
def rename(ls: StrataServer, params: T.RenameParams) -> T.WorkspaceEdit | None:
    doc = ls.document(params.text_document.uri)
    if doc is None:
        return None
    n = doc.index.at(*ls.chars(params.text_document.uri, params.position))
    defs = doc.index.resolve(n) if n is not None else []
    if not defs or defs[0].kind not in ("var", "param", "index", "block", "alias", "stack", "model"):
        return None
    new, d = params.new_name, defs[0]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", new) or new in KEYWORDS:
        raise JsonRpcInvalidParams(f"'{new}' is not a name: a letter or _, then letters, digits or _, "
                                   "and not a keyword")
    kinds = next(k for k in _NAMESPACES if d.kind in k)
    if new != d.name and any(o.name == new and o.scope == d.scope and o.kind in kinds for o in doc.index.defs):
        raise JsonRpcInvalidParams(f"'{new}' is already defined here: renaming '{d.name}' would make them one")
    lines = doc.text.split("\n")
    edits = [T.TextEdit(range=ls.range(lines, r.at, len(r.name)), new_text=params.new_name)
             for r in doc.index.references(defs[0])]
    return T.WorkspaceEdit(changes={params.text_document.uri: edits})


@server.feature(T.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def document_symbols(ls: StrataServer, params: T.DocumentSymbolParams) -> list[T.DocumentSymbol]:
    doc = ls.document(params.text_document.uri)
    if doc is None:
        return []
    return _symbols(ls, doc.index, doc.text.split("\n"))


def _symbols(ls: StrataServer, ix: Index, lines: list[str]) -> list[T.DocumentSymbol]:
    """Models hold their variables, blocks and stacks; file-level blocks stand alone."""
    tops: list[T.DocumentSymbol] = []
    by_model: dict[str, T.DocumentSymbol] = {}
    for d in ix.defs:
        if d.kind not in ("model", "block", "stack", "var") or "/" in d.scope:
            continue
        rng = ls.range(lines, d.at, len(d.name))
        sym = T.DocumentSymbol(name=d.name, kind=_SYMBOL_KINDS[d.kind], range=rng, selection_range=rng,
                               detail=d.kind, children=[])
        if d.kind == "model":
            by_model[d.name] = sym
            tops.append(sym)
        elif d.scope in by_model:
            by_model[d.scope].children.append(sym)
        else:
            tops.append(sym)
    return tops


@server.feature(T.WORKSPACE_SYMBOL)
def workspace_symbols(ls: StrataServer, params: T.WorkspaceSymbolParams) -> list[T.SymbolInformation]:
    """Models, blocks and stacks of the workspace's spec files (bounded: strata.lsp.workspace)."""
    out: list[T.SymbolInformation] = []
    query = params.query.lower()
    roots = [to_fs_path(folder.uri) for folder in ls.workspace.folders.values()]
    for path, text in spec_texts(roots):
        try:
            ix = Index.of(text, path)
        except Exception:  # a file that does not parse is skipped, not fatal
            continue
        lines = text.split("\n")
        for d in ix.defs:
            if d.kind in ("model", "block", "stack") and query in d.name.lower():
                out.append(T.SymbolInformation(name=d.name, kind=_SYMBOL_KINDS[d.kind],
                                               location=T.Location(uri=from_fs_path(path) or path,
                                                                   range=ls.range(lines, d.at, len(d.name))),
                                               container_name=d.scope or None))
    return out


@server.feature(T.TEXT_DOCUMENT_CODE_ACTION,
                T.CodeActionOptions(code_action_kinds=[T.CodeActionKind.QuickFix]))
def code_actions(ls: StrataServer, params: T.CodeActionParams) -> list[T.CodeAction]:
    """A quick fix for each "did you mean 'x'?" hint: the misspelled name (the
    quoted name of the message that is written where the diagnostic starts)
    replaced by the suggestion."""
    doc = ls.document(params.text_document.uri)
    lines = doc.text.split("\n") if doc is not None else []
    out = []
    for d in params.context.diagnostics:
        want = re.search(r"hint: did you mean '([^']+)'\?", d.message)
        line, col = ls.chars(params.text_document.uri, d.range.start)
        if want is None or d.source != "strata" or line >= len(lines):
            continue
        written = lines[line][col:]
        for wrong in re.findall(r"'([A-Za-z_][\w.]*)'", d.message.split("\nhint:")[0]):
            if re.match(rf"{re.escape(wrong)}\b", written):
                edit = T.TextEdit(range=ls.range(lines, (line, col), len(wrong)), new_text=want.group(1))
                out.append(T.CodeAction(title=f"Change '{wrong}' to '{want.group(1)}'",
                                        kind=T.CodeActionKind.QuickFix, diagnostics=[d], is_preferred=True,
                                        edit=T.WorkspaceEdit(changes={params.text_document.uri: [edit]})))
                break
    return out


@server.feature(T.TEXT_DOCUMENT_FORMATTING)
def formatting(ls: StrataServer, params: T.DocumentFormattingParams) -> list[T.TextEdit]:
    """`strata fmt` of the open text; nothing while the file has mistakes (or
    comments fmt would drop)."""
    uri = params.text_document.uri
    if uri not in ls.workspace.text_documents:  # not open: pygls would read the path whole (/dev/zero)
        return []
    text = ls.workspace.get_text_document(uri).source
    try:
        new = rewrite(text, ls.path_of(uri), None, "fmt")
    except SpecError:
        return []
    if new == text:
        return []
    lines = text.split("\n")
    end = ls.units(lines, len(lines) - 1, len(lines[-1]))
    return [T.TextEdit(range=T.Range(T.Position(0, 0), end), new_text=new)]


@server.feature(T.INITIALIZE)
def initialize(ls: StrataServer, params: T.InitializeParams) -> None:
    opts = params.initialization_options or {}
    ls.inlay_hints = bool(isinstance(opts, dict) and opts.get("inlayHints"))


@server.feature(T.TEXT_DOCUMENT_INLAY_HINT)
def inlay_hints(ls: StrataServer, params: T.InlayHintParams) -> list[T.InlayHint]:
    """The output shape after each component line (off unless the client's
    initializationOptions say {"inlayHints": true})."""
    doc = ls.document(params.text_document.uri) if ls.inlay_hints else None
    if doc is None or doc.analysis.graph is None:
        return []
    comps = doc.analysis.graph.graph.components
    lines = doc.text.split("\n")
    out = []
    for (line, _), paths in sorted(doc.components().items()):
        if not (params.range.start.line <= line <= params.range.end.line):
            continue
        sym = comps[paths[0]].get("out_sym")
        if sym:
            label = "→ [" + ", ".join(sym_text(s) for s in sym) + "]"
            out.append(T.InlayHint(position=ls.units(lines, line, len(lines[line])), label=label,
                                   padding_left=True))
    return out


def main() -> int:
    """Serve LSP over stdin/stdout until the client says exit."""
    server.start_io()
    return 0
