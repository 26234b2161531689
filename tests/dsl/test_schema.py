"""The JSON Schema of the YAML surface, and `strata schema`."""

from __future__ import annotations

import json

import yaml

from strata.cli import main
from strata.dsl.parser import parse
from strata.dsl.registry import COMPONENTS, PASSES, TrainConfig
from strata.dsl.schema import DRAFT, yaml_json_schema
from strata.dsl.yaml_writer import to_yaml
from tests.dsl.test_formatter import CANONICAL
from tests.dsl.test_yaml_loader import GPT
from tests.optional import require


def test_schema_lists_components_options_and_passes():
    s = yaml_json_schema()
    assert s["$schema"] == DRAFT and s["type"] == "object"
    defs = s["$defs"]
    for name, comp in COMPONENTS.items():
        props = defs[f"use_{name}"]["properties"]
        assert name in props and "as" in props and set(comp.options.model_fields) <= set(props)
        assert defs[f"use_{name}"]["required"] == [name]
    assert {f"pass_{p}" for p in PASSES} <= set(defs)
    assert set(TrainConfig.model_fields) == set(defs["Train"]["properties"])
    act = defs["use_mlp"]["properties"]["act"]
    assert act["default"] == "gelu" and "swiglu" in act["anyOf"][0]["enum"]
    assert "default" not in defs["use_attention"]["properties"]["heads"]


def test_schema_validates_written_yaml():
    jsonschema = require("jsonschema")
    s = yaml_json_schema()
    jsonschema.Draft202012Validator.check_schema(s)
    v = jsonschema.Draft202012Validator(s)
    good = yaml.safe_load(to_yaml(parse(CANONICAL.replace(", hidden_dropout_prob_for_a_long_line=true", ""))))
    assert list(v.iter_errors(good)) == []
    # an option mlp does not have: no longer passes as a use of a block named mlp
    assert list(v.iter_errors(yaml.safe_load(to_yaml(parse(CANONICAL)))))
    assert list(v.iter_errors(yaml.safe_load(GPT.replace("on:", "'on':").replace(
        "  betas: [0.9, 0.99]\n", "")))) == []
    bad = {"models": {"m": {"stacks": {"s": {"inputs": ["t"], "body": [{"repeat": 2, "bdy": "x"}]}}}}}
    assert list(v.iter_errors(bad))
    assert list(v.iter_errors({"train": {"batchh": 3}}))


def test_cli_schema(tmp_path, capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["$schema"] == DRAFT
    out = tmp_path / "strata.schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == printed
