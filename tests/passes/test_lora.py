"""lora: adapters start as a no-op, only they train, merged equals unmerged,
adapters save and load on their own, and the model's checkpoint is the merged
spec's."""

from __future__ import annotations

import pytest

from tests.passes.helpers import ids, logits, torch

from strata.api import compile, generate_source, save_weights
from strata.backends.torch.weights_file import WeightsMismatchError, checkpoint_shapes
from strata.compiler.summary import summary_dict
from strata.backends.torch.workflows.adapters import load_adapters, lora_parameters, mark_trainable, merge_lora, save_adapters

LORA = 'lora(4, alpha=8, on="attention")'


def _train(net, steps=5, seed=0):
    """A minimal next-token loop on random ids: enough to move the adapters."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    x = ids(80, rows=4, length=17, seed=seed)
    losses = []
    for _ in range(steps):
        logits = net(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_adapters_start_as_the_base_model(gpt):
    spec, w = gpt
    x = ids(80)
    ref, _ = logits(spec, w, x, passes=[])
    got, net = logits(spec, w, x, passes=[LORA])
    torch.testing.assert_close(got, ref, atol=0, rtol=0)
    assert len(lora_parameters(net)) == 2 * 2 * 4  # a and b on q, k, v, o of two layers
    src = generate_source(spec, passes=[LORA])
    assert '"decoder.h.*.attn.q": dict(rank=4, alpha=8.0, dropout=0.0),' in src
    assert "add_adapters(model, LORA)" in src


def test_only_adapters_train_and_merged_equals_unmerged(gpt):
    spec, w = gpt
    net = compile(spec, passes=[LORA], weights=w)
    base = {k: v.clone() for k, v in net.state_dict().items() if "lora_" not in k}
    names = mark_trainable(net)
    assert names == sorted(lora_parameters(net))
    losses = _train(net)
    assert losses[-1] < losses[0]
    after = net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items())  # the base did not move
    assert any(float(after[k].abs().sum()) > 0 for k in after if k.endswith("lora_b"))
    merged = merge_lora(net).eval()
    assert not lora_parameters(merged) and "LORA" not in merged.strata_source
    x = ids(80)
    with torch.no_grad():
        torch.testing.assert_close(merged(x), net.eval()(x), atol=1e-5, rtol=1e-5)


def test_summary_counts_adapters_as_trainable(gpt):
    spec, _ = gpt
    s = summary_dict(_applied(spec, [LORA]))
    assert s["trainable_parameters"] == 2 * 4 * 4 * (64 + 64)


def _applied(spec, passes):
    from strata.compiler import build_file
    from strata.passes import apply_passes
    from strata.passes.text import parse_pass_texts

    g = build_file(spec)
    g.graph["passes"] = parse_pass_texts(passes, g)
    return apply_passes(g)


def test_adapters_save_and_load_on_their_own(gpt, tmp_path):
    spec, w = gpt
    net = compile(spec, passes=[LORA], weights=w)
    mark_trainable(net)
    _train(net)
    save_adapters(net, tmp_path / "a.safetensors")
    shapes = checkpoint_shapes(tmp_path / "a.safetensors")
    assert set(shapes) == set(lora_parameters(net)) and all(".lora_" in k for k in shapes)
    fresh = compile(spec, passes=[LORA], weights=w).eval()
    load_adapters(fresh, tmp_path / "a.safetensors")
    x = ids(80)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), net.eval()(x), atol=0, rtol=0)
    other = compile(spec, passes=['lora(8, on="attention")'], weights=w)
    with pytest.raises(WeightsMismatchError, match="mismatched shapes"):
        load_adapters(other, tmp_path / "a.safetensors")


def test_checkpoint_of_a_lora_model_is_the_merged_spec(gpt, tmp_path):
    spec, w = gpt
    net = compile(spec, passes=["fuse_qkv", LORA], weights=w)
    mark_trainable(net)
    _train(net)
    net.eval()
    save_weights(net, tmp_path / "m.safetensors")
    assert checkpoint_shapes(tmp_path / "m.safetensors") == checkpoint_shapes(w)
    x = ids(80)
    plain, _ = logits(spec, tmp_path / "m.safetensors", x, passes=[])
    with torch.no_grad():
        torch.testing.assert_close(plain, net(x), atol=1e-5, rtol=1e-5)
