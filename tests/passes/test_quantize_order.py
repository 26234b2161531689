"""A quantize among other passes (strata/passes/__init__.py apply_passes, the
quantize pass's claims / conflict): a pass after a quantize that chose from
calibration data may not rewrite the linears it chose for, two quantize passes
may not select the same linears, and a round-to-nearest quantize, which rounds
once the weights are loaded, lets later passes rewrite its linears as before."""

from __future__ import annotations

import pytest

from tests.passes.helpers import LLAMA, ids, spec_file, torch

from strata.api import compile
from strata.compiler import build_file, build_text
from strata.errors import SpecError
from strata.passes import apply_passes


def _spec(tmp_path, *passes: str):
    """LLAMA with `passes` in its own passes section: the first on line 20."""
    return spec_file(tmp_path, LLAMA + "passes {\n" + "".join(f"  {p}\n" for p in passes) + "}\n", "p.arch")


LATER = ["fuse_qkv", "fuse_mlp", "low_rank(8)", 'prune(0.5, on="mlp")', 'prune(0.25, method=structured, on="mlp")']


@pytest.mark.parametrize("later", LATER)
def test_a_pass_rewriting_int8_static_linears_after_it_is_a_located_error(llama, tmp_path, later):
    """It dropped the integers and with them the activation scales: the model was
    refused at run time ("decoder.layers.0.attn.qkv has no activation scale")."""
    _, w = llama
    spec = _spec(tmp_path, "quantize(int8_static)", later)
    with pytest.raises(SpecError) as e:
        compile(spec, weights=w, calibration=ids(96, rows=4, length=16))
    text = str(e.value)
    assert text.startswith(f"{spec}:21:3: error: {later}: it rewrites decoder.layers.0."), text
    assert ("whose int8 weights and activation scales (input_scale) quantize(int8_static) at line 20 chose "
            "from calibration data: a rewrite after the quantize loses them (the model could not run") in text
    assert f"hint: put quantize last: list {later} before quantize(int8_static)" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("later", LATER)
def test_the_same_pass_before_int8_static_runs(llama, later):
    spec, w = llama
    calib = ids(96, rows=4, length=16)
    net = compile(spec, weights=w, calibration=calib, passes=[later, "quantize(int8_static)"]).eval()
    assert net.quantization[0].startswith("int8_static:")
    with torch.no_grad():
        assert torch.isfinite(net(ids(96))).all()


def test_a_later_pass_on_other_linears_is_accepted(llama):
    spec, w = llama
    net = compile(spec, weights=w, calibration=ids(96, rows=4, length=16),
                  passes=['quantize(int8_static, on="attention")', 'prune(0.5, on="mlp")', "fuse_mlp"]).eval()
    assert net.quantization == ["int8_static: 8 linears on int8 x int8 torch._int_mm (static per-tensor int8 "
                                "activations, per-row int8 weights)"]
    with torch.no_grad():
        assert torch.isfinite(net(ids(96))).all()


@pytest.mark.parametrize("first, chose", [
    ("quantize(int4_weight, group_size=32, method=gptq)", "integers quantize(int4_weight, group_size=32, "
                                                          "method=gptq) at line 20 chose by GPTQ"),
    ("quantize(int4_weight, group_size=32, method=awq)", "scaled and clipped weights quantize(int4_weight, "
                                                         "group_size=32, method=awq) at line 20 chose by AWQ"),
    ("quantize(int8_dynamic, smooth=0.5)", "smoothing scales quantize(int8_dynamic, smooth=0.5) at line 20 "
                                           "chose by SmoothQuant"),
    ("quantize(int8_static, smooth=0.5)", "int8 weights and activation scales (input_scale)"),
])
def test_every_calibrated_method_is_refused_alike_without_weights(tmp_path, first, chose):
    """No weights are needed to see it: `strata summary` and `diagram` say it."""
    spec = _spec(tmp_path, first, "fuse_qkv")
    with pytest.raises(SpecError) as e:
        apply_passes(build_file(spec))
    assert str(e.value).startswith(f"{spec}:21:3: error: fuse_qkv: it rewrites decoder.layers.0.attn.q, "
                                   "decoder.layers.0.attn.k, decoder.layers.0.attn.v and 3 more (6 linears), whose ")
    assert chose in str(e.value) and "hint: put quantize last: list fuse_qkv before quantize(" in str(e.value)


def test_round_to_nearest_rounds_after_every_pass_so_later_rewrites_stay_accepted():
    g = apply_passes(build_text(LLAMA + 'passes { quantize(int4_weight, group_size=32); fuse_qkv; low_rank(8, on="mlp");'
                                ' prune(0.3, method=structured, on="attention") }'))
    assert g.nodes["decoder.layers.0.attn.qkv"].attrs["quant_scheme"] == "int4_weight"


def test_auto_is_refused_alike(llama):
    """quantize(auto) chose each linear's scheme by its sensitivity where it stands."""
    spec, w = llama
    with pytest.raises(SpecError) as e:
        compile(spec, weights=w, calibration=ids(96, rows=2, length=16),
                passes=["quantize(auto, bits=6, group_size=32)", 'low_rank(8, on="mlp")'])
    assert "whose schemes quantize(auto, group_size=32, bits=6.0) chose by their sensitivity" in str(e.value)


def test_a_later_quantize_folding_its_scales_into_int8_static_linears_is_refused(llama):
    """SmoothQuant on down folds 1/s into up's rows: up's int8_static integers and
    scale no longer stood for it, were dropped, and the model could not run."""
    spec, w = llama
    passes = ['quantize(int8_static, on="decoder.*.*.mlp.up")',
              'quantize(int8_dynamic, smooth=0.5, on="decoder.*.*.mlp.down")']
    with pytest.raises(SpecError) as e:
        compile(spec, weights=w, calibration=ids(96, rows=4, length=16), passes=passes)
    assert str(e.value).startswith("<passes[1]>:1:1: error: quantize(int8_dynamic, ")
    assert ("it changes the weights of decoder.layers.0.mlp.up, decoder.layers.1.mlp.up, whose integers and "
            "activation scales an earlier quantize chose from calibration data") in str(e.value)
    net = compile(spec, weights=w, calibration=ids(96, rows=4, length=16), passes=passes[::-1]).eval()
    assert len(net.quantization) == 2


# ---------------------------------------------------------------- two quantize passes

def test_two_quantize_passes_on_the_same_linears_are_a_located_error(tmp_path):
    """The second overrode the first's marks on the linears it could hold and left
    the first's on the others, silently."""
    spec = _spec(tmp_path, "quantize(int8_dynamic)", 'quantize(int4_weight, on="mlp")')
    with pytest.raises(SpecError) as e:
        apply_passes(build_file(spec))
    text = str(e.value)
    assert text.startswith(f'{spec}:21:3: error: quantize(int4_weight, on="mlp"): decoder.layers.0.mlp.gate, '
                           "decoder.layers.0.mlp.up, decoder.layers.0.mlp.down and 3 more (6 linears) are "
                           "already quantized by quantize(int8_dynamic) at line 20; a linear runs one scheme"), text
    assert "hint: use on= to give each quantize its own layers" in text


def test_the_same_linears_after_a_fusion_are_named_by_their_new_name(tmp_path):
    spec = _spec(tmp_path, "quantize(int8_dynamic)", "fuse_qkv", 'quantize(int8_weight, on="attention")')
    with pytest.raises(SpecError) as e:
        apply_passes(build_file(spec))
    assert "decoder.layers.0.attn.qkv" in str(e.value) and "at line 20" in str(e.value)


def test_disjoint_selections_are_accepted(llama):
    spec, w = llama
    net = compile(spec, weights=w, passes=['quantize(int8_dynamic, on="attention")',
                                           'quantize(int4_weight, on="mlp", group_size=64)'])
    assert [k.split(":")[0] for k in net.quantization] == ["int8_dynamic", "int4_weight"]
    g = net.strata_graph
    assert g.nodes["decoder.layers.0.attn.q"].attrs["quant_scheme"] == "int8_dynamic"
    assert g.nodes["decoder.layers.0.mlp.up"].attrs["quant_scheme"] == "int4_weight"


def test_a_second_scheme_for_the_linears_int4_kept_in_float_is_accepted(tmp_path):
    """int4 with group 128 keeps gate and up (64 wide) in float: int8 may take them."""
    g = apply_passes(build_text(LLAMA + 'passes { quantize(int4_weight); quantize(int8_weight, on="decoder.*.*.mlp.up") }'))
    assert g.nodes["decoder.layers.0.mlp.up"].attrs["quant_scheme"] == "int8_weight"
    assert g.nodes["decoder.layers.0.mlp.down"].attrs["quant_scheme"] == "int4_weight"


def test_lora_then_quantize_in_a_spec_says_how_to_get_both(tmp_path):
    """The refusal's hint named a Python function (...adapters.merge_lora) and 'quantize
    before adding adapters', which lora refuses too; a spec cannot merge its adapters:
    train with lora, then strata compress (it merges them first)."""
    with pytest.raises(SpecError) as e:
        build_file(_spec(tmp_path, "lora(4)", "quantize(int8_weight)"), run_passes=True)
    d = e.value.diagnostics[0]
    assert (d.span.line, d.message) == (21, "quantize(int8_weight): 'decoder.layers.0.attn.q' carries LoRA adapters")
    assert d.hint == ("lora and quantize do not share a spec's passes: train with lora, then quantize the run's "
                      "weights with strata compress, which merges the adapters first")
    # the other order said 'list lora before quantize', which the quantize then refused (above)
    with pytest.raises(SpecError) as e:
        build_file(_spec(tmp_path, "quantize(int8_weight)", "lora(4)"), run_passes=True)
    d = e.value.diagnostics[0]
    assert (d.span.line, d.message) == (21, "lora(4): 'decoder.layers.0.attn.q' is quantized")
    assert d.hint.startswith("lora and quantize do not share a spec's passes")
