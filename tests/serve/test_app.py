"""The WebSocket protocol of strata.serve.app, in process (starlette's
TestClient): what a page sends that is not a message is answered with an
error and the page stays connected."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from strata.serve.files import Root
from tests.optional import require

testclient = require("starlette.testclient")
require("watchfiles")

SPECS = Path(__file__).resolve().parents[2] / "specs"


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
