"""Every shipped spec reproduces its published parameter count exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from strata.compiler import build_file
from strata.compiler.ir import lint

SPECS = Path(__file__).resolve().parents[2] / "specs"

EXPECTED = {
    "gpt2.arch": 124_439_808,
    "gpt2.yaml": 124_439_808,
    "bert_base.arch": 109_482_240,
    "transformer_base.arch": 63_084_544,
    "llama2_7b.arch": 6_738_415_616,
    "llama2_70b.arch": 68_976_648_192,
    "mistral_7b.arch": 7_241_732_096,
    "tiny_shakespeare.arch": 809_856,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_count(name):
    g = build_file(SPECS / name)
    lint(g)
    assert g.graph["parameters"] == EXPECTED[name]


def test_every_shipped_spec_builds():
    for path in sorted(SPECS.glob("*.arch")) + sorted(SPECS.glob("*.yaml")):
        lint(build_file(path))


def test_tiny_shakespeare_train_section():
    t = build_file(SPECS / "tiny_shakespeare.arch").graph["train"]
    assert (t["batch"], t["context"], t["steps"], t["grad_clip"], t["dropout"]) == (12, 64, 2000, 1.0, 0.0)
    assert t["optimizer"] == {"type": "adamw", "lr": 1e-3, "betas": (0.9, 0.99),
                              "weight_decay": 0.1, "eps": 1e-8}
    assert t["schedule"] == {"type": "cosine", "warmup": 100, "min_lr": 1e-4}


def test_gqa_and_window_reach_the_ir():
    g = build_file(SPECS / "mistral_7b.arch")
    core = g.nodes["decoder.layers.0.attn.core"]["attrs"]
    assert (core["heads"], core["kv_heads"], core["window"], core["causal"]) == (32, 8, 4096, True)
    assert core["rope"] == {"base": 10000.0, "dims": 128}
    assert g.nodes["decoder.layers.0.attn.k"]["params"]["weight"] == (1024, 4096)


def test_encoder_decoder_wiring():
    g = build_file(SPECS / "transformer_base.arch")
    k = "decoder.layers.0.cross_attn.k"
    (src,) = [u for u, _ in g.in_edges(k)]
    assert src == "encoder.norm"
    assert g.nodes["decoder.embed"]["tied"] == {"weight": "encoder.embed.weight"}
    assert g.nodes["decoder.lm_head"]["tied"] == {"weight": "encoder.embed.weight"}
