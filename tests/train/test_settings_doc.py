"""docs/training.md's settings table is the truth: every default it states is
the one `strata train` uses (a spec with no train section)."""

from __future__ import annotations

import re
from pathlib import Path

from strata.compiler import build_text
from strata.compiler.sections import check_train
from strata.dsl.parser import parse
from strata.dsl.registry import TrainConfig
from strata.errors import Collector

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def _rows() -> dict[str, str]:
    text = DOC.read_text()
    table = text[text.index("| setting | default |"):].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for name in re.findall(r"`(\w+)`", cells[0]):
            rows[name] = cells[1]
    return rows


def test_every_setting_is_in_the_table():
    assert set(_rows()) == set(TrainConfig.model_fields)


def test_call_defaults_are_the_code_defaults():
    """optimizer / schedule defaults as written in the table, read as a spec would
    read them, equal the defaults a spec without a train section gets."""
    rows, default = _rows(), TrainConfig().model_dump()
    for key in ("optimizer", "schedule"):
        call = re.search(r"`([^`]+)`", rows[key]).group(1)
        spec = parse(f"train {{ {key} = {call} }}\n", "<t>")
        g = build_text("model m { stack s(x) { embedding(4, 2); linear(2) } }")
        errors = Collector()
        check_train(spec.train, g, errors)
        assert not errors, errors.items
        assert g.graph["train"][key] == default[key], key


def test_plain_defaults_are_the_code_defaults():
    rows, default = _rows(), TrainConfig().model_dump()
    for key, cell in rows.items():
        if key in ("eval_every", "eval_steps"):
            continue  # one row for both: checked below
        first = cell.split(";")[0].split(",")[0].strip("` ")
        if re.fullmatch(r"[\d.e-]+", first):
            assert float(first) == float(default[key]), key
        elif re.fullmatch(r"[a-z0-9]+", first) and key in ("tokenizer", "dtype"):
            assert first == default[key], key
        elif first == "none":
            assert default[key] is None, key
    assert rows["eval_every"].startswith(f"{default['eval_every']}, {default['eval_steps']}")
