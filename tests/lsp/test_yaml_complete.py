"""strata.lsp.yaml_complete: the place of the cursor in a half-written YAML
spec, and the keys and words the strict schema allows there."""

from __future__ import annotations

import pytest

from strata.dsl.schema import yaml_json_schema
from strata.lsp.yaml_complete import complete

BODY = "models:\n  m:\n    stacks:\n      s:\n        body:\n"

CASES = [  # text (the cursor at its end), some labels offered, labels not offered
    ("", {"models", "blocks", "imports", "passes", "train"}, set()),
    ("models:\n  gpt2:\n    vars:\n      d: 1\n    ", {"stacks", "blocks", "extends"}, {"vars"}),
    (BODY + "          - {mlp: 64, act: ", {"gelu", "swiglu", "gelu_tanh"}, {"hidden"}),
    (BODY + "          - {embedding: [10, d]}\n          - {mlp: 64, act: ", {"gelu"}, set()),  # after an item
    (BODY + "          - {attention: heads, ", {"kv_heads", "causal", "window", "as"}, {"attention", "act"}),
    (BODY + "          - attention: heads\n            ", {"kv_heads", "causal"}, {"attention", "act"}),
    (BODY + "          - ", {"layernorm", "attention", "residual", "repeat"}, {"causal"}),
    (BODY + "          - residual: [layernorm, {mlp: 4 * d, act: ", {"geglu"}, set()),
    (BODY + "          - {position: ", {"learned", "rotary", "alibi"}, set()),
    (BODY + "          - {repeat: depth, ", {"body", "index", "as"}, {"repeat"}),
    ("passes:\n  - ", {"quantize", "fuse_qkv", "prune"}, set()),
    ("passes:\n  - {quantize: ", {"int8_dynamic", "int4_weight"}, set()),
    # what the checker refuses beside the scheme written is not offered (int8 takes no groups)
    ("passes:\n  - {quantize: int8_dynamic, ", {"on", "smooth", "method"}, {"quantize", "scheme", "group_size", "strict"}),
    ("passes:\n  - {quantize: int4_weight, on: mlp, ", {"group_size", "strict"}, {"quantize", "on", "bits"}),
    ("passes:\n  - quantize: fp8  # per tensor\n    on: mlp\n    ", {"qat"}, {"group_size", "on"}),
    ("passes:\n  - {quantize: null, scheme: int8_weight, ", {"on"}, {"group_size", "scheme"}),
    ("train:\n  steps: 3\n  ", {"batch", "optimizer"}, {"steps"}),
]


@pytest.mark.parametrize("text,want,not_want", CASES, ids=[c[0].split("\n")[-1].strip() or "top" for c in CASES])
def test_completion_at_the_end(text, want, not_want):
    lines = text.split("\n")
    got = {i.label for i in complete(text, len(lines) - 1, len(lines[-1]))}
    assert want <= got, sorted(got)
    assert not (not_want & got), sorted(not_want & got)


def test_every_key_offered_is_one_the_schema_allows():
    """Keys come from the schema (never a copy): each offered key of a model
    is a property of the schema's Model."""
    text = "models:\n  m:\n    "
    got = {i.label for i in complete(text, 2, 4)}
    assert got == set(yaml_json_schema()["$defs"]["Model"]["properties"])


def test_option_details_carry_types_and_defaults():
    text = BODY + "          - {mlp: 64, "
    act, = [i for i in complete(text, 5, len(text.split("\n")[5])) if i.label == "act"]
    assert "gelu_tanh" in act.detail and "default 'gelu'" in act.detail and act.insert == "act: "
