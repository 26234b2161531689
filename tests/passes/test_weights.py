"""Checkpoints through passes (strata/passes/weight_transfer.py): any pipeline takes
weights in the spec's own names, and the model it compiles saves them back in
those names; the plain spec then computes what the compiled model computes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.passes.helpers import GPT, ids, logits, spec_file, torch, weights

from strata.api import compile, save_weights
from strata.backends.torch.weights_file import checkpoint_shapes

# Passes whose result the spec's own model reproduces exactly from the saved
# checkpoint: fusions (split back), adapters (merged), structured pruning (the
# kept rows among zeros), masks (zeros), low rank (the product B A).
POOL = ["fuse_qkv", "fuse_mlp", 'lora(4, on="attention")',
        'prune(0.25, method=structured, on="decoder.layers.*.mlp")', 'low_rank(8, on="decoder.lm_head")',
        'prune(0.5, on="decoder.layers.*.mlp")']


def test_fusions_are_exact_and_save_the_spec_names(llama, tmp_path):
    spec, w = llama
    x = ids(96)
    ref, _ = logits(spec, w, x, passes=[])
    got, net = logits(spec, w, x, passes=["fuse_qkv", "fuse_mlp"])
    assert "decoder.layers.0.attn.qkv.weight" in net.state_dict()
    assert "decoder.layers.0.mlp.gate_up.weight" in net.state_dict()
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    save_weights(net, tmp_path / "s.safetensors")
    assert checkpoint_shapes(tmp_path / "s.safetensors") == checkpoint_shapes(w)
    from safetensors.torch import load_file

    saved, original = load_file(str(tmp_path / "s.safetensors")), load_file(str(w))
    assert all(torch.equal(saved[k], original[k]) for k in original)  # split back bit for bit


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique=True))
def test_any_pipeline_saves_what_the_plain_spec_recomputes(llama, tmp_path, pipeline):
    spec, w = llama
    x = ids(96)
    got, net = logits(spec, w, x, passes=pipeline)
    out = tmp_path / f"{abs(hash(tuple(pipeline)))}.safetensors"
    save_weights(net, out)
    assert checkpoint_shapes(out) == checkpoint_shapes(w)  # the spec's own names and shapes
    plain, _ = logits(spec, out, x, passes=[])
    torch.testing.assert_close(plain, got, atol=1e-4, rtol=1e-4)
    again, _ = logits(spec, out, x, passes=pipeline)  # and it goes through the passes again
    torch.testing.assert_close(again, got, atol=1e-4, rtol=1e-4)


def test_model_names_load_too(llama, tmp_path):
    """A checkpoint in the compiled model's own names (its state_dict) loads as it is."""
    from safetensors.torch import save_file

    spec, w = llama
    got, net = logits(spec, w, ids(96), passes=["fuse_qkv", 'low_rank(8, on="decoder.lm_head")'])
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "m.safetensors"))
    again, _ = logits(spec, tmp_path / "m.safetensors", ids(96), passes=["fuse_qkv", 'low_rank(8, on="decoder.lm_head")'])
    torch.testing.assert_close(again, got, atol=0, rtol=0)


def test_load_weights_after_compile_carries_through_the_passes(llama):
    from strata.api import load_weights

    spec, w = llama
    ref, _ = logits(spec, w, ids(96), passes=["fuse_qkv", 'prune(0.3, method=structured, on="mlp")'])
    net = compile(spec, passes=["fuse_qkv", 'prune(0.3, method=structured, on="mlp")']).eval()
    load_weights(net, w)  # spec names, full sizes: gathered into the pruned shapes
    with torch.no_grad():
        torch.testing.assert_close(net(ids(96)), ref, atol=1e-5, rtol=0)


def test_tied_gpt_round_trip(tmp_path):
    spec = spec_file(tmp_path, GPT)
    w = weights(tmp_path, spec)
    x = ids(80)
    got, net = logits(spec, w, x, passes=["fuse_qkv", 'prune(0.5, method=structured, on="attention")'])
    save_weights(net, tmp_path / "s.safetensors")
    plain, _ = logits(spec, tmp_path / "s.safetensors", x, passes=[])
    torch.testing.assert_close(plain, got, atol=1e-5, rtol=0)
