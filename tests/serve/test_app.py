"""The WebSocket protocol of strata.serve.app, in process (starlette's
TestClient): what a page sends that is not a message is answered with an
error and the page stays connected."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from strata.serve.files import Root
from tests.optional import require

testclient = require("starlette.testclient")
require("watchfiles")

SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.fixture
def slow_disk(monkeypatch):
    """A slow disk: `slow_disk(seconds, only=text)` makes the workbench's writes
    (Root.write_text) wait `seconds` before writing `text` (every text when
    `only` is None)."""
    write = Root.write_text

    def slow(seconds: float, only: str | None = None) -> None:
        def write_slowly(self, name, text, written=None):
            if only is None or text == only:
                time.sleep(seconds)
            write(self, name, text, written)

        monkeypatch.setattr(Root, "write_text", write_slowly)

    return slow


def test_malformed_messages_are_answered_and_the_page_stays(tmp_path):
    from strata.serve.app import create_app

    shutil.copy(SPECS / "gpt2.arch", tmp_path)
    with testclient.TestClient(create_app(Root(tmp_path), host="testserver")) as client:
        with client.websocket_connect("/ws") as ws:
            for bad in (b"\x00binary", "[1, 2]", "{not json", "[" * 100_000,
                        json.dumps({"type": "open", "file": "../../etc/passwd"})):
                ws.send_bytes(bad) if isinstance(bad, bytes) else ws.send_text(bad)
                m = json.loads(ws.receive_text())
                assert m["type"] == "error", m
            ws.send_text(json.dumps({"type": "open", "file": "gpt2.arch", "toggled": ["decoder.h"]}))
            assert json.loads(ws.receive_text())["type"] == "text"
            view = json.loads(ws.receive_text())
            assert view["type"] == "view" and view["ok"] and view["svg"].count('data-toggle="decoder.h.') >= 12


def test_another_host_is_refused(tmp_path):
    from strata.serve.app import create_app

    with testclient.TestClient(create_app(Root(tmp_path))) as client:  # TestClient says Host: testserver
        r = client.get("/api/files")
        assert r.status_code == 403 and "refused" in r.text


def _two_edits_in_a_row(tmp_path, settle: float, before_second=lambda second: None) -> None:
    """A page edits a.arch twice, the second as soon as the first is on disk, then
    waits `settle` s (a save of the first taken as another editor's would be on disk
    by then): the file holds the second text and the page was never sent the first."""
    from strata.serve.app import create_app

    base = (SPECS / "tiny_shakespeare.arch").read_text()
    (tmp_path / "a.arch").write_text(base)
    first, second = base + "# one\n", base + "# one two\n"
    before_second(second)
    with testclient.TestClient(create_app(Root(tmp_path), host="testserver")) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_text(json.dumps({"type": "open", "file": "a.arch"}))
            assert json.loads(ws.receive_text())["type"] == "text"
            ws.send_text(json.dumps({"type": "edit", "text": first}))
            deadline = time.monotonic() + 10
            while (tmp_path / "a.arch").read_text() != first and time.monotonic() < deadline:
                time.sleep(0.01)
            ws.send_text(json.dumps({"type": "edit", "text": second}))
            while (tmp_path / "a.arch").read_text() != second and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(settle)
            assert (tmp_path / "a.arch").read_text() == second
            ws.send_text(json.dumps({"type": "open", "file": "a.arch"}))
            texts = []
            while not texts or texts[-1] != second:
                m = json.loads(ws.receive_text())
                if m["type"] == "text":
                    texts.append(m["text"])
            assert texts == [second]  # the page was never sent `first` back


def test_the_pages_own_earlier_save_does_not_undo_a_newer_edit(tmp_path, slow_disk):
    """The watcher reports the page's first save while its second is still being
    written (a slow disk): the page keeps what was typed since, and so does the file."""
    # the watcher's batch for `first` arrives while `second` is being written
    _two_edits_in_a_row(tmp_path, 0.3, lambda second: slow_disk(1.0, only=second))


def test_a_save_reported_before_the_page_knows_it_wrote_it_is_still_its_own(tmp_path, monkeypatch):
    """The watcher reports the page's save at once, while the page is still learning
    what it wrote (the file's identity, read after the rename: here slow) and a newer
    edit has come in: the page kept the disk's older text as another editor's and
    never wrote the newer one.  Now the writer knows its file before the rename."""
    identity, calls = Root.identity, []

    def slow_first(self, name):  # the first look at the file's identity takes a second
        calls.append(name)
        if len(calls) == 1:
            time.sleep(1.0)
        return identity(self, name)

    monkeypatch.setattr(Root, "identity", slow_first)
    _two_edits_in_a_row(tmp_path, 1.2)  # the slow identity is over by then


def test_another_editor_writing_what_the_page_last_saved_still_reaches_the_page(tmp_path):
    """The page's own save is told from another editor's by the file's identity, not its
    text: the page saves A, another editor writes B, then A again -- the page shows A."""
    from strata.serve.app import create_app

    base = (SPECS / "tiny_shakespeare.arch").read_text()
    path = tmp_path / "a.arch"
    path.write_text(base)
    mine, other = base + "# mine\n", base + "# other\n"

    def elsewhere(text):  # as an editor saves: a temporary file renamed over it
        (tmp_path / "a.arch.tmp").write_text(text)
        os.replace(tmp_path / "a.arch.tmp", path)

    def texts_sent(ws):  # the texts sent before the answer to a marker request (views skipped)
        ws.send_text(json.dumps({"type": "run", "names": []}))
        seen = []
        while (m := json.loads(ws.receive_text()))["type"] != "runs":
            seen += [m["text"]] if m["type"] == "text" else []
        return seen

    with testclient.TestClient(create_app(Root(tmp_path), host="testserver")) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_text(json.dumps({"type": "open", "file": "a.arch"}))
            assert texts_sent(ws) == [base]
            ws.send_text(json.dumps({"type": "edit", "text": mine}))
            deadline = time.monotonic() + 10
            while path.read_text() != mine and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)  # the watcher has reported the page's own save
            assert texts_sent(ws) == []
            for text in (other, mine):
                elsewhere(text)
                time.sleep(0.5)  # the watcher's batch (50 ms debounce) has been handled
                assert texts_sent(ws) == [text]


def test_a_sample_with_numbers_json_cannot_hold_as_ints_is_answered(tmp_path):
    from strata.serve.app import create_app

    with testclient.TestClient(create_app(Root(tmp_path), host="testserver")) as client:
        with client.websocket_connect("/ws") as ws:
            for tokens in ("1e400", "-1e400", "NaN"):
                ws.send_text('{"type": "sample", "run": "bad", "tokens": %s}' % tokens)
                ws.send_text('{"type": "sample", "run": "next", "tokens": 0}')  # answered either way
                m = json.loads(ws.receive_text())
                assert m["type"] == "sample" and m["run"] == "bad" and m["error"], m
                assert json.loads(ws.receive_text())["run"] == "next"


def test_hostile_spec_text_is_answered_quickly_and_an_oversized_edit_is_refused(tmp_path):
    """An edit of 400 KB (one expression 200,000 operators long: 12 s of checking
    before) is checked within a second or two, to a located error; an edit past
    MAX_SPEC_BYTES is refused with an error and neither saved nor checked; a
    message past MAX_MESSAGE is refused before it is decoded."""
    from strata.dsl.clean import MAX_SPEC_BYTES, MAX_TOKENS
    from strata.serve.app import MAX_MESSAGE, create_app

    base = (SPECS / "tiny_shakespeare.arch").read_text()
    (tmp_path / "a.arch").write_text(base)
    with testclient.TestClient(create_app(Root(tmp_path), host="testserver")) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_text(json.dumps({"type": "open", "file": "a.arch"}))
            assert json.loads(ws.receive_text())["type"] == "text"
            assert json.loads(ws.receive_text())["ok"]
            for hostile in ("model m { d = " + "1+" * 200_000 + "1 }\n",
                            "model m {\n" + "  block b { layernorm }\n" * 20_000 + "}\n"):
                start = time.monotonic()
                ws.send_text(json.dumps({"type": "edit", "text": hostile}))
                view = json.loads(ws.receive_text())
                assert time.monotonic() - start < 5  # ~0.3 s unloaded
                assert view["type"] == "view" and not view["ok"]
                assert [d["message"].split(" (hint")[0] for d in view["diagnostics"]] == [
                    f"the spec has more than {MAX_TOKENS:,} tokens"]
            huge = base + "#" * MAX_SPEC_BYTES
            ws.send_text(json.dumps({"type": "edit", "text": huge}))
            m = json.loads(ws.receive_text())
            assert m["type"] == "error" and m["message"].startswith("not saved: the text is 1,049,")
            ws.send_text("x" * (MAX_MESSAGE + 1))
            m = json.loads(ws.receive_text())
            assert m["type"] == "error" and f"more than {MAX_MESSAGE:,}" in m["message"]
            ws.send_text(json.dumps({"type": "edit", "text": base}))  # the page goes on
            assert json.loads(ws.receive_text())["ok"]
    assert (tmp_path / "a.arch").read_text() == base


def test_the_last_edit_is_saved_though_the_page_closes_while_it_is_written(tmp_path, slow_disk):
    """A slow disk: the page sends an edit and closes before the write is done; the
    file still ends as the page's last text (the save was cancelled with the page)."""
    from strata.serve.app import create_app

    base = (SPECS / "tiny_shakespeare.arch").read_text()
    (tmp_path / "a.arch").write_text(base)
    slow_disk(0.5)
    with testclient.TestClient(create_app(Root(tmp_path), host="testserver")) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_text(json.dumps({"type": "open", "file": "a.arch"}))
            assert json.loads(ws.receive_text())["type"] == "text"
            ws.send_text(json.dumps({"type": "edit", "text": base + "# last\n"}))
            ws.send_text(json.dumps({"type": "run", "names": []}))  # the edit has been taken
            while json.loads(ws.receive_text())["type"] != "runs":
                pass
        assert (tmp_path / "a.arch").read_text() == base + "# last\n"
