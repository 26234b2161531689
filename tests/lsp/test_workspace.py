"""The workspace's spec files as workspace/symbol reads them (strata/lsp/workspace.py):
bounded in directory entries looked at, files read and bytes read, before they are spent."""

from __future__ import annotations

import os

import pytest

import strata.io
import strata.lsp.workspace as W

SPEC = "block b{i} {{ residual {{ layernorm }} }}\n"


def _tree(root, n=12, size=0):
    for i in range(n):
        (root / f"s{i:02}.arch").write_text(SPEC.format(i=i) + "#" * size + "\n")


def test_every_spec_file_under_the_roots_in_order(tmp_path):
    _tree(tmp_path, 3)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.yaml").write_text("model: {}\n")
    (tmp_path / "notes.txt").write_text("not a spec\n")
    for hidden in (".git", "node_modules"):
        (tmp_path / hidden).mkdir()
        (tmp_path / hidden / "x.arch").write_text("block x { }\n")
    (tmp_path / "sub" / "bad.arch").write_bytes(b"\xff\xfe not utf-8")
    got = sorted(os.path.relpath(p, tmp_path) for p, _ in W.spec_texts([str(tmp_path)]))
    assert got == ["s00.arch", "s01.arch", "s02.arch", os.path.join("sub", "m.yaml")]


def test_files_read_are_bounded(tmp_path, monkeypatch):
    _tree(tmp_path)
    monkeypatch.setattr(W, "MAX_FILES", 5)
    assert len(list(W.spec_texts([str(tmp_path)]))) == 5


def test_bytes_read_are_bounded_before_reading(tmp_path, monkeypatch):
    """Each file is 1,000 bytes and more; with 3,500 bytes to spend, three are read and
    no file is read past the budget (its size is checked before it is read)."""
    _tree(tmp_path, size=1000)
    monkeypatch.setattr(W, "MAX_BYTES", 3500)
    reads = []
    real = strata.io.read_regular

    def read(path, limit, *a, **k):
        reads.append(limit)
        return real(path, limit, *a, **k)

    monkeypatch.setattr(W, "read_regular", read)
    got = list(W.spec_texts([str(tmp_path)]))
    assert len(got) == 3 and sum(len(t) for _, t in got) <= 3500
    assert all(limit <= 3500 for limit in reads)


def test_the_walk_stops_after_max_entries(tmp_path, monkeypatch):
    """A workspace opened on a huge folder: the walk looks at MAX_ENTRIES entries and
    stops (it used to walk all of it, whatever the number of files already read)."""
    deep = tmp_path
    for i in range(30):
        deep = deep / f"d{i:02}"
        deep.mkdir()
        (deep / "x.arch").write_text(SPEC.format(i=i))
    monkeypatch.setattr(W, "MAX_ENTRIES", 10)
    seen = []
    real = os.scandir

    def scandir(path):
        seen.append(path)
        return real(path)

    monkeypatch.setattr(W.os, "scandir", scandir)
    got = list(W.spec_texts([str(tmp_path)]))
    assert len(seen) <= 10 and len(got) <= 10


@pytest.mark.parametrize("roots", [[], [""]])
def test_no_folder_or_the_current_one(tmp_path, monkeypatch, roots):
    monkeypatch.chdir(tmp_path)
    _tree(tmp_path, 2)
    assert len(list(W.spec_texts(roots))) == (2 if roots else 0)


def test_workspace_symbols_answer_within_the_bounds(tmp_path, monkeypatch):
    """workspace/symbol itself reads through spec_texts: 30 spec files of 1,000 bytes
    and more, 3,500 bytes to spend: the blocks of three files, not thirty."""
    from types import SimpleNamespace

    from tests.optional import require

    T = require("lsprotocol.types")
    from strata.lsp.server import workspace_symbols

    _tree(tmp_path, 30, size=1000)
    monkeypatch.setattr(W, "MAX_BYTES", 3500)

    class FakeServer:
        workspace = SimpleNamespace(folders={"w": SimpleNamespace(uri=tmp_path.as_uri())})

        def range(self, lines, at, n):
            return T.Range(T.Position(*at), T.Position(at[0], at[1] + n))

    found = workspace_symbols(FakeServer(), T.WorkspaceSymbolParams(query="b"))
    assert sorted(s.name for s in found) == ["b0", "b1", "b2"]
