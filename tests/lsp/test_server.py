"""`strata lsp` end to end: pytest-lsp drives the real server over stdio."""

from __future__ import annotations

import asyncio

import os
import sys
import time
from pathlib import Path

import pytest

from tests.optional import require  # noqa: E402

pytest_lsp = require("pytest_lsp")
T = require("lsprotocol.types")

from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities  # noqa: E402

from strata.dsl.rewrite import rewrite  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GPT2 = (ROOT / "specs" / "gpt2.arch").read_text()


@pytest_lsp.fixture(config=ClientServerConfig(
    server_command=[sys.executable, "-m", "strata", "lsp"],
    server_env={**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}))
async def client(lsp_client: LanguageClient, tmp_path):
    await lsp_client.initialize_session(T.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=tmp_path.as_uri(),
        workspace_folders=[T.WorkspaceFolder(uri=tmp_path.as_uri(), name="w")],
        initialization_options={"inlayHints": True}))
    yield
    await lsp_client.shutdown_session()


def _open(client: LanguageClient, path: Path, text: str) -> str:
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(T.DidOpenTextDocumentParams(
        T.TextDocumentItem(uri=uri, language_id="strata", version=1, text=text)))
    return uri


async def _diagnostics(client: LanguageClient, uri: str) -> list:
    await client.wait_for_notification(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return client.diagnostics[uri]


THREE = GPT2.replace("d     = 768", "d     = 768 +").replace("heads, causal", "heads causal") \
            .replace("act=gelu_tanh", "act=gelu_tan")


@pytest.mark.asyncio
async def test_diagnostics_on_open_and_change(client: LanguageClient, tmp_path):
    uri = _open(client, tmp_path / "g.arch", THREE)
    diags = await _diagnostics(client, uri)
    assert [(d.range.start.line, d.range.start.character) for d in diags] == [(6, 15), (12, 42), (13, 41)]
    assert diags[0].message.startswith("the line ends after '+'") and "\nhint: " in diags[0].message
    assert all(d.severity == T.DiagnosticSeverity.Error and d.source == "strata" for d in diags)
    # a quick fix for the misspelled activation, from the checker's hint
    actions = await client.text_document_code_action_async(T.CodeActionParams(
        text_document=T.TextDocumentIdentifier(uri=uri), range=diags[2].range,
        context=T.CodeActionContext(diagnostics=[diags[2]])))
    fix, = actions
    edit, = fix.edit.changes[uri]
    assert (fix.title, edit.new_text) == ("Change 'gelu_tan' to 'gelu_tanh'", "gelu_tanh")
    assert (edit.range.start.line, edit.range.start.character, edit.range.end.character) == (13, 41, 49)
    fixed = THREE.replace("768 +", "768")
    client.text_document_did_change(T.DidChangeTextDocumentParams(
        T.VersionedTextDocumentIdentifier(uri=uri, version=2),
        [T.TextDocumentContentChangeWholeDocument(text=fixed)]))
    diags = await _diagnostics(client, uri)
    assert [d.range.start.line for d in diags] == [12, 13]


@pytest.mark.asyncio
async def test_what_the_passes_refuse_is_a_diagnostic_at_the_pass(client: LanguageClient, tmp_path):
    """A pass after a calibrated quantize gave no diagnostic (summary, compile and
    compress refused it); it is published at the pass, with the hint, as the summary says it."""
    spec = GPT2 + "passes {\n  quantize(int8_static)\n  fuse_qkv\n}\n"  # fuse_qkv on line 28 (0-based 27)
    uri = _open(client, tmp_path / "g.arch", spec)
    diag, = await _diagnostics(client, uri)
    assert (diag.range.start.line, diag.range.start.character, diag.range.end.line, diag.range.end.character) \
        == (27, 2, 27, 10)
    assert diag.message.startswith("fuse_qkv: it rewrites decoder.h.0.attn.q, decoder.h.0.attn.k, ")
    assert diag.message.endswith("\nhint: put quantize last: list fuse_qkv before quantize(int8_static)")
    assert diag.severity == T.DiagnosticSeverity.Error and diag.source == "strata"
    client.text_document_did_change(T.DidChangeTextDocumentParams(  # the order the hint gives
        T.VersionedTextDocumentIdentifier(uri=uri, version=2),
        [T.TextDocumentContentChangeWholeDocument(text=GPT2 + "passes {\n  fuse_qkv\n  quantize(int8_static)\n}\n")]))
    assert list(await _diagnostics(client, uri)) == []


@pytest.mark.asyncio
async def test_hover_completion_and_symbols(client: LanguageClient, tmp_path):
    uri = _open(client, tmp_path / "gpt2.arch", GPT2)
    await _diagnostics(client, uri)
    doc = T.TextDocumentIdentifier(uri=uri)
    hover = await client.text_document_hover_async(T.HoverParams(doc, T.Position(12, 30)))
    text = hover.contents.value
    assert "**attention**" in text and "`[B, T, d]`" in text and "parameters: 2,362,368 each" in text
    hover = await client.text_document_hover_async(T.HoverParams(doc, T.Position(17, 21)))  # d in embedding(vocab, d)
    assert "`d` = `768`" in hover.contents.value and "line 7" in hover.contents.value
    # inside mlp( : its options with types and defaults; after act= : the activations
    items = await client.text_document_completion_async(T.CompletionParams(doc, T.Position(13, 30)))
    act, = [i for i in items.items if i.label == "act="]
    assert "default 'gelu'" in act.detail and "swiglu" in act.detail
    items = await client.text_document_completion_async(T.CompletionParams(doc, T.Position(13, 42)))
    assert {"gelu", "swiglu", "gelu_tanh"} <= {i.label for i in items.items}
    symbols = await client.text_document_document_symbol_async(T.DocumentSymbolParams(doc))
    gpt2, = symbols
    assert gpt2.name == "gpt2" and [c.name for c in gpt2.children if c.kind == T.SymbolKind.Variable][:3] == [
        "vocab", "ctx", "d"]
    assert {"layer", "decoder"} <= {c.name for c in gpt2.children}
    found = await client.workspace_symbol_async(T.WorkspaceSymbolParams(query="lay"))
    assert [s.name for s in found] == ["layer"]
    hints = await client.text_document_inlay_hint_async(T.InlayHintParams(
        doc, T.Range(T.Position(0, 0), T.Position(30, 0))))
    assert any(h.label == "→ [B, T, d]" and h.position.line == 17 for h in hints)


@pytest.mark.asyncio
async def test_definition_across_an_import_and_references(client: LanguageClient, tmp_path):
    (tmp_path / "blocks.arch").write_text("# shared\nblock layer {\n  residual { layernorm; mlp(64) }\n}\n")
    main = ('from "blocks.arch" import layer\nmodel m {\n  d = 16\n  stack s(tokens) {\n'
            "    embedding(10, d) as wte\n    repeat(2) layer\n    lm_head(tie=wte)\n  }\n}\n")
    uri = _open(client, tmp_path / "m.arch", main)
    await _diagnostics(client, uri)
    doc = T.TextDocumentIdentifier(uri=uri)
    found = await client.text_document_definition_async(T.DefinitionParams(doc, T.Position(5, 16)))
    assert [(f.uri, f.range.start.line, f.range.start.character) for f in found] == [
        ((tmp_path / "blocks.arch").as_uri(), 1, 6)]
    found = await client.text_document_definition_async(T.DefinitionParams(doc, T.Position(6, 17)))  # tie=wte
    assert [(f.range.start.line, f.range.start.character) for f in found] == [(4, 24)]
    refs = await client.text_document_references_async(T.ReferenceParams(
        context=T.ReferenceContext(include_declaration=True), text_document=doc, position=T.Position(2, 2)))
    assert sorted((r.range.start.line, r.range.start.character) for r in refs) == [(2, 2), (4, 18)]
    # the imported file changes on disk and is saved: the importer is checked again
    (tmp_path / "blocks.arch").write_text("block layer {\n  residual { layernorm; mlp(64, act=gelux) }\n}\n")
    client.text_document_did_save(T.DidSaveTextDocumentParams(
        T.TextDocumentIdentifier(uri=(tmp_path / "blocks.arch").as_uri())))
    diags = await _diagnostics(client, uri)
    assert len(diags) == 1 and "'gelux' is not a valid act" in diags[0].message
    assert "blocks.arch:2:" in diags[0].message


@pytest.mark.asyncio
async def test_formatting_is_strata_fmt_and_rename_changes_every_use(client: LanguageClient, tmp_path):
    messy = "model m {d=16\n  stack s(tokens){embedding(10,d) as wte\n  lm_head(tie = wte)}}\n"
    uri = _open(client, tmp_path / "m.arch", messy)
    await _diagnostics(client, uri)
    doc = T.TextDocumentIdentifier(uri=uri)
    edits = await client.text_document_formatting_async(T.DocumentFormattingParams(
        doc, T.FormattingOptions(tab_size=2, insert_spaces=True)))
    assert [e.new_text for e in edits] == [rewrite(messy, str(tmp_path / "m.arch"), None, "fmt")]
    text = "model m {\n  d = 16\n  dd = d * 2\n  stack s(tokens) { embedding(10, d) as d_emb; mlp(dd + d) }\n}\n"
    client.text_document_did_change(T.DidChangeTextDocumentParams(
        T.VersionedTextDocumentIdentifier(uri=uri, version=2), [T.TextDocumentContentChangeWholeDocument(text=text)]))
    edit = await client.text_document_rename_async(T.RenameParams(doc, T.Position(1, 2), "width"))
    changes = sorted((e.range.start.line, e.range.start.character, e.range.end.character)
                     for e in edit.changes[uri])
    assert changes == [(1, 2, 3), (2, 7, 8), (3, 34, 35), (3, 56, 57)]  # never dd, d_emb


@pytest.mark.asyncio
async def test_a_2000_layer_spec_answers_hover_quickly(client: LanguageClient, tmp_path):
    uri = _open(client, tmp_path / "deep.arch", GPT2.replace("depth = 12", "depth = 2000"))
    assert list(await _diagnostics(client, uri)) == []
    doc = T.TextDocumentIdentifier(uri=uri)
    start = time.perf_counter()
    hover = await client.text_document_hover_async(T.HoverParams(doc, T.Position(12, 30)))
    assert time.perf_counter() - start < 0.2
    assert "(2000 uses)" in hover.contents.value


async def _diagnostics_of(client: LanguageClient, uri: str, seen=None, timeout: float = 60.0) -> list:
    """The diagnostics published for `uri` after `seen` (the list returned last
    time; None: the first).  Polled, not awaited as "the next notification": the
    server publishes for several files at once, and one that arrives between two
    waits would be missed and the wait hang."""
    deadline = time.monotonic() + timeout
    while uri not in client.diagnostics or client.diagnostics[uri] is seen:
        assert time.monotonic() < deadline, f"no diagnostics for {uri} within {timeout} s"
        await asyncio.sleep(0.02)
    return client.diagnostics[uri]


@pytest.mark.asyncio
async def test_an_importer_follows_the_unsaved_edits_of_what_it_imports(client: LanguageClient, tmp_path):
    """main imports mid, mid imports base: an edit to base in the editor (not
    saved) is seen by both; closing base's buffer goes back to the disk."""
    base_text = "block inner {\n  residual { layernorm; mlp(64) }\n}\n"
    base = _open(client, tmp_path / "base.arch", base_text)
    await _diagnostics_of(client, base)
    mid = _open(client, tmp_path / "mid.arch", 'from "base.arch" import inner\nmodel mid {\n  stack s(tokens) {\n'
                "    embedding(10, 16) as wte\n    repeat(2) inner\n    lm_head(tie=wte)\n  }\n}\n")
    await _diagnostics_of(client, mid)
    main = _open(client, tmp_path / "m.arch", 'from "mid.arch" import mid\nmodel m extends mid { }\n')
    first = await _diagnostics_of(client, main)
    assert list(first) == []
    client.text_document_did_change(T.DidChangeTextDocumentParams(
        T.VersionedTextDocumentIdentifier(uri=base, version=2),
        [T.TextDocumentContentChangeWholeDocument(text=base_text.replace("mlp(64)", "mlp(64, act=gelux)"))]))
    diags = await _diagnostics_of(client, main, first)
    assert len(diags) == 1 and "'gelux' is not a valid act" in diags[0].message
    assert "base.arch:2:" in diags[0].message
    assert (tmp_path / "base.arch").read_text() == base_text  # nothing was saved
    client.text_document_did_close(T.DidCloseTextDocumentParams(T.TextDocumentIdentifier(uri=base)))
    assert list(await _diagnostics_of(client, main, diags)) == []  # the file on disk again


@pytest.mark.asyncio
async def test_yaml_completion_from_the_schema(client: LanguageClient, tmp_path):
    """In a half-written YAML spec: the options of the component at the cursor,
    then the words of `act:`."""
    text = ("models:\n  m:\n    vars: {d: 16}\n    stacks:\n      s:\n        inputs: [tokens]\n        body:\n"
            "          - {embedding: [10, d]}\n          - {mlp: 64, act: ")
    path = tmp_path / "m.yaml"
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(T.DidOpenTextDocumentParams(
        T.TextDocumentItem(uri=uri, language_id="yaml", version=1, text=text)))
    assert await _diagnostics_of(client, uri)  # half written: a mistake
    doc = T.TextDocumentIdentifier(uri=uri)
    items = await client.text_document_completion_async(T.CompletionParams(doc, T.Position(8, 28)))
    assert {"gelu", "swiglu", "gelu_tanh"} <= {i.label for i in items.items}
    items = await client.text_document_completion_async(T.CompletionParams(doc, T.Position(8, 22)))
    act, = [i for i in items.items if i.label == "act"]
    assert act.kind == T.CompletionItemKind.Property and "default 'gelu'" in act.detail


def _utf16(line: str, col: int) -> int:
    return len(line[:col].encode("utf-16-le")) // 2


@pytest.mark.asyncio
async def test_positions_are_utf16_after_characters_outside_the_bmp(client: LanguageClient, tmp_path):
    """The protocol counts UTF-16 code units: on a line with an emoji (two units) before it,
    a mistake, a definition, a reference and a quick fix sit where the editor shows them,
    and a position the client sends is read in the same units."""
    text = ('model m {\n  note = "😀😀"; d = 16\n  stack s(tokens) {\n    embedding(10, d) as wte\n'
            '    lm_head(tie=wte)\n  }\n}\ntrain { data = "😀.txt"; batch = 4; bacth = 3 }\n')
    lines = text.split("\n")
    uri = _open(client, tmp_path / "u.arch", text)
    diag, = await _diagnostics(client, uri)
    col = lines[7].index("bacth")
    assert (diag.range.start.line, diag.range.start.character, diag.range.end.character) == (
        7, _utf16(lines[7], col), _utf16(lines[7], lines[7].index(" }")))  # `bacth = 3`
    doc = T.TextDocumentIdentifier(uri=uri)
    fix, = await client.text_document_code_action_async(T.CodeActionParams(
        text_document=doc, range=diag.range, context=T.CodeActionContext(diagnostics=[diag])))
    edit, = fix.edit.changes[uri]
    assert (edit.range.start.character, edit.new_text) == (_utf16(lines[7], col), "batch")
    d_at = _utf16(lines[1], lines[1].index("d ="))  # 17 units, 15 characters
    found = await client.text_document_definition_async(T.DefinitionParams(doc, T.Position(3, 18)))
    assert [(f.range.start.line, f.range.start.character, f.range.end.character) for f in found] == [
        (1, d_at, d_at + 1)]
    hover = await client.text_document_hover_async(T.HoverParams(doc, T.Position(1, d_at)))
    assert hover is not None and "`d` = `16`" in hover.contents.value
    refs = await client.text_document_references_async(T.ReferenceParams(
        context=T.ReferenceContext(include_declaration=True), text_document=doc, position=T.Position(1, d_at)))
    assert sorted((r.range.start.line, r.range.start.character) for r in refs) == [(1, d_at), (3, 18)]


@pytest.mark.asyncio
async def test_a_rename_to_what_is_not_a_free_name_is_refused(client: LanguageClient, tmp_path):
    """'my var', '1abc' and a keyword would not parse, and a name already defined beside
    it would silently make two variables one: an error the editor shows, no edit."""
    from pygls.exceptions import JsonRpcInvalidParams

    text = "model m {\n  d = 16\n  e = 2\n  stack s(tokens) {\n    embedding(10, d * e) as wte\n  }\n}\n"
    uri = _open(client, tmp_path / "m.arch", text)
    await _diagnostics(client, uri)
    doc = T.TextDocumentIdentifier(uri=uri)
    for name, why in (("my var", "is not a name"), ("1abc", "is not a name"), ("model", "is not a name"),
                      ("e", "is already defined here")):
        with pytest.raises(JsonRpcInvalidParams, match=why):
            await client.text_document_rename_async(T.RenameParams(doc, T.Position(1, 2), name))
    edit = await client.text_document_rename_async(T.RenameParams(doc, T.Position(1, 2), "wte"))  # a module name
    assert len(edit.changes[uri]) == 2
    # formatting a file the editor has not opened answers nothing (pygls would read the path whole)
    never = T.TextDocumentIdentifier(uri=(tmp_path / "never.arch").as_uri())
    assert not await client.text_document_formatting_async(T.DocumentFormattingParams(
        never, T.FormattingOptions(tab_size=2, insert_spaces=True)))
