"""quantize: the compiled linears really run quantized kernels, the logits stay
close, the summary's bytes are the compiled model's, and what cannot run on
this device says so in one line."""

from __future__ import annotations

import pytest

from tests.optional import require
from tests.passes.helpers import LLAMA, ids, logits, spec_file, sqnr, torch

require("torchao")

from strata.api import compile, generate_source, load_weights, save_weights  # noqa: E402
from strata.backends.torch.weights_file import WeightsError  # noqa: E402
from strata.compiler import build_file, build_text  # noqa: E402
from strata.compiler.cost import weight_bytes  # noqa: E402
from strata.errors import SpecError, UsageError  # noqa: E402
from strata.passes import apply_passes  # noqa: E402
from strata.passes.text import parse_pass_texts  # noqa: E402


def _with_groups(scheme: str, on: str | None = None) -> str:
    """quantize(scheme), int4 in groups of 32 (the int8 schemes take no group_size)."""
    return (f"quantize({scheme}" + (", group_size=32" if scheme == "int4_weight" else "")
            + (f', on="{on}"' if on else "") + ")")


def _linears(net, kind):
    return [n for n, m in net.named_modules() if type(m).__name__ == kind]


def test_int8_dynamic_runs_int8_kernels_within_30_db(llama):
    spec, w = llama
    x = ids(96)
    ref, _ = logits(spec, w, x, passes=[])
    got, net = logits(spec, w, x, passes=['quantize(int8_dynamic, on="decoder.layers.*")'])
    assert sqnr(ref, got) >= 30
    on_cpu = _linears(net, "Linear")  # torch.ao's DynamicQuantizedLinear is `Linear` in torch.ao.nn
    quantized = [n for n in on_cpu if "quantized" in type(net.get_submodule(n)).__module__]
    assert len(quantized) == 2 * 7  # q, k, v, o, gate, up, down of both layers
    assert type(net.decoder.lm_head) is torch.nn.Linear  # not selected
    assert any("int8_dynamic: 14 linears on" in r for r in net.strata_report)


@pytest.mark.parametrize("scheme, floor", [("int8_weight", 30), ("int4_weight", 17)])
def test_weight_only_schemes(llama, scheme, floor):
    spec, w = llama
    x = ids(96)
    ref, _ = logits(spec, w, x, passes=[])
    got, net = logits(spec, w, x, passes=[_with_groups(scheme)])
    assert sqnr(ref, got) >= floor
    weight = net.get_submodule("decoder.layers.0.mlp.down").weight
    assert type(weight).__name__ in ("Int8Tensor", "Int4OpaqueTensor")
    assert got.dtype == torch.float32  # int4 runs bf16 inside the layer, the model stays float


@pytest.mark.parametrize("scheme", ["int8_weight", "int4_weight"])
def test_summary_bytes_are_the_compiled_models(llama, scheme, tmp_path):
    """cost.weight_bytes counts the compressed-tensors layout: the tensors save_weights
    stores; int8 holds as many bytes in memory but for its shape (int4's kernel tiles its scales)."""
    from strata.safetensors_file import tensor_bytes

    spec, w = llama
    p = _with_groups(scheme)
    net = compile(spec, passes=[p], weights=w)
    total = 0
    for t in list(net.parameters()) + list(net.buffers()):
        if hasattr(t, "__tensor_flatten__"):
            names, _ = t.__tensor_flatten__()
            total += sum(getattr(t, n).numel() * getattr(t, n).element_size() for n in names
                         if getattr(t, n) is not None)
        else:
            total += t.numel() * t.element_size()
    save_weights(net, tmp_path / "q.safetensors")
    assert weight_bytes(net.strata_graph) == tensor_bytes(tmp_path / "q.safetensors")
    if scheme == "int8_weight":  # the file adds each linear's int64 [2] shape (pack-quantized)
        linears = sum(1 for _, d in net.strata_graph.nodes(data=True) if d["attrs"].get("quant_scheme"))
        assert weight_bytes(net.strata_graph) == total + 16 * linears
    assert total < 0.4 * weight_bytes(build_file(spec))


def test_generated_file_quantizes_after_loading(llama):
    spec, _ = llama
    src = generate_source(spec, passes=['quantize(int8_dynamic, on="mlp")'])
    assert 'QUANTIZE = {' in src and '"decoder.layers.*.mlp.gate": dict(scheme="int8_dynamic"),' in src
    assert src.index("def build(") < src.index("def quantize(model, torch_compile=False, packed=None):")
    assert "return quantize_linears(model, QUANTIZE, torch_compile, packed)" in src
    assert "import torchao" in src  # inside the helper: the file imports without it


def test_fp8_is_refused_on_cpu_with_the_alternative(llama):
    spec, w = llama
    with pytest.raises(UsageError, match=r"fp8 quantization needs a CUDA GPU of compute capability >= 8.9.*"
                                         r"use int8_dynamic or int8_weight"):
        compile(spec, passes=["quantize(fp8)"], weights=w)


def test_int4_layers_that_do_not_fit_stay_float_unless_strict(tmp_path):
    """A linear whose width is not a multiple of the group size is kept in float and
    listed (llm-compressor's `ignore`); strict=true refuses as before, and so does a
    selection in which no layer fits."""
    from strata.passes import report
    from strata.passes.text import parse_pass_texts

    spec = spec_file(tmp_path, LLAMA.replace("mlp(128,", "mlp(96,"))

    def run(text):
        g = build_file(spec)
        g.graph["passes"] = parse_pass_texts([text], g)
        return apply_passes(g)

    g = run('quantize(int4_weight, group_size=64, on="mlp")')
    rec = g.graph["applied"][0]["record"]
    assert set(rec["kept_float"]) == {"decoder.layers.0.mlp.down", "decoder.layers.1.mlp.down"}
    assert not set(rec["kept_float"]) & set(rec["linears"]) and rec["linears"]
    assert "2 linears kept in float: width 96 is not a multiple of 64" in report(g)[0]
    assert "quant" not in g.nodes["decoder.layers.0.mlp.down"]["attrs"]
    assert g.nodes["decoder.layers.0.mlp.up"]["attrs"]["quant"] == "int4"
    with pytest.raises(SpecError, match="'decoder.layers.0.mlp.down' has 96 input features, not a "
                                        "multiple of group_size=64; group_size=32 fits"):
        run('quantize(int4_weight, group_size=64, on="mlp", strict=true)')
    with pytest.raises(SpecError, match="no selected layer fits"):
        run('quantize(int4_weight, group_size=64, on="decoder.layers.*.mlp.down")')
    got, net = logits(spec, None, ids(96), passes=['quantize(int4_weight, group_size=64, on="mlp")'])
    assert torch.isfinite(got).all()
    assert type(net.get_submodule("decoder.layers.0.mlp.down")) is torch.nn.Linear


def test_a_quantized_model_saves_its_integers_and_refuses_loading(llama, tmp_path):
    spec, w = llama
    x = ids(96)
    got, net = logits(spec, w, x, passes=["quantize(int8_weight)"])
    save_weights(net, tmp_path / "q.safetensors")  # its integers; a float spec reads what they stand for
    plain, _ = logits(spec, tmp_path / "q.safetensors", x, passes=[])
    assert sqnr(got, plain) > 60
    again, _ = logits(spec, tmp_path / "q.safetensors", x, passes=["quantize(int8_weight)"])
    assert torch.equal(got, again)  # the same integers in the same kernels
    with pytest.raises(WeightsError, match="this model is quantized"):
        load_weights(net, w)


def test_an_int4_model_saves_the_weights_it_computes_with(llama, tmp_path):
    """The int4 integers are read back off the CPU kernel (strata/backends/torch/packed.py);
    a spec without the pass reads the float weights they stand for."""
    spec, _ = llama
    w = tmp_path / "w.safetensors"
    x = ids(96)
    got, net = logits(spec, None, x, passes=["quantize(int4_weight, group_size=32)"])
    save_weights(net, w)
    plain, _ = logits(spec, w, x, passes=[])
    assert sqnr(got, plain) > 40


def test_the_seed_spec_is_int8_when_compiled():
    """specs/transformer_seed.arch says int8: its compiled attention and MLP linears are."""
    net = compile("specs/transformer_seed.arch")
    q = [n for n, m in net.named_modules() if type(m).__module__.endswith("quantized.dynamic.modules.linear")]
    linears = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(q) == 48 and all(n.endswith("lm_head") for n in linears if n not in q)
    src = torch.randint(0, 100, (1, 7))
    assert net(src, src).shape[:2] == (1, 7)


def test_generated_file_quantizes_without_strata(llama, tmp_path):
    """The written file builds, quantizes (torch.ao on CPU: torch alone) and runs
    where strata is not installed."""
    import subprocess
    import sys

    from strata.cli import main

    spec, _ = llama
    out = tmp_path / "model.py"
    assert main(["compile", str(spec), "--pass", 'quantize(int8_dynamic, on="mlp")', "-o", str(out)]) == 0
    script = ("import sys\nsys.modules['strata'] = None\nimport torch, model\n"
              "m = model.quantize(model.build().eval())\n"
              "assert m(torch.zeros(1, 5, dtype=torch.long)).shape == (1, 5, 96)\n"
              "print(m.quantization[0])\n")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); exec({script!r})"
    r = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("int8_dynamic: 6 linears on torch.ao dynamic int8")


@pytest.mark.parametrize("scheme", ["int8_weight", "int4_weight"])
def test_a_quantized_lm_head_decodes_on_its_own_kernel(llama, scheme):
    """The column-major decoding layout is for float weights: a quantized head (a tensor
    subclass) decodes through its own kernel, and the cached decoding equals recomputation."""
    spec, w = llama
    _, net = logits(spec, w, ids(8), passes=[_with_groups(scheme, on="decoder.lm_head")])
    assert type(net.decoder.lm_head.weight).__name__ in ("Int8Tensor", "Int4OpaqueTensor")
    prompt = ids(8)[:1]
    with torch.no_grad():
        out = net.generate(prompt, 6)
        ref = prompt
        for _ in range(6):
            ref = torch.cat([ref, net(ref)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ref) and type(net.decoder.lm_head.weight).__name__ in ("Int8Tensor", "Int4OpaqueTensor")


@pytest.mark.parametrize("scheme", ["int8_dynamic", "int8_static", "int8_weight", "fp8"])
@pytest.mark.parametrize("group", ["64", "128", "channel"])
def test_group_size_with_a_scheme_without_groups_is_refused_at_the_option(tmp_path, scheme, group):
    """int8 keeps one scale per output row (fp8 one per tensor): group_size=64 was
    silently ignored.  The default written out (128) is refused too: it means nothing
    there either."""
    text = f"quantize({scheme}, group_size={group})"
    spec = spec_file(tmp_path, LLAMA + "passes {\n  " + text + "\n}\n")
    with pytest.raises(SpecError) as e:
        build_file(spec)
    col = text.index("group_size=") + len("group_size=") + 3
    msg = str(e.value)
    assert msg.startswith(f"{spec}:20:{col}: error: option 'group_size' of 'quantize' applies to "
                          f"int4_weight and auto, not {scheme} ("), msg
    assert "hint: " in msg and "drop group_size" in msg
    # the same in a --pass (strata compile --pass, compile(..., passes=[...]))
    with pytest.raises(SpecError) as e:
        parse_pass_texts([text], build_text(LLAMA))
    assert str(e.value).startswith(f"--pass:1:{col - 2}: error: option 'group_size'")


def test_group_size_in_yaml_is_refused_at_the_option(tmp_path):
    import strata

    spec = spec_file(tmp_path, LLAMA + "passes {\n  quantize(int8_weight, group_size=32)\n}\n")
    yaml = tmp_path / "m.yaml"
    yaml.write_text(strata.convert(str(spec), to="yaml"))
    with pytest.raises(SpecError) as e:
        build_file(yaml)
    assert str(e.value).startswith(f"{yaml}:") and "option 'group_size' of 'quantize' applies to" in str(e.value)


def test_group_size_stays_for_int4_and_auto_and_dumped_int8_options_load():
    from strata.passes import make_pass

    g = apply_passes(build_text(LLAMA + "passes { quantize(int4_weight, group_size=64) }"))
    assert g.nodes["decoder.layers.0.mlp.down"].attrs["group_size"] == 64
    assert make_pass("quantize", {"scheme": "auto", "bits": 5, "group_size": 32}).o.group_size == 32
    # a pass rebuilt from its recorded options (group_size=128 in the dump) loads as before
    o = make_pass("quantize", {"scheme": "int8_weight"}).o
    assert make_pass("quantize", o.model_dump()).o == o
    with pytest.raises(ValueError, match="applies to int4_weight and auto, not int8_weight"):
        make_pass("quantize", {"scheme": "int8_weight", "group_size": 32})
