"""Every example in a strata docstring runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import strata

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(m.name for m in pkgutil.walk_packages(strata.__path__, "strata."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # examples name specs as specs/gpt2.arch
    module = importlib.import_module(name)
    result = doctest.testmod(module, report=True, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (see stdout)"


def test_examples_either_run_or_are_prose():
    """A `>>>` line runs: an example that cannot (it needs a trained run or
    weights of one's own) is written as a literal block, not skipped or
    commented out, so every example that looks runnable is run."""
    found = []
    for path in sorted((ROOT / "strata").rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if ">>> #" in line or "doctest: +SKIP" in line:
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
