"""quantize(int8_static): int8 weights per row and int8 activations with one
static scale a layer, chosen from calibration data (SmoothQuant's W8A8
static); stored in the compressed-tensors tensor strategy (dynamic false)."""

from __future__ import annotations

import pytest

from tests.passes.helpers import GPT, LLAMA, ids, spec_file, sqnr, torch, weights

from strata.api import compile
from strata.backends.torch.packed import quantized_weight
from strata.backends.torch.weights_file import WeightsError
from strata.backends.torch.workflows.compress import compress
from strata.errors import SpecError


def _float_inputs(spec, w, calib, name):
    """The rows linear `name` of the float model reads on `calib` [n, in]."""
    net = compile(spec, passes=[], weights=w).eval()
    seen = []
    net.get_submodule(name).register_forward_hook(lambda m, a, o: seen.append(a[0].reshape(-1, a[0].shape[-1])))
    with torch.no_grad():
        net(calib)
    return torch.cat(seen)


def test_each_linear_runs_on_its_inputs_rounded_on_one_calibrated_scale(llama):
    """The scale is max |x| / 127.5 over the calibration inputs the linear read;
    the kernel computes round(x / s) · q^T · s · w_scale exactly as written here."""
    spec, w = llama
    calib = ids(96, rows=8, length=32)
    m = compile(spec, passes=["quantize(int8_static)"], weights=w, calibration=calib).eval()
    assert m.quantization == ["int8_static: 15 linears on int8 x int8 torch._int_mm (static per-tensor int8 "
                              "activations, per-row int8 weights)"]
    name = "decoder.layers.1.mlp.down"
    x = _float_inputs(spec, w, calib, name)
    qw = quantized_weight(m.get_submodule(name), None)
    s = float(qw.input_scale)
    assert s == pytest.approx(float(x.abs().max()) / 127.5, rel=1e-6)
    # the reference arithmetic on rows it has not seen, some past the calibrated range (clamped)
    rows = torch.randn(5, 3, x.shape[1]) * x.abs().max() / 2
    xq = (rows / s).round().clamp(-128, 127)
    want = (xq.double() @ qw.q.double().T) * s * qw.scale.double().T
    with torch.no_grad():
        got = m.get_submodule(name)(rows)
    assert got.shape == (5, 3, qw.q.shape[0])
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)
    rec = m.strata_graph.graph["applied"][-1]["record"]
    assert rec["input_scale"][name] == pytest.approx(s, rel=1e-5)


def test_the_torchao_kernel_computes_what_the_cpu_one_does(llama):
    """Elsewhere than the CPU in eager mode (and for torch.compile) int8_static runs
    on torchao's Int8Tensor with its static scale: the same integers and rounding."""
    spec, w = llama
    calib = ids(96, rows=8, length=32)
    x = ids(96, rows=2, length=16, seed=4)
    with torch.no_grad():
        ours = compile(spec, passes=["quantize(int8_static)"], weights=w, calibration=calib).eval()(x)
        ao = compile(spec, passes=["quantize(int8_static)"], weights=w, calibration=calib,
                     quantize="torch_compile").eval()
        assert "torchao Int8Tensor" in ao.quantization[0]
        torch.testing.assert_close(ao(x), ours, rtol=1e-4, atol=1e-4)


def test_static_scales_are_close_to_the_float_model_and_smoothing_helps(llama):
    spec, w = llama
    calib = ids(96, rows=8, length=32)
    x = ids(96, rows=4, length=32, seed=5)
    with torch.no_grad():
        ref = compile(spec, passes=[], weights=w).eval()(x)
        plain = compile(spec, passes=["quantize(int8_static)"], weights=w, calibration=calib).eval()(x)
        smooth = compile(spec, passes=["quantize(int8_static, smooth=0.5)"], weights=w,
                         calibration=calib).eval()(x)
    assert sqnr(ref, plain) > 20
    assert sqnr(ref, smooth) > sqnr(ref, plain)


def test_without_calibration_it_is_a_located_error(llama, tmp_path):
    spec, w = llama
    with pytest.raises(SpecError, match="reads activations: give calibration data"):
        compile(spec, passes=["quantize(int8_static)"], weights=w)
    text = LLAMA + "passes {\n  quantize(int8_static)\n}\n"
    with pytest.raises(SpecError) as e:
        compile(spec_file(tmp_path, text), weights=w)
    assert "m.arch:" in str(e.value) and "--calibration" in str(e.value)


def test_the_file_holds_each_activation_scale_in_the_tensor_strategy(tmp_path):
    spec = spec_file(tmp_path, GPT)
    w = weights(tmp_path, spec)
    out = tmp_path / "out"
    r = compress(spec, w, out, passes=["quantize(int8_static)"], calibration=ids(80, rows=4, length=32)).report
    (group,) = r["quantization_config"]["config_groups"].values()
    assert group["input_activations"]["strategy"] == "tensor" and group["input_activations"]["dynamic"] is False
    assert group["format"] == "int-quantized"
    from safetensors.torch import load_file

    t = load_file(str(out / "weights.safetensors"))
    s = t["decoder.h.0.mlp.up.input_scale"]
    assert s.dtype == torch.float32 and s.shape == (1,) and float(s) > 0
    assert "int8_static" in (out / "model.arch").read_text()


@pytest.mark.parametrize("bad, why", [(float("nan"), "finite positive"), (0.0, "finite positive"),
                                      (-1.0, "finite positive"), (None, "is missing"), ("shape", "float32 \\[1\\]")])
def test_a_damaged_activation_scale_is_refused(tmp_path, bad, why):
    from safetensors.torch import load_file, save_file

    spec = spec_file(tmp_path, GPT)
    w = weights(tmp_path, spec)
    out = tmp_path / "out"
    compress(spec, w, out, passes=["quantize(int8_static)"], calibration=ids(80, rows=4, length=32))
    tensors = load_file(str(out / "weights.safetensors"))
    name = "decoder.h.1.attn.o.input_scale"
    if bad is None:
        del tensors[name]
    elif bad == "shape":
        tensors[name] = torch.ones(2)
    else:
        tensors[name] = torch.tensor([bad])
    save_file(tensors, str(out / "weights.safetensors"), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=rf"{name} .*{why}|{name} {why}"):
        compile(out / "model.arch", weights=out / "weights.safetensors")


def test_readers_of_one_smoothed_input_in_several_blocks_get_one_scale(tmp_path):
    """An encoder's output feeds every decoder block's cross-attention keys and
    values: they read the same smoothed x, so each gets the same activation scale
    (the later blocks' are measured after the smoothing, not divided by it again)."""
    from tests.backends.torch.test_stream import SEQ2SEQ
    from tests.passes.test_methods_compress import _pipeline

    spec = spec_file(tmp_path, SEQ2SEQ)
    w = weights(tmp_path, spec)
    g, _ = _pipeline(spec, w, ["quantize(int8_static, smooth=0.5)"], ids(64, rows=8, length=16))
    scales = g.graph["applied"][-1]["record"]["input_scale"]
    ks = [scales[f"decoder.layers.{i}.cross_attn.{p}"] for i in range(3) for p in "kv"]
    assert len(ks) == 6 and max(ks) == pytest.approx(min(ks), rel=1e-5), ks
