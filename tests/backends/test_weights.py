"""safetensors round trip, tied weights, and refusal of checkpoints that do not fit."""

from __future__ import annotations

import pytest

from tests.optional import require

torch = require("torch")
require("safetensors")

from safetensors.torch import save_file

from strata.api import compile, load_weights, save_weights
from strata.backends.torch.weights_file import (
    WeightsError,
    WeightsMismatchError,
    checkpoint_shapes,
)
from tests.backends.helpers import TINY_SPEC


def test_round_trip_keeps_ties(tmp_path):
    torch.manual_seed(0)
    a = compile(TINY_SPEC)
    path = tmp_path / "m.safetensors"
    save_weights(a, path)
    torch.manual_seed(1)
    b = compile(TINY_SPEC, weights=path)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert b.decoder.lm_head.weight is b.decoder.wte.weight
    ids = torch.randint(0, 32, (1, 6))
    assert torch.equal(a(ids), b(ids))
    assert "decoder.lm_head.weight" in a.state_dict()  # as nanoGPT: both names, one Parameter
    assert "decoder.lm_head.weight" not in checkpoint_shapes(path)  # saved once


def test_load_into_compiled_module(tmp_path):
    a = compile(TINY_SPEC)
    save_weights(a, tmp_path / "m.safetensors")
    c = torch.compile(compile(TINY_SPEC), backend="eager")
    load_weights(c, tmp_path / "m.safetensors")
    assert torch.equal(c._orig_mod.decoder.wte.weight, a.decoder.wte.weight)


def test_checkpoint_with_tied_copy_is_accepted(tmp_path):
    a = compile(TINY_SPEC)
    sd = dict(a.state_dict())
    sd["decoder.lm_head.weight"] = sd["decoder.wte.weight"].clone()
    save_file(sd, str(tmp_path / "m.safetensors"))
    load_weights(compile(TINY_SPEC), tmp_path / "m.safetensors")


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path):
    sd = dict(compile(TINY_SPEC).state_dict())
    del sd["decoder.lm_head.weight"], sd["decoder.ln_f.bias"]
    sd["decoder.extra.weight"] = torch.zeros(3)
    sd["decoder.wpe.weight"] = torch.zeros(10, 16)
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsMismatchError) as e:
        load_weights(compile(TINY_SPEC), tmp_path / "bad.safetensors")
    msg = str(e.value)
    assert "missing (1)" in msg and "decoder.ln_f.bias [16]" in msg
    assert "unexpected (1)" in msg and "decoder.extra.weight [3]" in msg
    assert "decoder.wpe.weight model [64, 16] checkpoint [10, 16]" in msg


def test_pickle_is_refused(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(compile(TINY_SPEC).state_dict(), path)
    with pytest.raises(WeightsError, match="pickle"):
        load_weights(compile(TINY_SPEC), path)
    (tmp_path / "junk.safetensors").write_bytes(b"hello world, not a checkpoint")
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_weights(compile(TINY_SPEC), tmp_path / "junk.safetensors")


def test_checkpoints_are_in_spec_names_whatever_the_passes(tmp_path):
    """A model compiled with fusions or low rank saves the spec's own names, and
    loads them back; a plain model loads what a fused one saved, exactly."""
    spec = TINY_SPEC
    torch.manual_seed(0)
    fused = compile(spec, passes=["fuse_qkv"]).eval()
    save_weights(fused, tmp_path / "f.safetensors")
    names = checkpoint_shapes(tmp_path / "f.safetensors")
    assert "decoder.h.0.attn.q.weight" in names and not any(".qkv." in k for k in names)
    plain = compile(spec, passes=[]).eval()
    load_weights(plain, tmp_path / "f.safetensors")
    ids = torch.randint(0, 32, (2, 9))
    torch.testing.assert_close(plain(ids), fused(ids), atol=1e-5, rtol=0)
    again = compile(spec, passes=["fuse_qkv"]).eval()
    load_weights(again, tmp_path / "f.safetensors")
    torch.testing.assert_close(again(ids), fused(ids), atol=0, rtol=0)
