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
