"""strata compress on a trained run with a calibrated method calibrated on the
run's own data (--calibration RUN), --finetune from that data and tokenizer, and
--eval: one folder, every figure in the report."""

from __future__ import annotations

import json
from pathlib import Path

from tests.optional import require

torch = require("torch")

from strata.cli import main  # noqa: E402
from tests.matrix_specs import PLAIN  # noqa: E402


def test_calibrated_finetuned_and_evaluated_from_a_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN)
    assert main(["train", "p.arch", "--out", "r", "--steps", "2", "-q"]) == 0
    capsys.readouterr()
    code = main(["compress", "r", "--calibration", "r", "--pass", "prune(0.5, method=sparsegpt)",
                 "--finetune", "3", "--eval", "--max-batches", "2", "-o", "small"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "sparsegpt" in out and "finetune 3 steps" in out and "perplexity" in out
    report = json.loads(Path("small/report.json").read_text())
    f = report["finetune"]  # the run's data (the built-in corpus) read with its tokenizer
    assert f["steps"] == 3 and f["held"]["masked_linears"] > 0
    assert {"loss", "perplexity", "kl_to_original"} <= f["after"].keys()
    ev = report["eval"]
    assert ev["original"]["perplexity"] > 0 and ev["compressed"]["perplexity"] > 0
    assert report["passes"][0]["density"]
