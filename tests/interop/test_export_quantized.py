"""`strata export --to hf` of a quantized `strata compress` output: a Llama's
int8 / int4 linears go out in the compressed-tensors form, transformers loads
the folder (with compressed-tensors) and its logits are strata's within the
scheme's tolerance; what has no place for the integers is refused whole."""

from __future__ import annotations

import json

import pytest

from strata import api
from strata.cli import main
from tests.optional import require

torch = require("torch")
transformers = require("transformers")
require("compressed_tensors")

IDS = torch.randint(3, 100, (2, 10), generator=torch.Generator().manual_seed(0))


def _logits(model, hf=False):
    with torch.no_grad():
        return model(IDS).logits if hf else model(IDS)


@pytest.mark.parametrize("passes, fmt", [
    (["quantize(int8_weight)"], "pack-quantized"),
    (["quantize(int8_dynamic)"], "int-quantized"),
    (["quantize(int8_static)"], "int-quantized"),
    (["quantize(int4_weight, group_size=32)"], "pack-quantized"),
    (["quantize(int4_weight, group_size=channel)"], "pack-quantized"),
    (['quantize(int8_dynamic, on="attention")', 'quantize(int8_weight, on="mlp")'], "mixed-precision"),
])
def test_quantized_llama_loads_in_transformers(passes, fmt, imported, tmp_path):
    arch, weights, _ = imported("llama_gqa")
    calib = torch.randint(3, 100, (4, 16), generator=torch.Generator().manual_seed(1))  # int8_static's scales
    api.compress(arch, tmp_path / "c", weights=weights, passes=passes,
                 calibration=calib if "int8_static" in passes[0] else None)
    out = api.export(tmp_path / "c", tmp_path / "hf")
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert q["quant_method"] == "compressed-tensors" and q["format"] == fmt
    targets = [t for g in q["config_groups"].values() for t in g["targets"]]
    assert "model.layers.0.self_attn.q_proj" in targets or "model.layers.0.mlp.up_proj" in targets
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    got = _logits(hf, hf=True)
    ours = _logits(api.compile(tmp_path / "c").eval())           # strata's kernels
    floats = _logits(api.compile(arch, weights=weights).eval())  # before quantizing
    error = (ours - floats).abs().max().item()                   # what the scheme costs
    diff = (got - ours).abs().max().item()
    if passes == ["quantize(int8_weight)"]:  # the same integers, dequantized: float rounding only
        assert diff < 1e-4
    elif "int8_dynamic" in passes[0]:  # activations: strata's CPU kernel rounds per tensor, c-t per token
        assert diff < error
    elif "int8_static" in passes[0]:  # the same integers and activation scales: float rounding only
        assert diff < 0.05 * error
    else:  # int4: compressed-tensors dequantizes in the scale's bf16, strata's kernel runs in bf16
        assert diff < 0.1 * error


def test_fused_family_linear_is_refused(imported, tmp_path, capsys):
    """GPT-2 keeps q, k, v in one transposed Conv1D (c_attn): no module of its own."""
    arch, weights, _ = imported("gpt2")
    api.compress(arch, tmp_path / "c", weights=weights, passes=['quantize(int8_weight, on="attention")'])
    capsys.readouterr()  # the fixture's own progress lines
    code = main(["export", str(tmp_path / "c"), "-o", str(tmp_path / "hf")])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1 and "c_attn" in err and "Traceback" not in err
    assert not (tmp_path / "hf").exists()


def test_int4_among_other_schemes_is_refused(imported, tmp_path, capsys):
    """transformers 5.25 loads an asymmetric int4 group only when it is the model's one scheme."""
    arch, weights, _ = imported("llama_gqa")
    api.compress(arch, tmp_path / "c", weights=weights,
                 passes=['quantize(int8_dynamic, on="attention")', 'quantize(int4_weight, group_size=32, on="mlp")'])
    capsys.readouterr()  # the fixture's own progress lines
    code = main(["export", str(tmp_path / "c"), "-o", str(tmp_path / "hf")])
    err = capsys.readouterr().err
    assert code != 0 and "int4_weight beside other schemes" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("scheme", ["int8_weight", "int4_weight, group_size=32"])
def test_quantized_custom_code(scheme, tmp_path):
    """A spec no family has (fused q/k/v, ALiBi, a parallel block): the module
    without its quantize pass as custom code, the fused qkv's integers under
    `model.`; transformers loads it (trust_remote_code) and generates."""
    from tests.interop.test_export_code import CUSTOM
    from tests.train.helpers import write

    spec = write(tmp_path / "m.arch", CUSTOM)
    torch.manual_seed(0)
    net = api.compile(spec).eval()
    api.save_weights(net, tmp_path / "w.safetensors")
    api.compress(spec, tmp_path / "c", weights=tmp_path / "w.safetensors", passes=[f"quantize({scheme})"])
    out = api.export(tmp_path / "c", tmp_path / "hf")
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert "model.decoder.h.0.attn.qkv" in q["config_groups"]["group_0"]["targets"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    ids = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, ours, floats = hf(ids).logits, api.compile(tmp_path / "c").eval()(ids), net(ids)
    diff, error = (got - ours).abs().max().item(), (ours - floats).abs().max().item()
    assert diff < (1e-4 if scheme == "int8_weight" else 0.1 * error)
    assert hf.generate(ids[:1], max_new_tokens=4, do_sample=False).shape == (1, 14)


def test_onnx_of_a_quantized_output_is_refused(imported, tmp_path, capsys):
    arch, weights, _ = imported("llama_gqa")
    api.compress(arch, tmp_path / "c", weights=weights, passes=["quantize(int8_weight)"])
    capsys.readouterr()
    code = main(["export", str(tmp_path / "c"), "--to", "onnx", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1 and "ONNX Runtime takes the float model" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("passes", [["prune(0.5)"], ["prune(0.5)", 'quantize(int8_weight, on="attention")']])
def test_a_sparse_stored_llama_exports_dense_and_loads_in_transformers(passes, imported, tmp_path):
    """A pruned compress output (its linears in the sparse-bitmask layout, its spec
    holding prune(0.5)) once went out as custom code (`passes { prune }: no family
    config expresses them`); its masks change no name, so it is the family's folder,
    the zeros written dense, and transformers computes strata's logits."""
    arch, weights, _ = imported("llama_gqa")
    api.compress(arch, tmp_path / "c", weights=weights, passes=passes)
    out = api.export(tmp_path / "c", tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert "auto_map" not in config and ("quantization_config" in config) == (len(passes) > 1)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert float(hf.model.layers[0].mlp.up_proj.weight.eq(0).float().mean()) == 0.5
    diff = (_logits(hf, hf=True) - _logits(api.compile(tmp_path / "c").eval())).abs().max().item()
    assert diff < 1e-4
