"""The "add an objective" recipe of docs/architecture.md, done: a new objective
is one class in one file (here, this test) and one `register` line, and then
trains, validates and evaluates like the built-in ones, with nothing else in
strata touched.  The objective, `echo`, predicts the token at the same position
(a causal model can: it sees it), so its loss falls fast on any text.

A second test guards the other half of the design: no objective's name appears
in the training code outside its own module and the registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.optional import require

torch = require("torch")

import numpy as np  # noqa: E402

import strata  # noqa: E402
from strata.errors import UsageError  # noqa: E402
from strata.train.objectives import OBJECTIVES, TextObjective, register  # noqa: E402
from strata.train.objectives.causal_lm import LMWindows  # noqa: E402
from tests.train.helpers import GPT, metrics, text, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class EchoWindows(LMWindows):
    """Random windows whose labels are the tokens themselves."""

    def _windows(self, data, offsets) -> dict:
        x = np.asarray(data[offsets[:, None] + np.arange(self.T)], dtype=np.int64)
        return {"tokens": x, "labels": x.copy()}


@dataclass(frozen=True)
class Echo(TextObjective):
    name = "echo"
    head = "lm_head"
    hint = "lm_head (echo)"

    @classmethod
    def detect(cls, g, heads):
        return next((cls(output=n) for n, (kind, _, _) in heads.items() if kind == "lm_head"), None)

    def train_sampler(self, data, tok, cfg, context):
        return EchoWindows(data.train, data.val, context, cfg["batch"], cfg["seed"], cfg["eval_steps"])

    def eval_windows(self, ids, tok, context, batch, max_batches):
        return EchoWindows(ids, ids, context, batch, 0, max_batches or 2)


@pytest.fixture
def echo():
    register(Echo)  # the one registry line (strata/train/objectives/__init__.py holds the built-in ones')
    yield Echo
    OBJECTIVES.pop(Echo.name)


def test_a_new_objective_trains_and_evaluates(echo, tmp_path):
    spec = write(tmp_path / "g.arch", GPT)
    run = strata.train(spec, objective="echo", data=str(write(tmp_path / "a.txt", text())), steps=30,
                       out=tmp_path / "r", progress=False)
    assert run.info["objective"]["name"] == "echo" and run.objective == Echo()
    vals = [r["val_loss"] for r in metrics(run.path) if "val_loss" in r]
    assert vals[-1] < 0.8 * vals[0]                           # it learned to echo
    again = strata.open_model(run.path)                        # from run.json, through the registry
    result = again.evaluate(max_batches=2)
    assert result["loss"] < 0.8 * vals[0] and "perplexity" in result
    with pytest.raises(UsageError, match="a model of the echo objective does not generate text"):
        again.generate("ab", tokens=3)
    with pytest.raises(UsageError, match="it can train: causal_lm, echo"):  # the heads choose among all
        strata.train(spec, objective="mlm", out=tmp_path / "x", progress=False)


def test_no_objective_name_outside_its_module():
    """Files of the training code (and the command line and the API above it) that
    name a built-in objective in a string: none outside strata/train/objectives/."""
    names = "|".join(OBJECTIVES)
    pattern = re.compile(rf"[\"'](?:{names})[\"']")
    files = [*(ROOT / "strata" / "train").rglob("*.py"), *(ROOT / "strata").glob("cli*.py"),
             ROOT / "strata" / "api.py"]
    naming = sorted(str(f.relative_to(ROOT)) for f in files
                    if "objectives" not in f.parts and pattern.search(f.read_text()))
    assert naming == []
