"""low_rank: the factors are the truncated SVD (their error is the Eckart-Young
optimum for the rank), energy picks the smallest rank keeping the fraction,
activation-aware factors are optimal for the scaled problem, and the model
built in the generated file computes the product."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from tests.passes.helpers import ids, logits, torch

from strata.api import generate_source, save_weights
from strata.backends.torch.workflows.runner import RUNNER
from strata.compiler import build_file
from strata.errors import SpecError
from strata.passes import PassContext, apply_passes, make_pass
from strata.passes.text import parse_pass_texts
from strata.passes.weight_transfer import transform


def _run(spec, w, texts, calibration=None):
    g = build_file(spec)
    g.graph["passes"] = parse_pass_texts(texts, g)
    return transform(g, dict(load_file(str(w))), calibration=calibration, runner=RUNNER)


def test_error_is_the_svd_optimum_for_the_rank(llama):
    spec, w = llama
    r = 8
    g, state = _run(spec, w, [f'low_rank({r}, on="mlp")'])
    before = load_file(str(w))
    rec = g.graph["applied"][-1]["record"]
    for n in ("decoder.layers.0.mlp.up", "decoder.layers.1.mlp.down"):
        W = before[f"{n}.weight"].double()
        s = torch.linalg.svdvals(W)
        optimum = (s[r:] ** 2).sum().sqrt() / W.norm()
        BA = state[f"{n}.b.weight"].double() @ state[f"{n}.a.weight"].double()
        assert state[f"{n}.a.weight"].shape == (r, W.shape[1]) and state[f"{n}.b.weight"].shape == (W.shape[0], r)
        assert float((W - BA).norm() / W.norm()) == pytest.approx(float(optimum), rel=1e-4)
        assert rec["error"][n] == pytest.approx(float(optimum), abs=2e-6)


def test_energy_picks_the_smallest_rank_keeping_the_fraction(llama):
    spec, w = llama
    g, _ = _run(spec, w, ['low_rank(energy=0.5, on="mlp")'])
    before = load_file(str(w))
    for n, f in g.graph["applied"][-1]["record"]["factored"].items():
        s2 = torch.linalg.svdvals(before[f"{n}.weight"].double()) ** 2
        kept = torch.cumsum(s2, 0) / s2.sum()
        assert kept[f["rank"] - 1] >= 0.5 > kept[f["rank"] - 2]


def test_energy_without_weights_says_so(llama):
    spec, _ = llama
    g = build_file(spec)
    g.graph["passes"] = parse_pass_texts(['low_rank(energy=0.9)'], g)
    with pytest.raises(SpecError, match=r"is chosen from the weights: compile with weights"):
        apply_passes(g)


def test_rank_or_energy_not_both(llama):
    spec, _ = llama
    with pytest.raises(SpecError, match="give either rank or energy"):
        parse_pass_texts(["low_rank(8, energy=0.9)"], build_file(spec))


def test_activation_aware_factors_are_optimal_for_the_scaled_weight():
    """ASVD: with S = diag(scale), B A S is the truncated SVD of W S."""
    torch.manual_seed(0)
    W = torch.randn(48, 32)
    scale = torch.rand(32) * 4 + 0.1
    p = make_pass("low_rank", {"rank": 6, "activation_aware": True})
    ctx = PassContext()
    ctx.cache[p] = {"x": scale}
    out = p.convert({"factored": {"x": {"rank": 6, "in": 32, "out": 48}}, "error": {}}, {"x.weight": W}, ctx)
    BA = out["x.b.weight"] @ out["x.a.weight"]
    s = torch.linalg.svdvals(W * scale)
    assert float(((W - BA) * scale).norm()) == pytest.approx(float((s[6:] ** 2).sum().sqrt()), rel=1e-4)


def test_activation_aware_reads_calibration(llama):
    spec, w = llama
    calib = ids(96, rows=4, length=16, seed=5)
    g, state = _run(spec, w, ['low_rank(8, on="mlp", activation_aware=true)'], calibration=calib)
    assert "decoder.layers.0.mlp.up.a.weight" in state
    with pytest.raises(SpecError, match="give calibration data"):
        _run(spec, w, ['low_rank(8, on="mlp", activation_aware=true)'])


def test_generated_model_computes_the_product(llama, tmp_path):
    spec, w = llama
    x = ids(96)
    p = ["fuse_mlp", 'low_rank(16, on="decoder.layers.*.mlp")']
    src = generate_source(spec, passes=p)
    assert 'LOW_RANK = {' in src and '"decoder.layers.*.mlp.gate_up": 16,' in src
    assert "factorize(model, LOW_RANK)" in src
    got, net = logits(spec, w, x, passes=p)
    assert type(net.decoder.layers[0].mlp.gate_up).__name__ == "LowRankLinear"
    save_weights(net, tmp_path / "p.safetensors")  # W = B A
    plain, _ = logits(spec, tmp_path / "p.safetensors", x, passes=[])
    torch.testing.assert_close(plain, got, atol=1e-5, rtol=0)


def test_a_rank_too_large_everywhere_is_an_error(llama):
    spec, _ = llama
    g = build_file(spec)
    g.graph["passes"] = parse_pass_texts(['low_rank(40, on="decoder.layers.*.attn.k")'], g)
    with pytest.raises(SpecError, match="no selected linear layer gets smaller at rank 40"):
        apply_passes(g)
