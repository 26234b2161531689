"""Samples on the page's request (strata.serve.samples): bounded before any
model is loaded, refused outside the served folder, and real text from a
real (tiny, one-step) run over the page's WebSocket."""

from __future__ import annotations

import json

import pytest

from strata.serve.files import Refused, Root
from strata.serve.samples import MAX_TOKENS, sample
from tests.optional import require


@pytest.mark.parametrize("tokens,temperature,prompt,error", [
    (0, 0.8, "", f"tokens should be 1 to {MAX_TOKENS}"),
    (MAX_TOKENS + 1, 0.8, "", f"tokens should be 1 to {MAX_TOKENS}"),
    (10, float("nan"), "", "temperature should be 0 (greedy) to 10"),
    (10, 0.8, "x" * 5000, "the prompt is longer than 4,000 characters")])
def test_requests_are_bounded_before_anything_loads(tmp_path, tokens, temperature, prompt, error):
    assert sample(Root(tmp_path), ".", prompt, tokens, temperature, None)["error"].startswith(error)


def test_a_run_outside_the_folder_is_refused(tmp_path):
    with pytest.raises(Refused):
        sample(Root(tmp_path), "../..", "", 10, 0.8, None)


@pytest.mark.slow
def test_a_sample_from_a_real_run_over_the_websocket(tmp_path, monkeypatch):
    require("torch")
    testclient = require("starlette.testclient")
    import strata
    from strata.serve.app import create_app
    from tests.train.helpers import GPT, text

    (tmp_path / "tiny.arch").write_text(GPT)
    (tmp_path / "data.txt").write_text(text(800))
    monkeypatch.chdir(tmp_path)
    strata.train.train(tmp_path / "tiny.arch", out=tmp_path / "runs" / "a", data=str(tmp_path / "data.txt"),
                       steps=1, progress=False)
    with testclient.TestClient(create_app(Root(tmp_path), host="testserver")) as client:
        assert client.get("/api/files").json()["runs"] == ["runs/a"]
        with client.websocket_connect("/ws") as ws:
            ws.send_text(json.dumps({"type": "sample", "run": "runs/a", "prompt": "the ", "tokens": 8,
                                     "temperature": 0, "seed": 1}))
            m = json.loads(ws.receive_text())
            assert m["type"] == "sample" and "error" not in m, m
            assert m["text"].startswith("the ") and len(m["text"]) == 4 + 8  # char tokenizer: 8 new characters
            ws.send_text(json.dumps({"type": "sample", "run": "tiny.arch", "tokens": 8}))
            m = json.loads(ws.receive_text())
            assert m["run"] == "tiny.arch" and m["error"]
