"""The YAML schema is as strict as `strata check`: an unknown key is an error on
both sides, and what the checker accepts the schema accepts."""

from __future__ import annotations

import copy

import pytest
import yaml

from strata.compiler import analyze_text
from strata.dsl.parser import parse
from strata.dsl.schema import spec_blocks, yaml_json_schema
from strata.dsl.yaml_loader import parse_yaml
from strata.dsl.yaml_writer import to_yaml
from tests.optional import require


def _docs() -> dict[str, dict]:
    docs = {"gpt2.yaml": yaml.safe_load(open("specs/gpt2.yaml"))}
    for name in ("t5_small", "gemma2_2b"):
        docs[name] = yaml.safe_load(to_yaml(parse(open(f"specs/{name}.arch").read(), f"{name}.arch")))
    return docs


def _mappings(node, path=()):
    if isinstance(node, dict):
        yield path
        for k, x in node.items():
            yield from _mappings(x, path + (k,))
    elif isinstance(node, list):
        for i, x in enumerate(node):
            yield from _mappings(x, path + (i,))


def _at(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def _verdicts(doc: dict, mutate) -> list[tuple]:
    """(where, what the checker says, what the schema says) for each mutation of doc."""
    jsonschema = require("jsonschema")
    schema = yaml_json_schema(spec_blocks(parse_yaml(yaml.safe_dump(doc, sort_keys=False), "x.yaml")))
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for path in _mappings(doc):
        for mutated, what in mutate(doc, path):
            text = yaml.safe_dump(mutated, sort_keys=False)
            checker = [d.message for d in analyze_text(text, "m.yaml").diagnostics]
            out.append((path, what, checker, [e.message for e in validator.iter_errors(mutated)][:1]))
    return out


def _add_key(doc, path):
    for key in ("kv_head", "atention"):
        if key not in _at(doc, path):
            d = copy.deepcopy(doc)
            _at(d, path)[key] = 2
            yield d, f"+{key}"


def _typo_first_key(doc, path):
    """`attention:` -> `atention:` as a statement's first key (its component or block)."""
    m = _at(doc, path)
    first = next(iter(m))
    if path and isinstance(path[-1], int) and "inputs" not in path and len(first) > 3:
        d = copy.deepcopy(doc)
        parent = _at(d, path[:-1])
        typo = first[0] + first[2:]
        parent[path[-1]] = {(typo if k == first else k): v for k, v in m.items()}
        yield d, f"{first}->{typo}"


@pytest.mark.parametrize("name", ["gpt2.yaml", "t5_small", "gemma2_2b"])
def test_the_shipped_specs_pass_both(name):
    (_, _, checker, schema), = _verdicts(_docs()[name], lambda d, p: [(d, "as is")] if not p else [])
    assert checker == [] and schema == []


@pytest.mark.parametrize("mutate", [_add_key, _typo_first_key])
@pytest.mark.parametrize("name", ["gpt2.yaml", "t5_small"])
def test_schema_and_checker_agree_on_every_mutation(name, mutate):
    verdicts = _verdicts(_docs()[name], mutate)
    assert verdicts
    disagree = [(p, w, c, s) for p, w, c, s in verdicts if bool(c) != bool(s)]
    assert not disagree, disagree[:5]
    assert any(c for _, _, c, _ in verdicts)  # the mutations do reach the checker


def test_unknown_option_and_misspelled_component_are_rejected():
    jsonschema = require("jsonschema")
    v = jsonschema.Draft202012Validator(yaml_json_schema())
    use = {"models": {"m": {"stacks": {"s": {"inputs": ["tokens"], "body": None}}}}}
    for body, ok in [([{"attention": 12, "kv_heads": 4}], True), ([{"attention": 12, "kv_head": 4}], False),
                     ([{"mlp": 64, "actt": "gelu"}], False), ([{"layer": 3, "window": 8}], True)]:
        use["models"]["m"]["stacks"]["s"]["body"] = body
        assert (list(v.iter_errors(use)) == []) == ok, body
    # with the file's blocks known, a misspelled component is no longer a block use
    v = jsonschema.Draft202012Validator(yaml_json_schema({"layer": ["window"]}))
    for body, ok in [([{"atention": 12}], False), ([{"layer": 3, "window": 8}], True),
                     ([{"layer": 3, "windw": 8}], False)]:
        use["models"]["m"]["stacks"]["s"]["body"] = body
        assert (list(v.iter_errors(use)) == []) == ok, body
