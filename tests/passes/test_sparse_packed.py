"""Pruned linears stored sparse (strata/backends/torch/sparse_packed.py,
strata/passes/sparse_storage.py): `strata compress` of a masked model writes its
kept weights in compressed-tensors' sparse-bitmask layout, the file is what the
summary counts, and it loads back to exactly the compressed model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.passes.helpers import ids, torch

from strata.api import compile, save_weights
from strata.backends.torch.sparse_packed import dense_weight, read_sparse, sparse_tensors
from strata.backends.torch.workflows.compress import compress
from strata.compiler import build_file
from strata.compiler.cost import analyze
from strata.passes import apply_passes
from strata.safetensors_file import WeightsError, read_header, tensor_bytes

ROOT = Path(__file__).resolve().parents[2]


def _logits(net, x):
    with torch.no_grad():
        return net.eval()(x)


@pytest.mark.parametrize("passes", ["prune(0.5)", 'prune(0.625, method=wanda, on="mlp")',
                                    "prune(0.5, method=sparsegpt)"])
def test_pruned_linears_are_stored_sparse_and_load_to_the_compressed_model(gpt, tmp_path, passes):
    """Before: the zeros were stored in the float weights, the file as big as the
    unpruned one's (432,248 bytes for the tiny GPT at 50 %)."""
    spec, w = gpt
    out = tmp_path / "out"
    calib = ids(80, rows=4, length=32, seed=3) if "method" in passes else None
    r = compress(spec, w, out, passes=[passes], calibration=calib).report
    header, _ = read_header(out / "weights.safetensors")
    sparse = sorted(k.removesuffix(".bitmask") for k in header if k.endswith(".bitmask"))
    assert sparse and sorted(r["sparsity_config"]["targets"]) == sparse
    assert r["sparsity_config"]["format"] == "sparse-bitmask"
    assert r["sparsity_config"]["sparsity_structure"] == "unstructured"
    for n in sparse:
        assert f"{n}.weight" not in header
        assert header[f"{n}.bitmask"].dtype == "U8" and header[f"{n}.row_offsets"].dtype == "I64"
    # the loaded file computes what the compressed model computed in memory, bit for bit
    x = ids(80)
    loaded = compile(out / "model.arch", weights=out / "weights.safetensors")
    assert r["logits"]["loaded_equals_in_memory"]
    if calib is None:
        assert torch.equal(_logits(compile(spec, weights=w, passes=[passes]), x), _logits(loaded, x))
    # the bytes `summary` prints are the file's tensors
    assert analyze(apply_passes(build_file(out / "model.arch")))["memory"]["weights_bytes"] \
        == tensor_bytes(out / "weights.safetensors") == r["weight_bytes"]["file_tensors"]
    assert (out / "weights.safetensors").stat().st_size < 0.75 * w.stat().st_size


@pytest.mark.parametrize("passes, why", [
    ("prune(0.02)", "a bitmask would not be smaller"),
    ("prune(0.5, scope=global)", "scope=global: its count a layer is not in the spec"),
    # int(0.6 * 64) = 38 a row of 64 is not int(0.6 * rows * 64) in all: magnitude would prune more
    ('prune(0.6, method=wanda, on="mlp")', "its count a row is not magnitude's")])
def test_a_prune_whose_count_the_spec_cannot_say_or_that_would_not_pay_stays_dense(gpt, tmp_path, passes, why):
    spec, w = gpt
    calib = ids(80, rows=4, length=32, seed=3) if "wanda" in passes else None
    r = compress(spec, w, tmp_path / "o", passes=[passes], calibration=calib).report
    header, _ = read_header(tmp_path / "o" / "weights.safetensors")
    assert not any(k.endswith(".bitmask") for k in header) and r["sparsity_config"] is None
    assert f"stored dense: {why}" in r["notes"][0]
    assert "prune" not in (tmp_path / "o" / "model.arch").read_text().partition("passes {")[2]


def test_quantized_and_pruned_linears_keep_their_integers(gpt, tmp_path):
    spec, w = gpt
    out = tmp_path / "o"
    r = compress(spec, w, out, passes=["prune(0.5)", 'quantize(int8_weight, on="attention")']).report
    header, _ = read_header(out / "weights.safetensors")
    assert "decoder.h.0.attn.q.weight_packed" in header and "decoder.h.0.attn.q.bitmask" not in header
    assert "decoder.h.0.mlp.up.bitmask" in header
    assert r["sparsity_config"]["targets"] == [f"decoder.h.{i}.mlp.{p}" for i in (0, 1) for p in ("up", "down")]
    assert r["quantization_config"]["format"] == "pack-quantized"
    assert analyze(apply_passes(build_file(out / "model.arch")))["memory"]["weights_bytes"] \
        == tensor_bytes(out / "weights.safetensors")
    x = ids(80)
    assert torch.equal(_logits(compile(spec, weights=w, passes=["prune(0.5)", 'quantize(int8_weight, on="attention")']), x),
                       _logits(compile(out / "model.arch", weights=out / "weights.safetensors"), x))


def test_a_sparse_folder_compresses_again_and_loads_as_float(gpt, tmp_path):
    from strata.api import load_weights

    spec, w = gpt
    compress(spec, w, tmp_path / "a", passes=["prune(0.5)"])
    r = compress(tmp_path / "a" / "model.arch", tmp_path / "a" / "weights.safetensors", tmp_path / "b",
                 passes=['quantize(int8_dynamic, on="attention")']).report
    assert r["sparsity_config"]["targets"] == [f"decoder.h.{i}.mlp.{p}" for i in (0, 1) for p in ("up", "down")]
    float_net = compile(tmp_path / "a" / "model.arch", passes=[])
    load_weights(float_net, tmp_path / "a" / "weights.safetensors")  # decompressed into a float model
    assert float(float_net.decoder.h[0].mlp.up.weight.eq(0).float().mean()) == 0.5


def test_the_layout_is_compressed_tensors_bitmask():
    """The bits are numpy.packbits(mask, axis=-1, bitorder="little"), as
    compressed-tensors packs them; offsets where each row starts in the values."""
    w = torch.randn(5, 13) * (torch.rand(5, 13) > 0.5)
    kept = int((w != 0).sum()) + 2  # two zeros stored as kept: the count the spec says
    t = sparse_tensors("fc", w, "sparse-bitmask", kept)
    mask = np.zeros((5, 13), dtype=bool)
    mask[(w != 0).numpy()] = True
    assert t["fc.bitmask"].shape == (5, 2) and t["fc.compressed"].shape == (kept,)
    extra = np.unpackbits(t["fc.bitmask"].numpy(), axis=-1, count=13, bitorder="little").astype(bool)
    assert (extra & ~mask).sum() == 2 and (mask & ~extra).sum() == 0
    counts = extra.sum(1)
    assert t["fc.row_offsets"].tolist() == (np.cumsum(counts) - counts).tolist()
    assert t["fc.shape"].tolist() == [5, 13] and t["fc.shape"].dtype == torch.int64
    assert torch.equal(dense_weight(dict(t), "fc", (5, 13), "<test>"), w)


def test_the_2_4_layout_is_compressed_tensors_24_bitmask():
    w = torch.randn(4, 16)
    keep = torch.zeros(4, 4, 4, dtype=torch.bool).scatter_(2, w.abs().view(4, 4, 4).topk(2, dim=2).indices, True)
    w = w * keep.view(4, 16)
    t = sparse_tensors("fc", w, "sparse-24-bitmask", 32)
    assert t["fc.compressed"].shape == (4, 8) and t["fc.bitmask"].shape == (4, 2) and t["fc.shape"].shape == (2, 1)
    assert "fc.row_offsets" not in t
    assert torch.equal(dense_weight(dict(t), "fc", (4, 16), "<test>"), w)


def test_weights_with_more_non_zeros_than_the_prune_keeps_are_refused():
    with pytest.raises(WeightsError, match="holds 6 non-zero weights where its prune keeps 4"):
        sparse_tensors("fc", torch.ones(2, 3), "sparse-bitmask", 4)


def test_a_bitmask_for_a_linear_the_model_lacks_is_refused(gpt):
    spec, _ = gpt
    g = apply_passes(build_file(spec))
    t = sparse_tensors("decoder.h.0.nope", torch.ones(2, 8), "sparse-bitmask", 16)
    with pytest.raises(WeightsError, match="decoder.h.0.nope holds sparse-bitmask weights; the model has no linear"):
        read_sparse(t, g, "f")


def test_the_benchmark_command_runs(tmp_path):
    """docs/benchmarks.md's command for the pruned row, shrunk to a tiny spec."""
    from tests.passes.helpers import GPT

    spec = tmp_path / "m.arch"
    spec.write_text(GPT)
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compress_storage.py"), "--spec", str(spec),
                          "--passes", "prune(0.5)"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    row = next(line for line in run.stdout.splitlines() if line.strip().startswith("prune(0.5)"))
    layers = float(row.split()[1].rstrip("x"))
    assert 0.5 < layers < 0.6 and row.split()[-2:] == ["True", "True"]


def test_a_bf16_model_stores_a_light_prune_dense(gpt, tmp_path):
    """The layout is chosen for the weight's own dtype.  A 10 % prune of a
    [64, 64] linear pays in float32 (4 bytes a value: 0.9 · 4 + 1/8 + 8/64 <
    4) but not in bf16 (0.9 · 2 + 1/4 > 2): its bitmask file was larger than
    the dense bf16 weight (the choice assumed 4 bytes a weight)."""
    spec, w = gpt
    passes = ['prune(0.1, on="attention")', 'quantize(int8_dynamic, on="mlp")']  # quantized: saved packed
    sizes = {}
    for dtype in (torch.float32, torch.bfloat16):
        path = tmp_path / f"{dtype}.safetensors"
        save_weights(compile(spec, weights=w, passes=passes, dtype=dtype, cast=True), path)
        header, _ = read_header(path)
        q = {k: t for k, t in header.items() if k.startswith("decoder.h.0.attn.q.")}
        sizes[dtype] = sum(t.end - t.begin for t in q.values())
        assert ("decoder.h.0.attn.q.bitmask" in q) == (dtype == torch.float32), sorted(q)
    rows, cols = 64, 64
    assert sizes[torch.bfloat16] == 2 * (rows * cols + rows)  # dense weight and bias
    assert sizes[torch.float32] < 4 * (rows * cols + rows)
