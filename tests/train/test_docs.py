"""The example specs of docs/training.md build and train with the objective their
section names."""

from __future__ import annotations

import re

from tests.optional import require

torch = require("torch")

import pytest

from strata.compiler import build_text
from strata.train.objectives import choose_objective
from tests.train.helpers import ROOT

DOC = (ROOT / "docs" / "training.md").read_text()
BLOCKS = re.findall(r"```arch\n(.*?)```", DOC, re.S)
WANT = ["causal_lm", "mlm", "classify", "seq2seq", "causal_lm", "causal_lm"]


def test_every_example_is_checked():
    assert len(BLOCKS) == len(WANT)


@pytest.mark.parametrize("i", range(len(WANT)))
def test_example_builds_with_its_objective(i):
    g = build_text(BLOCKS[i], str(ROOT / "specs" / f"doc_{i}.arch"))  # imports resolve from specs/
    assert choose_objective(g).name == WANT[i]
    if "distill" in BLOCKS[i]:
        assert [p["name"] for p in g.graph["passes"]] == ["distill"]


def test_the_python_example_runs_shrunk(tmp_path, monkeypatch, capsys):
    """The first ```python block (train, run.metrics, generate, evaluate, compile), 2 steps
    on 20,000 characters: run.metrics[-1] is the last record, read from the file."""
    from strata.train.data import builtin_text

    code = re.search(r"```python\n(.*?)```", DOC, re.S).group(1).replace("steps=500", "steps=2")
    code = code.replace("run.val_loss, run.best_val_loss, run.metrics[-1]",
                        "shown = run.val_loss, run.best_val_loss, run.metrics[-1]")
    assert "shown = " in code, "the example no longer reads run.metrics[-1]"
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "tiny_shakespeare.arch").write_text((ROOT / "specs" / "tiny_shakespeare.arch").read_text())
    (tmp_path / "tinyshakespeare.txt").write_text(builtin_text()[:20_000])
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/training.md", "exec"), scope)
    last = scope["shown"][2]
    assert last["step"] == 2 and last == list(scope["run"].metrics)[-1]
    assert scope["run"].metrics[-1] == last
