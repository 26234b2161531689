"""Every shipped spec reproduces its published parameter count exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.optional import require

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
    # the families of issue 9, at the sizes their model cards publish
    "pythia_160m.arch": 162_322_944,
    "qwen2_0_5b.arch": 494_032_768,
    "opt_125m.arch": 125_239_296,
    "mixtral_8x7b.arch": 46_702_792_704,
    "phi_2.arch": 2_779_683_840,
    "falcon_7b.arch": 6_921_720_704,
    "gemma2_2b.arch": 2_614_341_888,
    "t5_small.arch": 60_506_624,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_count(name):
    g = build_file(SPECS / name)
    lint(g)
    assert g.graph["parameters"] == EXPECTED[name]


def test_every_shipped_spec_builds():
    for path in sorted(SPECS.glob("*.arch")) + sorted(SPECS.glob("*.yaml")):
        lint(build_file(path))


SHIPPED = sorted(p.name for p in SPECS.iterdir() if p.suffix in (".arch", ".yaml"))
DEMOS = {"transformer_seed.arch"}  # a made-up student, no published count


def test_every_published_spec_has_its_count_checked():
    assert set(SHIPPED) - DEMOS == set(EXPECTED)


@pytest.mark.parametrize("name", SHIPPED)
def test_yaml_converts_back_to_the_same_ast(name):
    """`strata convert` both ways loses nothing for every shipped spec."""
    from strata.dsl import load_file
    from strata.dsl.formatter import format_spec
    from strata.dsl.parser import parse
    from strata.dsl.yaml_loader import parse_yaml
    from strata.dsl.yaml_writer import to_yaml

    spec = load_file(SPECS / name)
    yml = to_yaml(spec)
    assert parse_yaml(yml, "spec.yaml") == spec
    assert parse(format_spec(spec), "spec.arch") == spec


def test_mixtral_active_parameters():
    """12.9B of Mixtral's 46.7B parameters run per token: 2 of 8 experts."""
    from strata.compiler.cost import analyze

    a = analyze(build_file(SPECS / "mixtral_8x7b.arch"))
    assert a["active_parameters"] == 46_702_792_704 - 32 * 6 * 3 * 4096 * 14336 == 12_879_925_248


@pytest.mark.parametrize("name", ["pythia_160m.arch", "phi_2.arch", "gemma2_2b.arch", "t5_small.arch",
                                  "mixtral_8x7b.arch", "falcon_7b.arch", "opt_125m.arch", "qwen2_0_5b.arch"])
def test_compiled_on_meta_has_the_published_count(name):
    """The PyTorch module strata compiles has the same count, built on the meta device."""
    require("torch")
    import strata.api as api

    model = api.compile(SPECS / name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == EXPECTED[name]


def test_tiny_shakespeare_train_section():
    t = build_file(SPECS / "tiny_shakespeare.arch").graph["train"]
    assert (t["batch"], t["context"], t["steps"], t["grad_clip"], t["dropout"]) == (12, 64, 2000, 1.0, 0.0)
    assert t["optimizer"] == {"type": "adamw", "lr": 3e-3, "betas": (0.9, 0.99),
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


@pytest.mark.parametrize("name", [n for n in SHIPPED if n.endswith(".arch")])
def test_shipped_spec_is_in_canonical_form(name, capsys):
    from strata.cli import main

    assert main(["fmt", "--check", str(SPECS / name)]) == 0
    capsys.readouterr()
