"""docs/passes.md: its spec examples parse, every pass it writes as text is
accepted against GPT-2, and every pass is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from strata.compiler import build_file
from strata.dsl import load_text
from strata.passes import REGISTRY
from strata.passes.text import parse_pass_texts

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "docs" / "passes.md").read_text()
PASS_FLAGS = re.findall(r"--pass '([^']+)'", TEXT)


@pytest.mark.parametrize("code", re.findall(r"```arch\n(.*?)```", TEXT, re.S))
def test_spec_examples_parse(code):
    spec = load_text(code, "doc.arch")
    parse_pass_texts([f"{u.name}" if not (u.args or u.kwargs) else
                      code.splitlines()[u.span.line - 1].strip() for u in spec.passes.items],
                     build_file(ROOT / "specs" / "gpt2.arch"))


@pytest.mark.parametrize("text", PASS_FLAGS)
def test_pass_flags_are_accepted(text):
    parse_pass_texts([text], build_file(ROOT / "specs" / "gpt2.arch"))


def test_every_pass_has_a_section():
    assert len(PASS_FLAGS) >= 5
    for name in REGISTRY:
        assert re.search(rf"^### .*`{name}", TEXT, re.M), name
