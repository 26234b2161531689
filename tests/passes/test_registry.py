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
from strata.compiler.ir_types import PASS_MARKS
from strata.passes.prune import Prune
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


class _Count(Pass):
    """A plugin's pass that reuses prune's mark kept_weights (the weights a mask keeps)."""

    name = "count_kept"
    options = _QuietOptions
    marks = {"kept_weights": "the plugin's count"}

    def run(self, graph, ctx=None):
        return self.done(graph.copy(), {})

    def report(self, record: dict) -> str:
        return "count_kept"


def test_unregistering_a_pass_keeps_the_marks_a_built_in_declares():
    register(_Count)
    unregister(_Count)
    assert PASS_MARKS["kept_weights"] == Prune.marks["kept_weights"]  # prune's, and its description
    h = apply_passes(build_text(TINY + 'passes { prune(0.5, on="mlp") }'))  # lints its marks
    assert h.nodes["s.mlp.up"]["attrs"]["kept_weights"] == 32 * 64 // 2


def test_a_mark_only_a_plugin_declared_goes_with_it():
    class Tagged(MyPass):
        name = "tag"
        marks = {"tagged": "a plugin's mark"}

    register(Tagged)
    assert "tagged" in PASS_MARKS
    unregister(Tagged)
    assert "tagged" not in PASS_MARKS and "kept_weights" in PASS_MARKS
