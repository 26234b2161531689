"""benchmarks/pass_pipeline.py, the command docs/benchmarks.md (Passes) shows,
run shrunk: one round, GPT-2 only.  It checks that the pipeline before and now
give the same graph, then prints the shares and the ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_pass_pipeline_benchmark_runs_shrunk():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pass_pipeline.py"), "--rounds", "1",
                          "--only", "gpt2"], capture_output=True, text=True, timeout=300, check=True).stdout
    assert "gpt2 + 2 passes, 174 IR nodes" in out
    assert re.search(r"before, of apply_passes' CPU: copy \d+%, reorder \d+%, lint \d+%", out)
    assert re.search(r"apply_passes .* now/before \d\.\d\d", out)
    assert re.search(r"strata\.check .* now/before \d\.\d\d", out)
