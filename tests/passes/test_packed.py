"""Compressed checkpoints (strata/backends/torch/packed.py): what `strata compress`
writes is what the model computes with, it loads straight into the kernels, and
the loaded model computes exactly what the compressed model in memory did."""

from __future__ import annotations

import json
import re

import pytest

from tests.passes.helpers import GPT, LLAMA, ids, spec_file, torch, weights

from strata.api import compile
from strata.backends.torch.weights_file import WeightsError, save_weights
from strata.cli import main
from strata.compiler import build_file
from strata.compiler.cost import analyze
from strata.passes import apply_passes
from strata.backends.torch.workflows.compress import compress
from strata.passes.qparams import rtn
from strata.safetensors_file import read_header, tensor_bytes

SCHEMES = ["quantize(int8_dynamic)", "quantize(int8_weight)", "quantize(int4_weight, group_size=32)",
           "quantize(int4_weight, group_size=channel)", "quantize(int4_weight, group_size=channel)\nlow_rank(16)",
           "fuse_qkv\nquantize(int4_weight, group_size=32)", "low_rank(16)", "prune(0.5, method=structured)",
           'lora(4, on="attention")', "quantize(auto, bits=6, group_size=32)", "quantize(int8_static)",
           "quantize(int8_static, smooth=0.5)",
           # pruned linears as their kept weights and bitmask (sparse-bitmask), beside quantized ones
           "prune(0.5)", 'prune(0.5)\nquantize(int8_weight, on="attention")']


def _logits(net, x):
    with torch.no_grad():
        return net.eval()(x)


@pytest.mark.parametrize("passes", SCHEMES)
def test_the_file_loads_into_the_kernels_and_computes_exactly_the_compressed_model(gpt, tmp_path, passes):
    spec, w = gpt
    out = tmp_path / "out"
    # auto's sensitivity and int8_static's activation scales read it
    calib = ids(80, rows=4, length=32, seed=3) if "auto" in passes or "static" in passes else None
    r = compress(spec, w, out, passes=passes.split("\n"), calibration=calib).report
    x = ids(80)
    # in memory: the spec with its passes, compiled from the float weights (round-to-nearest integers)
    mem = _logits(compile(spec, weights=w, passes=passes.split("\n"), calibration=calib), x) \
        if "lora" not in passes else None
    loaded = compile(out / "model.arch", weights=out / "weights.safetensors")
    got = _logits(loaded, x)
    assert r["logits"]["loaded_equals_in_memory"]
    if mem is not None:
        assert torch.equal(mem, got)
    # the bytes `summary` prints are the file's tensors
    assert analyze(apply_passes(build_file(out / "model.arch")))["memory"]["weights_bytes"] \
        == tensor_bytes(out / "weights.safetensors") == r["weight_bytes"]["file_tensors"]
    if "quantize" in passes:
        assert r["quantization_config"]["quant_method"] == "compressed-tensors"
        cfg = r["quantization_config"]
        assert cfg["format"] == ("int-quantized" if "dynamic" in passes or "static" in passes else "pack-quantized")
        # each group's format is what the file stores for its targets (int8_weight too: pack-quantized)
        header, _ = read_header(out / "weights.safetensors")
        for group in cfg["config_groups"].values():
            for t in group["targets"]:
                packed, plain = header.get(f"{t}.weight_packed"), header.get(f"{t}.weight")
                stored = "pack-quantized" if packed and packed.dtype == "I32" else \
                    "int-quantized" if plain and plain.dtype == "I8" else None
                assert stored == group["format"], (t, group["format"])
        assert any(type(m.weight).__name__ != "Parameter" or hasattr(m, "_packed_params")
                   for m in loaded.modules() if hasattr(m, "weight") and not isinstance(m, torch.nn.Embedding)) \
            or any(callable(getattr(m, "integers", None)) for m in loaded.modules())  # StaticInt8Linear


def test_save_weights_of_a_quantized_model_round_trips_exactly(gpt, tmp_path):
    spec, w = gpt
    x = ids(80)
    for scheme in ("int8_weight", "int4_weight, group_size=32"):
        net = compile(spec, weights=w, passes=[f"quantize({scheme})"])
        save_weights(net, tmp_path / "q.safetensors")
        header, meta = read_header(tmp_path / "q.safetensors")
        assert meta["compression"] == "compressed-tensors"
        assert not any(t.torch_dtype == "float32" for k, t in header.items() if k.endswith(".attn.q.weight"))
        again = compile(spec, weights=tmp_path / "q.safetensors", passes=[f"quantize({scheme})"])
        assert torch.equal(_logits(net, x), _logits(again, x))


def test_an_int8_weight_file_of_the_earlier_layout_still_loads(gpt, tmp_path):
    """int8_weight was stored int8 [out, in] (int-quantized's layout) before it was
    packed 4 to an int32: such a file computes the same."""
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
    from safetensors.torch import load_file, save_file

    spec, w = gpt
    net = compile(spec, weights=w, passes=["quantize(int8_weight)"])
    save_weights(net, tmp_path / "q.safetensors")
    new = load_file(str(tmp_path / "q.safetensors"))
    old = {}
    for k, v in new.items():
        if k.endswith(".weight_packed"):
            n = k.removesuffix("_packed")
            old[n] = unpack_from_int32(v, 8, torch.Size(new[n + "_shape"].tolist())).to(torch.int8)
        elif not k.endswith(".weight_shape"):
            old[k] = v
    assert any(v.dtype == torch.int8 for v in old.values())
    save_file(old, str(tmp_path / "old.safetensors"), metadata={"format": "pt", "compression": "compressed-tensors"})
    again = compile(spec, weights=tmp_path / "old.safetensors", passes=["quantize(int8_weight)"])
    assert torch.equal(_logits(net, ids(80)), _logits(again, ids(80)))


def _layer_ratio(out, report) -> float:
    """File bytes of the quantized linears / their float bytes."""
    header, _ = read_header(out / "weights.safetensors")
    names = report["passes"][-1]["linears"] if "linears" in report["passes"][-1] else None
    g = apply_passes(build_file(out / "model.arch"))
    names = names or [n for n, d in g.nodes(data=True) if d["attrs"].get("quant_scheme")]
    stored = sum(t.end - t.begin for k, t in header.items() if k.rsplit(".", 1)[0] in names)
    floats = sum(4 * (s[0] * s[1] + s[0]) if len(s) == 2 else 0 for n in names
                 for s in [tuple(g.nodes[n]["params"]["weight"])])
    floats += sum(4 * g.nodes[n]["params"]["bias"][0] for n in names if "bias" in g.nodes[n]["params"])
    floats -= sum(4 * s[0] for n in names for s in [tuple(g.nodes[n]["params"]["weight"])])
    return stored / floats


def test_int8_and_int4_files_are_a_fraction_of_the_float_layers(tmp_path):
    """The issue's bounds: int8 (all linears) <= 0.30x, int4 <= 0.18x of the quantized layers' float bytes."""
    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    for passes, bound in (("quantize(int8_dynamic)", 0.30), ("quantize(int4_weight, group_size=32)", 0.18)):
        out = tmp_path / passes[9:13]
        r = compress(spec, w, out, passes=[passes]).report
        assert _layer_ratio(out, r) <= bound
        assert r["weight_bytes"]["file"] < r["weight_bytes"]["before"]


def test_layers_that_do_not_fit_stay_float_and_are_listed(tmp_path, capsys):
    spec = spec_file(tmp_path, LLAMA)  # q/k/v/o read 64 features; the MLP's down reads 128
    w = weights(tmp_path, spec)
    out = tmp_path / "out"
    assert main(["compress", str(spec), "--weights", str(w), "-o", str(out),
                 "--pass", "quantize(int4_weight, group_size=128)"]) == 0
    printed = capsys.readouterr().out
    assert "kept in float: width 64 is not a multiple of 128" in printed
    r = json.loads((out / "report.json").read_text())
    assert set(r["kept_float"]) >= {"decoder.layers.0.attn.q", "decoder.layers.1.mlp.up"}
    assert all(why == "width 64 is not a multiple of 128" for why in r["kept_float"].values())
    header, _ = read_header(out / "weights.safetensors")
    assert header["decoder.layers.0.attn.q.weight"].torch_dtype == "float32"
    assert "decoder.layers.0.mlp.down.weight_packed" in header
    assert main(["compress", str(spec), "--weights", str(w), "-o", str(tmp_path / "strict"),
                 "--pass", "quantize(int4_weight, group_size=128, strict=true)"]) != 0
    assert "not a multiple of group_size=128" in capsys.readouterr().err


def test_compress_then_eval_through_the_command_line(tmp_path, capsys, monkeypatch):
    from tests.matrix_specs import PLAIN

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.arch").write_text(PLAIN)
    assert main(["train", "p.arch", "--out", "r", "--steps", "2", "-q"]) == 0
    assert main(["compress", "r", "--pass", "quantize(int4_weight, group_size=32)", "-o", "small",
                 "--eval", "--max-batches", "2"]) == 0
    printed = capsys.readouterr().out
    e = json.loads((tmp_path / "small" / "report.json").read_text())["eval"]
    assert e["bytes_on_disk"]["compressed"] == (tmp_path / "small" / "weights.safetensors").stat().st_size
    assert e["bytes_on_disk"]["compressed"] < e["bytes_on_disk"]["original"]
    assert e["latency"]["original_ms"] > 0 and e["latency"]["compressed_ms"] > 0
    assert "weights on disk" in printed and "side by side" in printed and "perplexity" in printed
    assert main(["eval", "small", "--max-batches", "2", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["loss"]
    assert first == pytest.approx(e["compressed"]["loss"], rel=1e-6)
    assert main(["eval", "small", "--max-batches", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] == first
    # hostile: packed integers that disagree with the spec are one line, not a traceback
    from safetensors.torch import load_file, save_file

    tensors = load_file("small/weights.safetensors")
    name = next(k for k in tensors if k.endswith(".weight_packed"))
    tensors[name] = tensors[name][:, :2].contiguous()
    save_file(tensors, "small/weights.safetensors", metadata={"format": "pt"})
    assert main(["eval", "small", "--max-batches", "2"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{name} is int32" in err and len(err.strip().splitlines()) <= 2, err


def test_a_file_whose_packed_shapes_disagree_with_the_spec_is_refused(gpt, tmp_path):
    from safetensors.torch import load_file, save_file

    spec, w = gpt
    out = tmp_path / "out"
    compress(spec, w, out, passes=["quantize(int4_weight, group_size=32)"])
    tensors = load_file(str(out / "weights.safetensors"))
    tensors["decoder.h.0.attn.q.weight_scale"] = tensors["decoder.h.0.attn.q.weight_scale"][:, :1].contiguous()
    save_file(tensors, str(out / "weights.safetensors"), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=r"decoder.h.0.attn.q.weight_scale is bfloat16 \[64, 1\]"):
        compile(out / "model.arch", weights=out / "weights.safetensors")
    del tensors["decoder.h.0.attn.q.weight_scale"]
    save_file(tensors, str(out / "weights.safetensors"), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="decoder.h.0.attn.q.weight_scale is missing"):
        compile(out / "model.arch", weights=out / "weights.safetensors")


def test_rtn_integers_stand_for_the_weight():
    torch.manual_seed(0)
    w = torch.randn(16, 64)
    for scheme, gs, tol in (("int8_weight", None, 0.01), ("int4_weight", 32, 0.2)):
        qw = rtn(w, scheme, gs)
        assert qw.q.dtype == torch.int8 and int(qw.q.min()) >= (-128 if gs is None else -8)
        assert float((qw.dequantize() - w).norm() / w.norm()) < tol


def test_lora_adapters_merged_or_kept(gpt, tmp_path):
    spec, w = gpt
    x = ids(80)
    got = {}
    for adapters in ("merge", "keep"):
        out = tmp_path / adapters
        r = compress(spec, w, out, passes=['lora(4, on="attention")'], adapters=adapters).report
        header, _ = read_header(out / "weights.safetensors")
        has = any(k.endswith(".lora_a") for k in header)
        assert has == (adapters == "keep")
        written = re.search(r"passes \{[^}]*lora\(", (out / "model.arch").read_text())
        assert bool(written) == (adapters == "keep")
        assert r["logits"]["loaded_equals_in_memory"]
        got[adapters] = _logits(compile(out / "model.arch", weights=out / "weights.safetensors"), x)
    # B starts at zero, so either form computes the original model
    assert torch.allclose(got["merge"], got["keep"], atol=1e-5)


def test_a_compressed_folder_compresses_again(gpt, tmp_path):
    spec, w = gpt
    compress(spec, w, tmp_path / "a", passes=["quantize(int8_weight)"])
    r = compress(tmp_path / "a" / "model.arch", tmp_path / "a" / "weights.safetensors", tmp_path / "b",
                 passes=["low_rank(16)"]).report
    assert r["logits"]["loaded_equals_in_memory"]
    header, _ = read_header(tmp_path / "b" / "weights.safetensors")
    assert "decoder.h.0.attn.q.a.weight_packed" in header  # the factors stay int8_weight (pack-quantized)


@pytest.mark.parametrize("first", ["low_rank(16)", 'lora(4, on="attention")'])
def test_a_compressed_folder_of_float_factors_or_kept_adapters_compresses_again(gpt, tmp_path, first):
    """A compress output stores low-rank factors and kept adapters in the model's
    own names, unpacked: compressing it again was refused ('these do not fit
    model.arch'), though a compress output is a source like any other."""
    spec, w = gpt
    compress(spec, w, tmp_path / "a", passes=[first], adapters="keep")
    x = ids(80)
    before = _logits(compile(tmp_path / "a" / "model.arch", weights=tmp_path / "a" / "weights.safetensors"), x)
    r = compress(tmp_path / "a" / "model.arch", tmp_path / "a" / "weights.safetensors", tmp_path / "b",
                 passes=['prune(0.5, on="decoder.h.0.mlp.*")']).report
    assert r["logits"]["loaded_equals_in_memory"]
    # the source's model is the one compressed: the first layer's MLP pruned, the rest as it was
    after = _logits(compile(tmp_path / "b" / "model.arch", weights=tmp_path / "b" / "weights.safetensors"), x)
    assert 5 < float(10 * torch.log10(before.pow(2).sum() / (before - after).pow(2).sum()))


def test_a_quantized_tied_head_round_trips(gpt, tmp_path):
    spec, w = gpt
    out = tmp_path / "out"
    r = compress(spec, w, out, passes=['quantize(int8_weight, on="decoder.lm_head")']).report
    assert r["logits"]["loaded_equals_in_memory"]
    assert r["weight_bytes"]["file_tensors"] == analyze(apply_passes(build_file(out / "model.arch")))[
        "memory"]["weights_bytes"]


def test_per_channel_int4_stores_one_scale_a_row_in_the_channel_strategy(gpt, tmp_path):
    """group_size=channel: a bf16 scale and a zero point per output row, which
    compressed-tensors calls the channel strategy; the kernels run it as equal
    groups, so the file computes what per-row rounding says."""
    spec, w = gpt
    out = tmp_path / "out"
    r = compress(spec, w, out, passes=["quantize(int4_weight, group_size=channel)"]).report
    header, _ = read_header(out / "weights.safetensors")
    up = "decoder.h.0.mlp.up"
    assert header[f"{up}.weight_scale"].shape == (256, 1) and header[f"{up}.weight_scale"].dtype == "BF16"
    assert header[f"{up}.weight_zero_point"].shape == (32, 1)
    down = header["decoder.h.0.mlp.down.weight_scale"]
    assert down.shape == (64, 1)  # its 256 inputs: one group too
    (group,) = r["quantization_config"]["config_groups"].values()
    assert group["weights"]["strategy"] == "channel" and group["weights"].get("group_size") is None
    # the loaded model's linear computes the per-row rounding of the float weight
    net = compile(out / "model.arch", weights=out / "weights.safetensors")
    floats = compile(spec, weights=w, passes=[])
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    layer = floats.get_submodule(up)
    want = x.float() @ rtn(layer.weight, "int4_weight", None).dequantize().T + layer.bias
    with torch.no_grad():
        got = net.get_submodule(up)(x).float()
    torch.testing.assert_close(got, want, atol=0.05, rtol=0.02)
    # and a per-row grid is coarser than one of 32 inputs: it rounds the weights worse
    per_row = rtn(layer.weight, "int4_weight", None).dequantize()
    grouped = rtn(layer.weight, "int4_weight", 32).dequantize()
    assert (per_row - layer.weight).norm() > (grouped - layer.weight).norm()


def test_per_channel_int4_keeps_widths_the_kernels_cannot_group_in_float(tmp_path, capsys):
    spec = spec_file(tmp_path, LLAMA.replace("mlp(128", "mlp(112"))  # down reads 112 features
    w = weights(tmp_path, spec)
    out = tmp_path / "out"
    assert main(["compress", str(spec), "--weights", str(w), "-o", str(out),
                 "--pass", "quantize(int4_weight, group_size=channel)"]) == 0
    printed = capsys.readouterr().out
    assert "kept in float: width 112 is not a multiple of 32 (the int4 kernels' smallest group)" in printed
    r = json.loads((out / "report.json").read_text())
    assert sorted(r["kept_float"]) == ["decoder.layers.0.mlp.down", "decoder.layers.1.mlp.down"]
    header, _ = read_header(out / "weights.safetensors")
    assert header["decoder.layers.0.mlp.up.weight_scale"].shape == (112, 1)
    assert main(["compress", str(spec), "--weights", str(w), "-o", str(tmp_path / "strict"),
                 "--pass", "quantize(int4_weight, group_size=channel, strict=true)"]) != 0
    err = capsys.readouterr().err
    assert "112 input features, not a multiple of 32: the int4 kernels run a row as groups of 32 to 256" in err


@pytest.mark.parametrize("group", ["32", "channel"])
def test_low_rank_after_int4_keeps_factors_too_narrow_for_the_kernels_in_float(gpt, tmp_path, group):
    """Factoring an int4 linear at rank 16 gives a B factor 16 inputs wide, which no
    int4 group fits: it stays float and the report says so (it was an internal
    error, or a refusal of the quantize pass, before)."""
    spec, w = gpt
    out = tmp_path / "out"
    r = compress(spec, w, out, passes=[f"quantize(int4_weight, group_size={group})", "low_rank(16)"]).report
    low = next(p for p in r["passes"] if p["pass"].startswith("low_rank"))
    assert "kept in float: int4: width 16 is not a multiple of 32" in low["report"]
    header, _ = read_header(out / "weights.safetensors")
    assert header["decoder.h.0.mlp.up.b.weight"].torch_dtype == "float32"   # [256, 16]
    assert "decoder.h.0.mlp.up.a.weight_packed" in header                  # [16, 64]: int4


def test_structured_pruning_after_int4_keeps_layers_too_narrow_for_the_kernels_in_float(gpt, tmp_path):
    """quantize(int4) then prune(structured) shrinks the MLP to 179 neurons: up's
    179 outputs and down's 179 inputs no int4 kernel holds.  They ran in float, but
    the marks stayed, so `strata summary` counted them as int4 and the report
    listed none of them."""
    spec, w = gpt
    out = tmp_path / "out"
    passes = ["quantize(int4_weight, group_size=32)", 'prune(0.3, method=structured, on="mlp")']
    r = compress(spec, w, out, passes=passes).report
    prune = next(p for p in r["passes"] if p["pass"].startswith("prune"))
    assert "4 linears kept in float: int4: 179 outputs is not a multiple of 16, int4: width 179" \
        in prune["report"]
    assert set(r["kept_float"]) == {f"decoder.h.{i}.mlp.{n}" for i in (0, 1) for n in ("up", "down")}
    g = apply_passes(build_file(spec_file(tmp_path, GPT + "passes {\n" + "\n".join(passes) + "\n}\n")))
    assert not g.nodes["decoder.h.0.mlp.up"].attrs.get("quant")
    assert analyze(g)["memory"]["weights_bytes"] == tensor_bytes(out / "weights.safetensors")


@pytest.mark.parametrize("scheme", ["int8_dynamic", "int8_weight", "int4_weight, group_size=32"])
def test_a_scale_holding_nan_or_infinity_is_refused(gpt, tmp_path, scheme):
    """A packed file whose weight_scale holds NaN or infinity loaded silently (the model's
    outputs NaN); it is one WeightsError naming the tensor, for the linears the spec runs
    quantized and for one it runs in float alike."""
    from safetensors.torch import load_file, save_file

    spec, w = gpt
    out = tmp_path / "out"
    compress(spec, w, out, passes=[f"quantize({scheme})"])
    clean = load_file(str(out / "weights.safetensors"))
    name = "decoder.h.0.attn.q.weight_scale"
    for bad in (float("nan"), float("inf")):
        tensors = dict(clean)
        tensors[name] = clean[name].clone()
        tensors[name][1, 0] = bad
        save_file(tensors, str(out / "weights.safetensors"), metadata={"format": "pt"})
        with pytest.raises(WeightsError, match=rf"{name} holds NaN or infinity"):
            compile(out / "model.arch", weights=out / "weights.safetensors")
        with pytest.raises(WeightsError, match=rf"{name} holds NaN or infinity"):
            compile(spec, weights=out / "weights.safetensors")  # the spec runs q in float
