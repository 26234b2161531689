"""A large metrics.jsonl read by the workbench (`strata serve`'s Runs tab) and by
`run.metrics` (the Python API): streamed, so what is held does not grow with the
file.  Both once held every line as a dict, 12 to 16 times the file's size (a
53 MB file of tiny lines cost 850 MB in the workbench, which reads it again as
the run grows, and 631 MB for `run.metrics[-1]`).

`benchmarks/metrics_memory.py` measures the same readers' peak RSS on 50 MB."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

from strata.serve.files import Root
from strata.serve.runs import MAX_POINTS, run_view
from tests.hostile.harness import ROOT
from tests.optional import require

LINES = 60_000  # ~2 MB of tiny lines: held as dicts ~30 MB, streamed well under 2 MB


def _peak(fn):
    """(fn(), the most bytes Python held at once while it ran)."""
    tracemalloc.start()
    try:
        got = fn()
        return got, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _tiny_lines(folder, n=LINES):
    with open(folder / "metrics.jsonl", "w") as f:
        f.writelines(f'{{"step":{i},"train_loss":{1 + 1 / (i + 1)}}}\n' for i in range(n))
        f.write(f'{{"step":{n},"val_loss":1.25,"val_ppl":3.49}}\n')


def test_the_workbench_streams_a_large_metrics_file(tmp_path):
    _tiny_lines(tmp_path)
    view, peak = _peak(lambda: run_view(Root(tmp_path), "."))
    assert peak < 2_000_000, f"{peak:,} bytes held for a {(tmp_path / 'metrics.jsonl').stat().st_size:,}-byte file"
    train = view["train"]
    assert len(train) <= MAX_POINTS + 1 and train[0] == [0, 2.0] and train[-1] == [LINES - 1, 1 + 1 / LINES]
    assert view["val"] == [[LINES, 1.25]]


def test_run_metrics_holds_only_what_it_returns(tmp_path):
    require("torch")
    from strata.train.run_folder import RunFolder

    _tiny_lines(tmp_path)
    run = RunFolder(tmp_path, {})
    for use, want in [(lambda: run.metrics[-1], {"step": LINES, "val_loss": 1.25, "val_ppl": 3.49}),
                      (lambda: [r["step"] for r in run.metrics[-3:]], [LINES - 2, LINES - 1, LINES]),
                      (lambda: sum(1 for r in run.metrics if "train_loss" in r), LINES),
                      (lambda: len(run.metrics), LINES + 1)]:
        got, peak = _peak(use)
        assert got == want
        assert peak < 500_000, f"{peak:,} bytes"


def test_the_benchmark_runs_shrunk():
    """docs/benchmarks.md's command, on 1 MB."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "metrics_memory.py"), "--mb", "1"],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    assert "run.metrics[-1]" in out and "run_view" in out, out
