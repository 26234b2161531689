"""`strata lsp` latency from a warm server: a change to its diagnostics, hover on a
component, completion of a component's options.  The real server runs as a
subprocess and is driven over stdio by pygls's client, as an editor would.

Goals (issue 18): hover and completion under 50 ms, diagnostics under 300 ms
(the server waits DEBOUNCE_S = 0.15 s after a change before checking, so a
burst of keystrokes is one check; the figure includes that wait).

Two kinds of change: one outside the layers (a blank line at the end: the
server's check takes the repeated layers from its last check), and one
inside the repeated block (the first `mlp(` gets `2 + ` before its hidden
size and loses it again: every layer's MLP changes, the rest is taken again).

`--passes`: each spec with a passes section (a fusion and a quantize), which
the check runs on the graph to report what they refuse.

`--distill`: one more spec, student_distill.arch: specs/tiny_shakespeare.arch
learning from teacher.arch (a copy of specs/gpt2.arch, 124 M parameters) and
quantizing the attn.qkv that fuse_qkv makes, so the check's selector test runs
the passes before it, distill among them, on every change.

    python benchmarks/lsp_latency.py [--runs 15] [--only 2000] [--passes] [--distill]

The server is `python -m strata lsp`, which imports strata from the working
folder first: to time another checkout (PYTHONPATH=that checkout), run this
from a folder outside both.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types as T
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parents[1]
PASSES = 'passes {\n  fuse_qkv\n  quantize(int8_dynamic, on="mlp")\n}\n'
# the selector names what fuse_qkv makes: the check runs distill and fuse_qkv to find it
DISTILL = 'passes {\n  distill("teacher.arch")\n  fuse_qkv\n  quantize(int8_dynamic, on="decoder.h.*.attn.qkv")\n}\n'


def _where(text: str, word: str, shift: int) -> T.Position:
    """The position `shift` characters into the first `word` of `text`."""
    for i, line in enumerate(text.split("\n")):
        col = line.find(word)
        if col >= 0:
            return T.Position(i, col + shift)
    raise SystemExit(f"no {word!r} in the spec")


async def measure(path: Path, runs: int) -> dict[str, float]:
    client = LanguageClient("bench", "1")
    arrived: asyncio.Queue = asyncio.Queue()

    @client.feature(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def _diagnostics(params: T.PublishDiagnosticsParams) -> None:
        arrived.put_nowait((time.perf_counter(), params.diagnostics))

    await client.start_io(sys.executable, "-m", "strata", "lsp")
    await client.initialize_async(T.InitializeParams(capabilities=T.ClientCapabilities(),
                                                     root_uri=path.parent.as_uri()))
    client.initialized(T.InitializedParams())
    text = path.read_text()
    uri = path.as_uri()
    start = time.perf_counter()
    client.text_document_did_open(T.DidOpenTextDocumentParams(T.TextDocumentItem(uri, "strata", 1, text)))
    t, diags = await arrived.get()
    assert not [d for d in diags if d.severity == T.DiagnosticSeverity.Error], diags
    out = {"open": t - start}
    doc = T.TextDocumentIdentifier(uri=uri)
    hover_at, complete_at = _where(text, "attention(", 3), _where(text, "mlp(", 4)
    changes, inside, hovers, completions = [], [], [], []
    version = 1
    for i in range(runs):
        for edited, times in ((text + "\n" * (i % 2), changes),  # a change that keeps the layers as they are
                              (text.replace("mlp(", "mlp(2 + ", 1) if i % 2 == 0 else text, inside)):
            version += 1
            start = time.perf_counter()
            client.text_document_did_change(T.DidChangeTextDocumentParams(
                T.VersionedTextDocumentIdentifier(uri=uri, version=version),
                [T.TextDocumentContentChangeWholeDocument(text=edited)]))
            t, diags = await arrived.get()
            assert not [d for d in diags if d.severity == T.DiagnosticSeverity.Error], diags
            times.append(t - start)
        start = time.perf_counter()
        hover = await client.text_document_hover_async(T.HoverParams(doc, hover_at))
        hovers.append(time.perf_counter() - start)
        assert hover and "parameters" in hover.contents.value, hover
        start = time.perf_counter()
        items = await client.text_document_completion_async(T.CompletionParams(doc, complete_at))
        completions.append(time.perf_counter() - start)
        assert any(it.label == "act=" for it in items.items)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return {**out, "change→diagnostics": statistics.median(changes), "inside": statistics.median(inside),
            "hover": statistics.median(hovers),
            "completion": statistics.median(completions)}


def check_cpu(path: Path, runs: int) -> dict[str, float]:
    """The check alone, in this process: the CPU seconds (time.process_time, so
    less bent by other processes on a busy machine than wall time) of what the
    server does per change, without and with its per-file cache of layers."""
    import gc

    from strata.compiler.repeat_copy import FoldCache
    from strata.lsp.features import Document

    text, name = path.read_text(), str(path)
    out = {}
    for kind in ("no cache", "outside", "in a layer"):
        cache = None if kind == "no cache" else FoldCache()
        Document.of(text, name, cache=cache).warm()
        times = []
        for i in range(runs):
            edited = text.replace("mlp(", "mlp(2 + ", 1) if kind == "in a layer" and i % 2 == 0 \
                else text + "\n" * (i % 2)
            start = time.process_time()
            Document.of(edited, name, cache=cache).warm()
            gc.freeze()  # as the server does after each check
            times.append(time.process_time() - start)
        out[kind] = statistics.median(times)
    return out


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--only", help="measure only the specs whose file name contains this")
    ap.add_argument("--passes", action="store_true", help="append a passes section to each spec")
    ap.add_argument("--distill", action="store_true", help="add a student distilling from a GPT-2 teacher")
    return ap


def main() -> None:
    args = parser().parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        deep = Path(tmp) / "gpt2_2000_layers.arch"
        deep.write_text((ROOT / "specs/gpt2.arch").read_text().replace("depth = 12", "depth = 2000"))
        specs = [ROOT / "specs/gpt2.arch", ROOT / "specs/llama2_70b.arch", deep]
        if args.passes:  # copies beside llama2_70b's import, with passes
            (Path(tmp) / "llama2_7b.arch").write_text((ROOT / "specs/llama2_7b.arch").read_text())
            for i, spec in enumerate(specs):
                specs[i] = Path(tmp) / f"{spec.stem}_passes.arch"
                specs[i].write_text(spec.read_text() + PASSES)
        if args.distill:
            (Path(tmp) / "teacher.arch").write_text((ROOT / "specs/gpt2.arch").read_text())
            specs.append(Path(tmp) / "student_distill.arch")
            tiny = (ROOT / "specs/tiny_shakespeare.arch").read_text()
            specs[-1].write_text(tiny.replace("passes {\n  fuse_qkv\n}\n", DISTILL))
            assert "distill(" in specs[-1].read_text()
        print(f"{'spec':24} {'open':>8}   change→diagnostics: {'outside':>8} {'in a layer':>11}"
              f" {'hover':>9} {'completion':>11}   (medians of {args.runs})")
        for spec in specs:
            if args.only and args.only not in spec.name:
                continue
            r = asyncio.run(measure(spec, args.runs))
            print(f"{spec.name:24} {r['open'] * 1000:5.0f} ms {'':21}{r['change→diagnostics'] * 1000:5.0f} ms "
                  f"{r['inside'] * 1000:8.0f} ms {r['hover'] * 1000:6.1f} ms {r['completion'] * 1000:8.1f} ms")
        print(f"\nthe check alone, CPU time (medians of {args.runs}):   no cache    outside  in a layer")
        for spec in specs:
            if args.only and args.only not in spec.name:
                continue
            c = check_cpu(spec, args.runs)
            print(f"{spec.name:46} {c['no cache'] * 1000:6.0f} ms {c['outside'] * 1000:7.0f} ms "
                  f"{c['in a layer'] * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
