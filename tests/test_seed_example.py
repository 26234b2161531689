"""examples/seed/run.sh — the seed's pipeline (teacher, distilled student, int8,
eval, generate, diagram) — runs end to end as a user runs it, shortened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.optional import require

require("torch")
require("torchao")

ROOT = Path(__file__).resolve().parents[1]


def test_the_seed_pipeline_runs(tmp_path):
    env = {**os.environ, "STRATA": f"{sys.executable} -m strata", "OUT": str(tmp_path / "seed"),
           "STEPS": "20", "EVAL_BATCHES": "2"}
    r = subprocess.run(["bash", str(ROOT / "examples" / "seed" / "run.sh")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for step in range(1, 7):
        assert f"== {step}." in out
    assert "quantize (int8_dynamic)" in out and "perplexity" in out
    assert out.count("built-in task: reverse the words") >= 4  # compress --eval and three evals
    seed = tmp_path / "seed"
    report = json.loads((seed / "student-int8" / "report.json").read_text())
    assert report["source_run"]["objective"]["name"] == "seq2seq"
    assert set(report["eval"]) == {"original", "compressed", "bytes_on_disk", "latency"}
    student = json.loads((seed / "student" / "run.json").read_text())
    teacher = json.loads((seed / "teacher" / "run.json").read_text())
    # the student inherits the teacher file's train settings (tokenizer, optimizer, schedule)
    for key in ("tokenizer", "optimizer", "schedule", "batch"):
        assert student["settings"][key] == teacher["settings"][key], key
    assert "int8" in (seed / "student-int8.md").read_text()
