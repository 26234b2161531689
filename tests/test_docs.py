"""Every example in docs/language.md parses (and full models build); the
registry reference in it is current."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from strata.compiler import build_text
from strata.dsl import load_text
from strata.dsl.docgen import BEGIN, END, reference
from strata.errors import SpecError
from tests.test_cli_check import SPEC  # the same Llama-like spec check's own tests use

DOC = Path(__file__).resolve().parents[1] / "docs" / "language.md"
TEXT = DOC.read_text()
BLOCKS = [(m.group(1), m.group(2)) for m in re.finditer(r"```(arch|yaml)\n(.*?)```", TEXT, re.S)]


def load_snippet(lang: str, code: str):
    if lang == "yaml" and code.lstrip().startswith("- "):
        body = textwrap.indent(code, " " * 8)
        code = f"models:\n  m:\n    stacks:\n      s:\n        inputs: [t]\n        body:\n{body}"
    return load_text(code, f"doc.{lang}")


@pytest.mark.parametrize("lang,code", BLOCKS, ids=[f"{i}-{lang}" for i, (lang, _) in enumerate(BLOCKS)])
def test_example_parses(lang, code):
    spec = load_snippet(lang, code)
    if lang == "arch" and spec.models and not spec.imports:
        build_text(code, "doc.arch")  # whole models must also build


def test_gpt2_example_is_the_same_in_both_surfaces():
    arch, yaml = BLOCKS[0][1], BLOCKS[1][1]
    a, y = load_text(arch, "a.arch"), load_text(yaml, "a.yaml")
    assert a == y
    assert build_text(yaml, "a.yaml").graph["parameters"] == 124_439_808


def test_reference_is_current():
    generated = TEXT[TEXT.index(BEGIN) + len(BEGIN):TEXT.index(END)].strip()
    assert generated == reference().strip(), "run: python -m strata.dsl.docgen --write"


def test_the_error_a_pass_gives_is_what_check_prints():
    """The example under Errors: `strata check` of a spec whose passes are in the
    wrong order (passes on lines 20 and 21)."""
    shown = re.search(r"```\n(m\.arch:21:3: error: .*?)\n```", TEXT, re.S).group(1)
    spec = ("# four lines\n# so that the passes\n# are on lines\n# 20 and 21\n" + SPEC
            + "passes {\n  quantize(int8_static)\n  fuse_qkv\n}\n")
    with pytest.raises(SpecError) as e:
        build_text(spec, "m.arch", networkx=False, run_passes=True)
    assert str(e.value) == shown
