"""The pass registry: `register` adds a pass, never silently shadows a
built-in one, and `unregister` takes out only what it added."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from strata.compiler import build_text
from strata.components.component_base import Options
from strata.errors import UsageError
from strata.passes import BUILTIN, REGISTRY, Pass, apply_passes, register, unregister
from strata.passes.quantize import Quantize
from strata.plugins import PASSES

TINY = "model m { stack s(ids) { embedding(10, 32); mlp(64); lm_head(10) } }\n"


class _QuietOptions(Options):
    """Does nothing (a plugin's pass, for these tests)."""

    on: str | None = Field(None, description="module path glob or component kind")


class MyPass(Pass):
    """A plugin's pass that happens to be called `quantize`."""

    name = "quantize"
    options = _QuietOptions

    def run(self, graph, ctx=None):
        return self.done(graph.copy(), {})

    def report(self, record: dict) -> str:
        return "quantize: the plugin's"


def test_a_pass_cannot_take_a_built_in_name_by_accident():
    with pytest.raises(UsageError, match=r"pass 'quantize' is built in \(strata\.passes\.quantize\.Quantize\); "
                                         r"registering MyPass .* replace=True"):
        register(MyPass)
    assert REGISTRY["quantize"] is Quantize and PASSES["quantize"].options is Quantize.options


def test_replace_true_stands_in_for_the_built_in_until_unregistered():
    register(MyPass, replace=True)
    try:
        assert REGISTRY["quantize"] is MyPass and PASSES["quantize"].options is _QuietOptions
        assert list(REGISTRY) == list(BUILTIN)  # in the built-in's place: `strata passes` keeps its order
    finally:
        unregister(MyPass)
    assert REGISTRY["quantize"] is Quantize and PASSES["quantize"].options is Quantize.options
    h = apply_passes(build_text(TINY + "passes { quantize(int8_dynamic) }"))
    assert h.nodes["s.mlp.up"]["attrs"]["quant_scheme"] == "int8_dynamic"


def test_register_decorates_with_replace():
    shadow = register(replace=True)(MyPass)
    try:
        assert shadow is MyPass and REGISTRY["quantize"] is MyPass
    finally:
        unregister(MyPass)


def test_unregister_leaves_what_it_did_not_add():
    unregister(MyPass)  # never registered: the built-in of its name stays
    assert REGISTRY["quantize"] is Quantize and "quantize" in PASSES
    with pytest.raises(UsageError, match="pass 'quantize' is built in and cannot be unregistered"):
        unregister(Quantize)
    assert REGISTRY["quantize"] is Quantize


def test_the_refusal_docs_passes_md_shows_is_the_one_given():
    text = (Path(__file__).resolve().parents[2] / "docs" / "passes.md").read_text()
    with pytest.raises(UsageError) as e:
        register(MyPass)
    assert f"strata: error: {e.value}\n" in text
