"""prune: masks are exact and keep the other weights as they were; Wanda ranks
by |W| * ||X||; structured pruning shrinks the model everywhere and the pruned
model computes what the masked model computes; 2:4 says where it runs."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from tests.passes.helpers import GPT, ids, logits, spec_file, torch, weights

from strata.api import compile, generate_source, save_weights
from strata.backends.torch.workflows.runner import RUNNER
from strata.compiler import build_file
from strata.compiler.summary import summary_dict
from strata.errors import SpecError, UsageError
from strata.passes import apply_passes
from strata.passes.text import parse_pass_texts
from strata.passes.weight_transfer import transform


def _run(spec, w, text, calibration=None):
    g = build_file(spec)
    g.graph["passes"] = parse_pass_texts([text], g)
    return transform(g, dict(load_file(str(w))), calibration=calibration, runner=RUNNER)


MLP = [f"decoder.layers.{i}.mlp.{r}.weight" for i in range(2) for r in ("gate", "up", "down")]


def test_magnitude_per_layer_density_is_exact_and_kept_weights_unchanged(llama):
    spec, w = llama
    before = load_file(str(w))
    _, after = _run(spec, w, 'prune(0.3, on="mlp")')
    for k in MLP:
        a, b = after[k], before[k]
        zeros = int((a == 0).sum())
        assert zeros == int(b.numel() * 0.3)
        kept = a != 0
        assert torch.equal(a[kept], b[kept])                        # untouched
        assert a.abs()[kept].min() >= b.abs()[~kept].max()          # the smallest went
    assert torch.equal(after["decoder.layers.0.attn.q.weight"], before["decoder.layers.0.attn.q.weight"])


def test_magnitude_global_uses_one_threshold(llama):
    spec, w = llama
    before = load_file(str(w))
    _, after = _run(spec, w, 'prune(0.5, scope=global, on="mlp")')
    removed = torch.cat([before[k][after[k] == 0].abs() for k in MLP])
    kept = torch.cat([after[k][after[k] != 0].abs() for k in MLP])
    assert removed.numel() == int(sum(before[k].numel() for k in MLP) * 0.5)
    assert kept.min() >= removed.max()
    densities = [float((after[k] != 0).float().mean()) for k in MLP]
    assert max(densities) - min(densities) > 0.05  # layers differ: one threshold, not one per layer


def test_wanda_ranks_rows_by_weight_times_activation_norm(llama):
    spec, w = llama
    calib = ids(96, rows=4, length=32, seed=3)
    before = load_file(str(w))
    g, after = _run(spec, w, 'prune(0.5, method=wanda, on="decoder.layers.1.mlp.down")', calib)
    from strata.backends.torch.workflows.calibration import activation_stats

    g0 = build_file(spec)
    norms = activation_stats(g0, before, calib, ["decoder.layers.1.mlp.down"])["decoder.layers.1.mlp.down"]["sq"].sqrt()
    W = before["decoder.layers.1.mlp.down.weight"]
    score = W.abs() * norms[None, :]
    expect = torch.ones_like(W, dtype=torch.bool)
    expect.scatter_(1, score.argsort(dim=1)[:, : W.shape[1] // 2], False)
    assert torch.equal(after["decoder.layers.1.mlp.down.weight"] != 0, expect)
    assert ((after["decoder.layers.1.mlp.down.weight"] != 0).sum(1) == W.shape[1] // 2).all()  # per row


def test_wanda_compiles_with_weights_and_calibration(llama):
    """compile(spec, weights=W, passes=[wanda], calibration=ids) masked the weights,
    then load_state read them as the spec's (a mask keeps the names) and ran Wanda
    again without calibration: refused.  The model is the pipeline's."""
    spec, w = llama
    calib, x = ids(96, rows=4, length=32, seed=3), ids(96, rows=2, length=16, seed=4)
    text = "prune(0.5, method=wanda)"
    net = compile(spec, passes=[text], weights=w, calibration=calib).eval()
    g, state = _run(spec, w, text, calib)
    assert torch.equal(net.state_dict()["decoder.layers.1.mlp.down.weight"], state["decoder.layers.1.mlp.down.weight"])
    with torch.no_grad():
        assert net(x).shape == (2, 16, 96)


def test_wanda_without_calibration_says_what_it_needs(llama):
    spec, w = llama
    with pytest.raises(SpecError, match="wanda.*weighs the weights by activations: give calibration data"):
        _run(spec, w, "prune(0.5, method=wanda)")


def test_structured_shrinks_ir_summary_diagram_and_code(llama):
    spec, _ = llama
    text = 'prune(0.5, method=structured)'
    g = build_file(spec)
    g.graph["passes"] = parse_pass_texts([text], g)
    h = apply_passes(g)
    mods = {m["path"]: m for m in summary_dict(h)["modules"]}
    # GQA 4 heads / 2 kv heads: one of the two key/value groups goes (2 query heads with it)
    assert h.graph["components"]["decoder.layers.0.attn"]["options"]["heads"] == 2
    assert mods["decoder.layers.0.mlp"]["parameters"] == 3 * 64 * 64  # hidden 128 -> 64
    assert h.graph["parameters"] < g.graph["parameters"]
    src = generate_source(spec, passes=[text])
    assert "SwiGLU(config.d, 64, bias=False)" in src
    assert "CausalSelfAttention(config.d, 2, kv_heads=1, head_dim=16, bias=False)" in src
    from strata.backends.diagram import diagram

    labels = diagram(h, level="block").source
    assert "2 heads, 1 kv #40;GQA#41;" in labels and "hidden 64" in labels


def test_structured_that_removes_nothing_is_an_error(llama):
    spec, _ = llama
    g = build_file(spec)
    g.graph["passes"] = parse_pass_texts(["prune(0.2, method=structured)"], g)
    with pytest.raises(SpecError, match="removes nothing from 'decoder.layers.0.attn': 0.2 of its 2 "
                                        "key/value head groups rounds to none"):
        apply_passes(g)


def test_pruned_model_equals_the_masked_model(llama, tmp_path):
    """The spec's own model with the removed rows and columns zeroed computes
    exactly what the smaller model computes."""
    spec, w = llama
    x = ids(96)
    got, net = logits(spec, w, x, passes=["fuse_qkv", "fuse_mlp", "prune(0.5, method=structured)"])
    assert net.get_submodule("decoder.layers.0.mlp.gate_up").weight.shape == (128, 64)
    save_weights(net, tmp_path / "masked.safetensors")
    masked = load_file(str(tmp_path / "masked.safetensors"))
    down = masked["decoder.layers.0.mlp.down.weight"]
    assert int((down.abs().sum(0) == 0).sum()) == 64  # half the neurons are zero columns
    plain, _ = logits(spec, tmp_path / "masked.safetensors", x, passes=[])
    torch.testing.assert_close(plain, got, atol=1e-5, rtol=0)


def test_structured_keeps_the_largest_neurons(llama):
    spec, w = llama
    before = load_file(str(w))
    g, after = _run(spec, w, 'prune(0.5, method=structured, on="decoder.layers.0.mlp")')
    rec = g.graph["applied"][-1]["record"]["components"]["decoder.layers.0.mlp"]
    up, gate = before["decoder.layers.0.mlp.up.weight"], before["decoder.layers.0.mlp.gate.weight"]
    down = before["decoder.layers.0.mlp.down.weight"]
    score = up.norm(dim=1) * gate.norm(dim=1) * down.norm(dim=0)
    assert rec["kept"] == sorted(score.topk(64).indices.tolist())
    torch.testing.assert_close(after["decoder.layers.0.mlp.down.weight"], down[:, rec["kept"]])


def _carried(stats, w, n, units):
    """sqrt(sum over each unit's columns c of E[x_c^2] ||W[:, c]||^2): what each
    unit adds to the output of `n`, written out."""
    s = stats[n]
    per_col = w.double().pow(2).sum(0) * s["sq"].double() / s["n"]
    return per_col.view(units, -1).sum(1).sqrt()


def test_structured_activation_aware_keeps_what_carries_most_on_calibration_data(llama):
    spec, w = llama
    calib = ids(96, rows=4, length=32, seed=3)
    before = load_file(str(w))
    text = 'prune(0.5, method=structured, on="decoder.layers.1.*", activation_aware=true)'
    g, after = _run(spec, w, text, calib)
    from strata.backends.torch.workflows.calibration import activation_stats

    readers = ["decoder.layers.1.mlp.down", "decoder.layers.1.attn.o"]
    stats = activation_stats(build_file(spec), before, calib, readers)
    comps = g.graph["applied"][-1]["record"]["components"]
    down = before["decoder.layers.1.mlp.down.weight"]
    neurons = _carried(stats, down, "decoder.layers.1.mlp.down", 128)
    assert comps["decoder.layers.1.mlp"]["kept"] == sorted(neurons.topk(64).indices.tolist())
    torch.testing.assert_close(after["decoder.layers.1.mlp.down.weight"],
                               down[:, comps["decoder.layers.1.mlp"]["kept"]])
    # 4 heads of 16 in 2 key/value groups: a group is o's 32 columns of its two query heads
    groups = _carried(stats, before["decoder.layers.1.attn.o.weight"], "decoder.layers.1.attn.o", 2)
    assert comps["decoder.layers.1.attn"]["kept"] == [int(groups.argmax())]
    # the choice differs from the weight norms' on these weights, or the test would prove nothing
    _, by_norm = _run(spec, w, 'prune(0.5, method=structured, on="decoder.layers.1.mlp")')
    assert not torch.equal(by_norm["decoder.layers.1.mlp.down.weight"], after["decoder.layers.1.mlp.down.weight"])


def test_structured_activation_aware_saves_and_reloads_its_own_choice(llama, tmp_path):
    """The masked checkpoint is the smaller model's, and loading it back into the
    pruned model reuses the choice instead of redoing it from the weight norms."""
    from strata.api import load_weights

    spec, w = llama
    x = ids(96)
    p = ['prune(0.5, method=structured, activation_aware=true)']
    got, net = logits(spec, w, x, passes=p, calibration=ids(96, rows=4, length=32, seed=3))
    save_weights(net, tmp_path / "masked.safetensors")
    plain, _ = logits(spec, tmp_path / "masked.safetensors", x, passes=[])
    torch.testing.assert_close(plain, got, atol=1e-5, rtol=0)
    load_weights(net, tmp_path / "masked.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(net(x), got, atol=0, rtol=0)


def test_structured_activation_aware_needs_calibration_and_structured(llama):
    spec, w = llama
    with pytest.raises(SpecError, match="activation_aware=true.*reads activations: give calibration data"):
        _run(spec, w, "prune(0.5, method=structured, activation_aware=true)")
    with pytest.raises(SpecError, match="activation_aware chooses which heads and neurons method=structured keeps"):
        _run(spec, w, "prune(0.5, activation_aware=true)", ids(96))


def test_structured_heads_in_plain_attention(tmp_path):
    spec = spec_file(tmp_path, GPT)
    w = weights(tmp_path, spec)
    x = ids(80)
    got, net = logits(spec, w, x, passes=['prune(0.5, method=structured, on="attention")'])
    assert net.decoder.h[0].attn.q.weight.shape == (32, 64)  # 2 of 4 heads of 16
    save_weights(net, tmp_path / "s.safetensors")
    plain, _ = logits(spec, tmp_path / "s.safetensors", x, passes=[])
    torch.testing.assert_close(plain, got, atol=1e-5, rtol=0)


def test_structured_after_low_rank_is_refused(llama):
    spec, _ = llama
    g = build_file(spec)
    g.graph["passes"] = parse_pass_texts(['low_rank(8, on="mlp")', "prune(0.5, method=structured)"], g)
    with pytest.raises(SpecError, match="'decoder.layers.0.mlp' was already factored by low_rank") as e:
        apply_passes(g)
    assert e.value.diagnostics[0].hint == "list prune(method=structured) before low_rank in the passes"


def test_structured_after_lora_is_refused_with_what_to_change(llama):
    """The refusal said "'...' carries adapters; list prune before lora": no hint line,
    and the order was the only way out it gave (on= leaving the adapted modules
    alone is another); in a spec it names both, the pass order and on=."""
    spec, _ = llama
    g = build_file(spec)
    g.graph["passes"] = parse_pass_texts(['lora(4, on="mlp")', "prune(0.5, method=structured)"], g)
    with pytest.raises(SpecError, match="'decoder.layers.0.mlp.gate' carries LoRA adapters") as e:
        apply_passes(g)
    assert e.value.diagnostics[0].hint == (
        "list prune(method=structured) before lora in the passes (the adapters are then made for "
        "the pruned widths), or narrow on= to modules without adapters")
    g.graph["passes"] = parse_pass_texts(['lora(4, on="mlp")', 'prune(0.5, method=structured, on="attention")'], g)
    apply_passes(g)  # the way out the hint gives


def test_two_four_masks_and_is_refused_off_cuda(llama):
    spec, w = llama
    _, after = _run(spec, w, 'prune(0.5, method="2:4", on="mlp")')
    for k in MLP:
        groups = (after[k] != 0).view(after[k].shape[0], -1, 4).sum(-1)
        assert (groups == 2).all()
    with pytest.raises(UsageError, match=r"2:4.*compute capability >= 8.0, not on cpu.*structured"):
        compile(spec, weights=w, passes=['prune(0.5, method="2:4", on="mlp")'])


def test_sparsegpt_two_four_off_cuda_is_refused_in_its_own_words(llama):
    """The refusal named prune(method="2:4"), a pass the spec did not write."""
    spec, w = llama
    with pytest.raises(UsageError, match=r'^prune\(0.5, method=sparsegpt, pattern="2:4", on="mlp"\) '
                                         r"runs on .* not on cpu"):
        compile(spec, weights=w, passes=['prune(0.5, method=sparsegpt, pattern="2:4", on="mlp")'],
                calibration=ids(96, rows=4, length=16))


def test_compiled_without_weights_a_pruned_spec_holds_zeros(llama):
    spec, _ = llama
    net = compile(spec, passes=['prune(0.5, on="mlp")'])
    wt = net.decoder.layers[0].mlp.up.weight
    assert int((wt == 0).sum()) == wt.numel() // 2
