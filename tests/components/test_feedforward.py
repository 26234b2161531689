"""strata/components/feedforward.py: gated tanh-GELU (Gemma, T5 v1.1), the mixture of
experts against Mixtral's, and its active parameters."""

from __future__ import annotations

import pytest

from tests.optional import require

torch = require("torch")
transformers = require("transformers")

import strata.api as api
from strata.backends.torch.weights_file import load_state
from strata.compiler import build_text
from strata.compiler.cost import analyze


def test_geglu_tanh_equals_gemma2_mlp():
    from transformers.models.gemma2.modeling_gemma2 import Gemma2MLP

    cfg = transformers.Gemma2Config(hidden_size=16, intermediate_size=24, hidden_activation="gelu_pytorch_tanh")
    ref = Gemma2MLP(cfg).eval()
    model = api.compile("model m { stack s(tokens) { embedding(50, 16); mlp(24, act=geglu_tanh, bias=false) } }")
    for n in ("gate", "up", "down"):
        getattr(model.s.mlp, n).weight.data.copy_(getattr(ref, f"{n}_proj").weight)
    assert 'F.gelu(self.gate(x), approximate="tanh") * self.up(x)' in model.strata_source
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.s.mlp(x), ref(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("act", ["gelu_tanh", "silu"])
def test_every_activation_word_is_accepted_by_the_pooler(act):
    build_text(f"model m {{ stack s(tokens) {{ embedding(50, 16); pooler(act={act}) }} }}")


def test_moe_equals_mixtral_sparse_block():
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    cfg = transformers.MixtralConfig(hidden_size=16, intermediate_size=24, num_local_experts=4,
                                     num_experts_per_tok=2)
    torch.manual_seed(0)
    ref = MixtralSparseMoeBlock(cfg).eval()
    for p in ref.parameters():
        torch.nn.init.normal_(p, std=0.3)
    model = api.compile("model m { stack s(tokens) { embedding(50, 16); moe(24, 4, 2) } }").eval()
    state = {"s.moe.router.weight": ref.gate.weight}
    for e in range(4):
        gate, up = ref.experts.gate_up_proj[e].chunk(2, dim=0)
        state.update({f"s.moe.experts.{e}.gate.weight": gate, f"s.moe.experts.{e}.up.weight": up,
                      f"s.moe.experts.{e}.down.weight": ref.experts.down_proj[e]})
    load_state(model, {**{k: v for k, v in model.state_dict().items()}, **state})
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        want = ref(x)
        want = want[0] if isinstance(want, tuple) else want
        torch.testing.assert_close(model.s.moe(x), want, atol=1e-5, rtol=0)


def test_active_parameters_count_top_k_experts():
    g = build_text("model m { stack s(tokens) { embedding(50, 16); moe(24, 8, 2, shared=1) } }")
    a = analyze(g)
    expert = 3 * 16 * 24
    assert a["parameters"] == 50 * 16 + 8 * 16 + 9 * expert
    assert a["active_parameters"] == a["parameters"] - 6 * expert  # 2 routed + the shared one
    dense = analyze(build_text("model m { stack s(tokens) { embedding(50, 16); mlp(24) } }"))
    assert dense["active_parameters"] == dense["parameters"]


def test_summary_prints_active_parameters(capsys):
    from strata.cli import main

    assert main(["summary", "specs/mixtral_8x7b.arch"]) == 0
    out = capsys.readouterr().out
    assert "active per token     12,879,925,248 (12.9B, top_k experts)" in out
    assert main(["summary", "specs/gpt2.arch"]) == 0
    assert "active per token" not in capsys.readouterr().out
