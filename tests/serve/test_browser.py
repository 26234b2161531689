"""`strata serve` in a real browser: Playwright drives the system's Chromium
(nothing downloaded) against a real `strata serve` process on a free port.

Screenshots go to a temporary folder; with STRATA_REFRESH_GOLDEN=1 they are
written to docs/images/serve/ (the ones docs/serve.md shows).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.optional import require

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH", os.environ.get("CHROMIUM", "/usr/bin/chromium"))
if not Path(CHROMIUM).exists():
    pytest.skip(f"chromium not found at {CHROMIUM} (CI installs it with apt)", allow_module_level=True)
require("starlette")
require("uvicorn")
require("watchfiles")
sync_api = require("playwright.sync_api")


def metrics(n: int, start: int = 0, rate: float = 0.05) -> str:
    """n training steps of a loss that falls as 4 e^(-rate step), then one evaluation."""
    lines = [json.dumps({"step": s, "train_loss": 4 * math.exp(-rate * s) + 1, "lr": 1e-3})
             for s in range(start, start + n)]
    lines += [json.dumps({"step": start + n - 1, "val_loss": 4.2 * math.exp(-rate * (start + n)) + 1.1})]
    return "\n".join(lines) + "\n"


def replace(path: Path, text: str) -> None:
    """As an editor (and strata train) writes: a temporary file, then a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    for name in ("gpt2.arch", "gpt2.yaml", "tiny_shakespeare.arch"):
        shutil.copy(ROOT / "specs" / name, folder / name)
    (folder / "runs" / "r1").mkdir(parents=True)
    (folder / "runs" / "r1" / "metrics.jsonl").write_text(metrics(20))
    (folder / "runs" / "r1" / "run.json").write_text(json.dumps({"spec": "gpt2.arch", "steps": 100}))
    (folder / "runs" / "r2").mkdir()
    (folder / "runs" / "r2" / "metrics.jsonl").write_text(metrics(30, rate=0.08))
    (folder / "leak.arch").symlink_to("/etc/passwd")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "strata", "serve", str(folder), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=folder)
    line = proc.stdout.readline()
    m = re.search(r"http://([\d.]+):(\d+)/", line)
    assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
    shots = ROOT / "docs" / "images" / "serve" if os.environ.get("STRATA_REFRESH_GOLDEN") == "1" \
        else tmp_path_factory.mktemp("shots")
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        page.goto(m.group(0))  # each test can run alone (-k): the page is the workbench's from the start
        yield {"folder": folder, "url": m.group(0), "host": m.group(1), "port": int(m.group(2)),
               "page": page, "shots": shots}
        browser.close()
    proc.terminate()
    proc.wait(10)


def test_draws_gpt2_folded_and_unfolds_a_click(served):
    page = served["page"]
    page.goto(served["url"] + "?file=gpt2.arch")
    title = page.locator('text.toggle[data-toggle="decoder.h"]')
    title.wait_for(timeout=15_000)
    assert title.text_content() == "h: layer × 12"
    page.screenshot(path=served["shots"] / "folded.png")
    layers = page.locator('g.node[data-toggle^="decoder.h."]')
    assert layers.count() == 0
    title.click()
    page.wait_for_function("document.querySelectorAll('g.node[data-toggle^=\"decoder.h.\"]').length == 12")
    assert [layers.nth(i).get_attribute("data-key") for i in range(12)] == [f"decoder.h.{i}" for i in range(12)]
    page.screenshot(path=served["shots"] / "unfolded.png")
    page.locator('text.toggle[data-toggle="decoder.h"]').click()
    page.wait_for_function("document.querySelectorAll('g.node[data-toggle^=\"decoder.h.\"]').length == 0")
    assert page.locator('g.node[data-key="decoder.h.0.attn"]').count() == 1


def test_hover_shows_the_parameters_the_summary_prints(served):
    page = served["page"]
    row = page.locator("#summary tr", has_text=".attn").first
    params = row.locator("td").nth(3).inner_text()
    assert params == "2,362,368"
    page.hover('g.node[data-key="decoder.h.0.attn"]')
    tip = page.locator("#tip")
    tip.wait_for(state="visible")
    assert f"parameters: {params} each" in tip.inner_text() and "spec line 13" in tip.inner_text()
    page.screenshot(path=served["shots"] / "hover.png")
    page.click('g.node[data-key="decoder.h.0.attn"]')  # jumps to the line it comes from
    assert "attention(heads, causal=true" in page.locator(".cm-activeLine").inner_text()


def test_a_yaml_spec_is_drawn_and_coloured(served):
    page = served["page"]
    page.select_option("#file", "gpt2.yaml")
    page.locator('text.toggle[data-toggle="decoder.h"]', has_text="layer × 12").wait_for()
    page.wait_for_function("document.querySelector('.cm-content')?.innerText.includes('models:')")
    assert page.locator(".cm-content span").count() > 20  # the YAML mode's tokens
    page.select_option("#file", "gpt2.arch")
    page.wait_for_function("document.querySelector('.cm-content')?.innerText.includes('model gpt2')")


def test_a_typo_is_located_within_a_second_and_fixing_it_clears_it(served):
    page = served["page"]
    line = page.locator(".cm-line", has_text="layernorm as ln_f")
    line.click()
    page.keyboard.press("End")
    for _ in range(len(" as ln_f")):
        page.keyboard.press("ArrowLeft")
    t0 = time.monotonic()
    page.keyboard.type("x")
    problem = page.locator("#problems li", has_text="unknown component 'layernormx'")
    problem.wait_for(timeout=1000)
    assert time.monotonic() - t0 < 1.0
    assert ":22:5: error:" in problem.inner_text()
    assert page.locator(".cm-lintRange-error").count() >= 1
    assert "layernormx as ln_f" in (served["folder"] / "gpt2.arch").read_text()  # written to disk
    page.screenshot(path=served["shots"] / "error.png")
    page.keyboard.press("Backspace")
    page.wait_for_function("document.body.dataset.problems === '0'", timeout=1000)
    assert page.locator("#problems li").count() == 0
    assert "layernorm as ln_f" in (served["folder"] / "gpt2.arch").read_text()


def test_an_edit_on_disk_reaches_the_page(served):
    page = served["page"]
    path = served["folder"] / "gpt2.arch"
    time.sleep(0.3)  # the page's own last write has been seen by the watcher
    replace(path, path.read_text().replace("depth = 12", "depth = 6"))
    page.locator('text.toggle[data-toggle="decoder.h"]', has_text="layer × 6").wait_for(timeout=1500)
    assert "depth = 6" in page.locator(".cm-content").inner_text()
    replace(path, path.read_text().replace("depth = 6", "depth = 12"))
    page.locator('text.toggle[data-toggle="decoder.h"]', has_text="layer × 12").wait_for(timeout=1500)


def test_after_passes_changes_the_badges(served):
    page = served["page"]
    page.select_option("#file", "tiny_shakespeare.arch")
    badge = page.locator('#passes .badge[data-pass="fuse_qkv"]')
    badge.wait_for()
    assert "applied" not in badge.get_attribute("class") and badge.inner_text() == "fuse_qkv"
    page.check("#after")
    page.locator("#passes .badge.applied").wait_for()
    assert "fused 12 q/k/v projections into 4 matmuls" in badge.inner_text()
    assert page.locator("#diagram text", has_text="fused").count() > 0
    page.screenshot(path=served["shots"] / "passes.png")
    page.uncheck("#after")
    page.locator("#passes .badge:not(.applied)").wait_for()


def test_a_run_chart_grows_with_metrics(served):
    page = served["page"]
    page.click("#tab-runs")
    train = page.locator('path.train[data-run="runs/r1"]')
    train.wait_for()
    assert train.get_attribute("data-points") == "20"
    assert page.locator('path.train[data-run="runs/r2"]').get_attribute("data-points") == "30"
    assert page.locator('path.val[data-run="runs/r1"]').count() == 1
    assert '"steps": 100' in page.locator("#run-settings").inner_text()
    path = served["folder"] / "runs" / "r1" / "metrics.jsonl"
    replace(path, metrics(20) + metrics(25, start=20))
    page.wait_for_function("document.querySelector('path.train[data-run=\"runs/r1\"]')"
                           ".dataset.points === '45'", timeout=2000)
    page.screenshot(path=served["shots"] / "runs.png")
    page.click("#tab-spec")


def test_two_specs_compared(served):
    page = served["page"]
    page.click("#tab-compare")
    page.select_option("#compare-a", "gpt2.arch")
    page.select_option("#compare-b", "tiny_shakespeare.arch")
    page.locator("#compare-rows tr.changed", has_text="decoder.h × 4").wait_for()
    params = page.locator("#compare-totals tr", has_text="parameters").first.inner_text().split("\t")
    assert params == ["parameters", "124,439,808", "809,856", "0.0065×"]
    row = page.locator("#compare-rows tr.changed", has_text="decoder.h × 4").inner_text().split("\t")
    assert row[1] == "decoder.h × 12" and row[5] == "decoder.h × 4"
    assert page.locator("#compare-svg-a svg").count() == 1 and page.locator("#compare-svg-b svg").count() == 1
    page.screenshot(path=served["shots"] / "compare.png")
    page.click("#tab-spec")


def raw_get(served, target: str, headers: str = "") -> tuple[int, bytes]:
    """A request sent as written: no client tidies `..` away."""
    host = headers if "Host:" in headers else f"Host: {served['host']}:{served['port']}\r\n{headers}"
    close = "" if "Connection:" in headers else "Connection: close\r\n"
    with socket.create_connection((served["host"], served["port"]), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\n{host}{close}\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
            if data.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in data:
                break  # a WebSocket accepted: the connection stays open
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.parametrize("target,status", [("/../../etc/passwd", 404), ("/files/../../etc/passwd", 403),
                                           ("/files/%2e%2e/%2e%2e/etc/passwd", 403), ("/files/leak.arch", 403),
                                           ("/static/../app.py", 404)])
def test_nothing_outside_the_folder_is_served(served, target, status):
    code, body = raw_get(served, target)
    assert code == status and b"root:" not in body and b"import" not in body


def test_other_pages_are_refused(served):
    """DNS rebinding (another Host) and cross-site WebSocket hijacking (another Origin)."""
    code, body = raw_get(served, "/files/tiny_shakespeare.arch", "Host: evil.example\r\n")
    assert code == 403 and b"fuse_qkv" not in body
    upgrade = ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    code, _ = raw_get(served, "/ws", upgrade + "Origin: http://evil.example\r\n")
    assert code == 403
    code, _ = raw_get(served, "/ws", upgrade + f"Origin: http://{served['host']}:{served['port']}\r\n")
    assert code == 101


def test_a_file_inside_is_served(served):
    code, body = raw_get(served, "/files/tiny_shakespeare.arch")
    assert code == 200 and b"fuse_qkv" in body


def test_binds_localhost_only(served):
    assert served["host"] == "127.0.0.1"
    port = f"{served['port']:04X}"
    listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[1].endswith(":" + port) and line.split()[3] == "0A"]
    assert listening == ["0100007F:" + port]
    assert not any(line.split()[1].endswith(":" + port) and line.split()[3] == "0A"
                   for line in Path("/proc/net/tcp6").read_text().splitlines()[1:])
