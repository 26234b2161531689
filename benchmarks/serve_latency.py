"""`strata serve` latency: from an edit sent by the page to the updated diagram
payload (diagnostics, SVG, hovers, summary) back on the page's WebSocket.

The real server runs as a subprocess on a copy of the spec; each edit flips
the depth (12 <-> 11 layers), so every payload has a new diagram, and is
written to disk by the server (atomically) before it is checked.  The page
itself waits 50 ms after the last keystroke before it sends an edit (so a
burst of keys is one check): keystroke -> diagram is that wait plus the
figure here.  Also printed: the check and the drawing alone, in process.

With --browser, also from a real keystroke in the page (Chromium through
Playwright, the system's /usr/bin/chromium) to the new diagram in its DOM:
the debounce, the WebSocket, the check, the drawing and the page's update.

Goal (issue 17): under 300 ms for GPT-2 and Llama 2 70B.

    python benchmarks/serve_latency.py [--runs 15] [--browser]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]
DEBOUNCE_MS = 50  # strata/serve/static/app.js
SPECS = {"gpt2.arch": ("gpt2.arch",), "llama2_70b.arch": ("llama2_70b.arch", "llama2_7b.arch")}


def flip(text: str, i: int) -> str:
    """The spec with its depth one less on odd edits."""
    m = re.search(r"depth\s*=\s*(\d+)", text)
    depth = int(m.group(1)) - (i % 2)
    return text[:m.start(1)] + str(depth) + text[m.end(1):]


async def over_websocket(url: str, name: str, text: str, runs: int) -> list[float]:
    async with websockets.connect(url.replace("http", "ws") + "ws", max_size=1 << 26) as ws:
        await ws.send(json.dumps({"type": "open", "file": name, "toggled": [], "after": False}))
        while json.loads(await ws.recv())["type"] != "view":
            pass
        out = []
        for i in range(1, 2 * runs + 1):
            t = time.perf_counter()
            await ws.send(json.dumps({"type": "edit", "text": flip(text, i)}))
            while True:
                m = json.loads(await ws.recv())
                if m["type"] == "view":
                    break
            out.append(time.perf_counter() - t)
            assert m["ok"] and "svg" in m, m["diagnostics"]
        return out


KEYS = """
document.addEventListener("keydown", () => { window.__t0 = performance.now(); }, true);
window.__lat = [];
new MutationObserver(() => { if (window.__t0) { window.__lat.push(performance.now() - window.__t0); window.__t0 = 0; } })
  .observe(document.getElementById("diagram"), {childList: true});
"""


def in_browser(url: str, name: str, text: str, runs: int) -> list[float]:
    """Keystroke -> diagram in the DOM: the depth's last digit selected, then one key
    replaces it (80 -> 81 -> 80 ...), timed from that key."""
    from playwright.sync_api import sync_playwright

    last = int(re.search(r"depth\s*=\s*(\d+)", text).group(1)[-1])
    digits = [str((last + 1) % 10), str(last)]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        page.goto(f"{url}?file={name}")
        page.wait_for_selector("#diagram svg")
        page.evaluate(KEYS)
        page.locator(".cm-line", has_text=re.compile(r"depth\s*=")).first.click()
        for i in range(2 * runs):
            page.keyboard.press("End")
            page.keyboard.press("Shift+ArrowLeft")
            page.keyboard.press(digits[i % 2])  # one keystroke replaces the selected digit
            page.wait_for_function(f"window.__lat.length >= {i + 1}", timeout=10_000)
            time.sleep(0.05)
        lat = page.evaluate("window.__lat")
        browser.close()
    return [x / 1e3 for x in lat]


def in_process(path: Path, runs: int) -> tuple[float, float]:
    from strata.serve.render import Checked

    text = path.read_text()
    checks, views = [], []
    for i in range(runs):
        t = time.perf_counter()
        c = Checked.of(flip(text, i), str(path), path.parent)
        checks.append(time.perf_counter() - t)
        t = time.perf_counter()
        c.view(set(), after=False)
        views.append(time.perf_counter() - t)
    return statistics.median(checks), statistics.median(views)


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--browser", action="store_true", help="also keystroke -> diagram in Chromium")
    return ap


def main() -> None:
    args = parser().parse_args()
    print(f"{'spec':20} {'edit→payload median':>20} {'p90':>8} {'+ page debounce':>16} "
          f"{'check':>8} {'draw':>8}" + (f" {'keystroke→diagram':>18} {'p90':>8}" if args.browser else "")
          + f"   (n={2 * args.runs})")
    for spec, files in SPECS.items():
        with tempfile.TemporaryDirectory() as d:
            for f in files:
                shutil.copy(ROOT / "specs" / f, Path(d) / f)
            proc = subprocess.Popen([sys.executable, "-m", "strata", "serve", d, "--port", "0"],
                                    stdout=subprocess.PIPE, text=True, cwd=ROOT)
            try:
                url = re.search(r"http://\S+", proc.stdout.readline()).group(0)
                text = (Path(d) / spec).read_text()
                times = asyncio.run(over_websocket(url, spec, text, args.runs))
                keys = in_browser(url, spec, text, args.runs) if args.browser else None
            finally:
                proc.terminate()
                proc.wait(10)
            check, draw = in_process(Path(d) / spec, args.runs)
        med = statistics.median(times)
        p90 = sorted(times)[int(0.9 * len(times)) - 1]
        line = (f"{spec:20} {med * 1e3:17.0f} ms {p90 * 1e3:5.0f} ms {med * 1e3 + DEBOUNCE_MS:13.0f} ms "
                f"{check * 1e3:5.0f} ms {draw * 1e3:5.0f} ms")
        if keys:
            line += (f" {statistics.median(keys) * 1e3:15.0f} ms "
                     f"{sorted(keys)[int(0.9 * len(keys)) - 1] * 1e3:5.0f} ms")
        print(line)


if __name__ == "__main__":
    main()
