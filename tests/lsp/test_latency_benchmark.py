"""benchmarks/lsp_latency.py, the command docs/benchmarks.md (Language server)
shows for a student distilling from a GPT-2 teacher, run shrunk: one run, that
spec only.  The real server answers it (no error diagnostics: the benchmark
asserts that), and both tables are printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.optional import require

ROOT = Path(__file__).resolve().parents[2]


def test_the_lsp_latency_benchmark_runs_shrunk_with_a_distilling_student():
    require("pygls")
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "python benchmarks/lsp_latency.py --runs 15 --distill --only student" in doc
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lsp_latency.py"), "--runs", "1",
                          "--distill", "--only", "student"], capture_output=True, text=True, timeout=300,
                         check=True, env=env).stdout
    assert re.search(r"^student_distill\.arch +\d+ ms +\d+ ms +\d+ ms", out, re.M), out
    assert re.search(r"^student_distill\.arch +\d+ ms +\d+ ms +\d+ ms$", out, re.M), out  # the CPU table
    assert "gpt2.arch" not in out
