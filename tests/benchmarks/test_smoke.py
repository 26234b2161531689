"""Each benchmark script runs once, shrunk (its own small settings, or --smoke:
the same code on a toy model), exits 0 and prints its table's headings.  In
this process (torch imported once), except the scripts that must not share it
(diagram.py checks torch is never imported) or that start servers and
subprocesses of their own.  The figures printed mean nothing: docs/benchmarks.md
holds the real ones."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from tests.benchmarks.commands import BENCH, ROOT, load
from tests.optional import require

SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
ONE = ["--threads", "1"]
# (script, arguments, what its output must contain, the package it needs); {tmp}: a temporary folder
RUNS = [
    ("construct", ["--smoke", "--reps", "1", *ONE], ["construction", "ratio strata / hf"], "transformers"),
    ("decode_layout", ["--smoke", "--rounds", "1", "--new", "2", *ONE],
     ["column-major", "row-major", "ratio column-major / row-major"], "transformers"),
    ("prefill", ["--smoke", "--rounds", "1", "--prompt", "4", *ONE],
     ["every position", "last only", "ratio last only / every position"], "transformers"),
    ("gpt2_cpu", ["--smoke", "--reps", "1", "--inner", "1", "--seq", "8", *ONE],
     ["forward+backward", "ratio strata / hf"], "transformers"),
    ("prune_speed", ["--smoke", "--reps", "1", "--seq", "8", "--heads"], ["speed-up dense / pruned"], None),
    ("quantize_gpt2", ["--smoke", "--reps", "1", "--seq", "16", "--decode", "2", "--head", *ONE],
     ["logits SQNR", "int8 torchao", "kernels:"], "torchao"),
    ("export_onnx", ["--smoke", "--no-compile", "--rounds", "1", "--new", "2", *ONE],
     ["forward 1x128", "cached decode", "onnxruntime"], "onnxruntime"),
    ("t5_generate", ["--smoke", "--reps", "1", "--src", "8", "--new", "2", *ONE],
     ["ratio cached / uncached", "ratio strata cached / hf"], "transformers"),
    ("generate", ["--smoke", "--no-compile", "--rounds", "1", "--new", "2", "--train-steps", "2",
                  "--spec-tokens", "8", *ONE],
     ["Speculative decoding", "draft acceptance", "GPT-2 small greedy", "ratio strata static / hf eager"],
     "transformers"),
    ("deep", ["--depths", "2", "4"], ["build IR", "per layer"], None),
    ("pass_copy", ["--smoke", "--rounds", "1"], ["deepcopy CPU", "ir_copy wall"], None),
    ("train_step", ["--reps", "1", "--inner", "1", "--batch", "2", *ONE], ["ratio strata / handwritten"], None),
    ("train_loop", ["--data", "{tmp}/text.txt", "--steps", "7", "--rounds", "1", *ONE],
     ["whole training loop", "ratio strata / handwritten"], None),
    ("train_quality", ["--smoke", "--data", "{tmp}/text.txt", "--steps", "3", "--reference", *ONE],
     ["val loss", "handwritten", "target <= 1.88"], None),
    ("metrics_memory", ["--mb", "0.05"], ["metrics.jsonl:", "peak RSS growth"], None),
    ("compress_storage", ["--spec", "{tmp}/tiny.arch"], ["layers file/fp32", "quantize(int4_weight"], None),
    ("compress_quality", ["--smoke", "--steps", "3", "--finetune", "2", *ONE],
     ["val ppl", "int4_weight g32 + 2 QAT steps"], "shakespeare"),
    ("compress_methods", ["--smoke", "--corpus", "stdlib", "--train-seconds", "1", "--calibration", "4",
                          "--finetune", "2", "--cache", "{tmp}/cache", "--rows", "g32 rtn,g32 awq,static smooth 0.5"],
     ["| method |", "| quantize |", "calibration cost", "--finetune 2"], "tokenizers"),
    ("gpu", ["--batch", "2", "--seq", "64", "--steps", "2"], ["tokens/s", "strata train (whole loop)"], "cuda"),
    # subprocesses
    ("diagram", ["--repeat", "1"], ["IR nodes", "mermaid", "dot -unf"], None),
    ("diagram --layers", ["--layers", "8", "--repeat", "1"], ["step (CPU s)", "summary"], None),
    ("diagram_collisions", ["--time", "--repeat", "1"], ["Llama 2 70B, op level", "browser"], "browser"),
    ("frontend", ["--smoke", "--runs", "1"], ["median wall", "strata check specs/gpt2.arch"], None),
    ("lsp_latency", ["--runs", "1", "--only", "gpt2.arch"], ["change→diagnostics", "the check alone"], "pygls"),
    ("serve_latency", ["--runs", "1"], ["edit→payload", "llama2_70b.arch"], "websockets"),
]
SUBPROCESS = {"diagram", "diagram_collisions", "frontend", "lsp_latency", "serve_latency"}


def needs(what: str | None) -> None:
    """Skip, saying why, when this machine lacks what a script needs."""
    if what == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    elif what == "shakespeare" and not SHAKESPEARE.is_file():
        pytest.skip(f"no {SHAKESPEARE}")
    elif what == "browser":
        from tests.render.geometry import unavailable

        if why := unavailable():
            pytest.skip(why)
    elif what not in (None, "cuda", "shakespeare", "browser"):
        require(what)


def browser() -> bool:
    """Playwright and the system's Chromium (serve_latency --browser) are here."""
    try:
        import playwright.sync_api  # noqa: F401
    except ModuleNotFoundError:
        return False
    return Path("/usr/bin/chromium").is_file()


def inputs(tmp: Path) -> None:
    """A short text to train on, and a toy spec to compress."""
    from strata.train.data import builtin_text

    (tmp / "text.txt").write_text(builtin_text()[:20_000], encoding="utf-8")
    spec = (ROOT / "specs" / "tiny_shakespeare.arch").read_text(encoding="utf-8")
    (tmp / "tiny.arch").write_text(spec.replace("d     = 128", "d     = 64").replace("depth = 4", "depth = 1"))


@pytest.fixture
def threads():
    """The scripts set torch's thread count: put it back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("label,args,shown,what", RUNS, ids=[r[0] for r in RUNS])
def test_script_runs_shrunk(label, args, shown, what, monkeypatch, capsys, threads, tmp_path):
    needs(what)
    name = label.split()[0]
    inputs(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if name == "serve_latency" and browser():  # the documented --browser run, where Chromium is
        args, shown = [*args, "--browser"], [*shown, "keystroke→diagram"]
    if name in SUBPROCESS:
        r = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"benchmarks/{name}.py {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
        out = r.stdout
    else:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the folders a script leaves (mkdtemp)
        monkeypatch.setattr(sys, "argv", [f"benchmarks/{name}.py", *args])
        assert load(name).main() in (None, 0)
        out = capsys.readouterr().out
    for heading in shown:
        assert heading in out, f"benchmarks/{name}.py {' '.join(args)}: no {heading!r} in\n{out}"


def test_every_script_runs_here():
    """A new script gets a run above."""
    scripts = {p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_")} - {"handwritten_gpt"}
    scripts -= {"pass_pipeline"}  # run shrunk, with its figures checked, by tests/passes/test_pipeline_benchmark.py
    assert scripts == {r[0].split()[0] for r in RUNS}
