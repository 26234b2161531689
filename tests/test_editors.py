"""editors/vscode: the extension's manifest points at files that exist, its
TextMate grammar gives each token of the shipped specs the right scope
(vscode-textmate, as VS Code runs it), and its client script is valid."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

EXT = Path(__file__).resolve().parents[1] / "editors" / "vscode"


def test_manifest_is_consistent():
    pkg = json.loads((EXT / "package.json").read_text())
    lang, = pkg["contributes"]["languages"]
    grammar, = pkg["contributes"]["grammars"]
    assert lang["extensions"] == [".arch"] and grammar["language"] == lang["id"]
    assert (EXT / lang["configuration"]).is_file() and (EXT / pkg["main"]).is_file()
    tm = json.loads((EXT / grammar["path"]).read_text())
    assert tm["scopeName"] == grammar["scopeName"]
    for name in tm["repository"]:  # every rule is used, every include exists
        assert f'"#{name}"' in (EXT / grammar["path"]).read_text()
    for ref in re.findall(r'"include": "#(\w+)"', (EXT / grammar["path"]).read_text()):
        assert ref in tm["repository"]
    assert pkg["contributes"]["configuration"]["properties"]["strata.server.command"]["default"] == ["strata", "lsp"]


def test_highlighting_reads_numbers_as_the_parser_does():
    """The parser's NUMBER is ASCII digits only; Oniguruma's \\d (VS Code's TextMate
    engine) matches any script's digits, so '٣' was coloured a number.  No editor
    grammar says \\d, and the workbench's bundle holds its source's number rule."""
    def strings(x):  # every string of a JSON document: the regexes, as Oniguruma reads them
        if isinstance(x, str):
            yield x
        for v in x.values() if isinstance(x, dict) else x if isinstance(x, list) else ():
            yield from strings(v)

    digit = re.compile(r"(?<!\\)(?:\\\\)*\\d")  # \d, not an escaped backslash then d
    root = EXT.parents[1]
    frontend = root / "strata" / "serve" / "frontend" / "editor.js"
    for f in (EXT / "syntaxes" / "strata.tmLanguage.json", EXT / "language-configuration.json"):
        assert not [s for s in strings(json.loads(f.read_text())) if digit.search(s)], f
    assert not digit.search(frontend.read_text())  # its regex literals
    lark = (root / "strata" / "dsl" / "grammar.lark").read_text()
    assert "NUMBER: /([0-9][0-9_]*" in lark  # what the grammars mirror
    rule, = re.findall(r"match\((/\^\[0-9\][^)]*\)[^/]*/i)\)", frontend.read_text())
    assert rule in (root / "strata" / "serve" / "static" / "editor.js").read_text()


def _node_or_skip():
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (EXT / "node_modules" / "vscode-textmate").is_dir():
        pytest.skip("the extension's npm packages are not installed (make test installs them)")


def test_grammar_scopes_the_shipped_specs():
    _node_or_skip()
    specs = sorted(str(p) for p in (EXT.parents[1] / "specs").glob("*.arch"))
    r = subprocess.run(["node", "test/grammar.test.js", *specs], cwd=EXT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok: ")


def test_grammar_scopes_the_docs_code_blocks():
    """The docs' ```arch blocks (README and docs/*.md) tokenize with the
    grammar, every word scoped: the highlighting a TextMate-grammar
    highlighter (VS Code's Markdown preview, Shiki) gives them."""
    _node_or_skip()
    root = EXT.parents[1]
    docs = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    blocks = sum(len(re.findall(r"^```arch[ \t]*\n", d.read_text(), re.M)) for d in docs)
    assert blocks >= 10
    r = subprocess.run(["node", "test/grammar.test.js", *map(str, docs)], cwd=EXT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith(f"{blocks} specs or code blocks")


def test_client_script_parses():
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    subprocess.run(["node", "--check", str(EXT / "extension.js")], check=True)


def test_extension_packages_with_vsce(tmp_path):
    """What `make vscode` ships: the manifest, grammar, client and its runtime
    dependency, packaged by vsce from the npm packages alone (no network)."""
    import zipfile

    _node_or_skip()
    vsce = EXT / "node_modules" / "@vscode" / "vsce" / "vsce"
    if not vsce.is_file():
        pytest.skip("vsce is not installed (make test installs it)")
    out = tmp_path / "strata.vsix"
    subprocess.run(["node", str(vsce), "package", "--allow-missing-repository", "--skip-license",
                    "--out", str(out)], cwd=EXT, check=True, capture_output=True, text=True)
    names = set(zipfile.ZipFile(out).namelist())
    assert {"extension/package.json", "extension/extension.js", "extension/syntaxes/strata.tmLanguage.json",
            "extension/language-configuration.json"} <= names
    assert any(n.startswith("extension/node_modules/vscode-languageclient/") for n in names)
    assert not any(n.startswith("extension/test/") or "vscode-textmate" in n for n in names)
