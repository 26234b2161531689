"""`strata check` reports what a spec's passes refuse once they run on its graph
(a pass after a calibrated quantize, two quantize passes on the same linears, a
pass on adapted or quantized linears): located, in the words `strata summary`
gives, and still without torch.  The real command, as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Llama-like, every width a multiple of 32 (int4 groups); its passes go on line 15.
SPEC = """\
model tiny {
  d = 64
  block layer {
    residual { rmsnorm; attention(4, kv_heads=2, causal=true, bias=false) }
    residual { rmsnorm; mlp(128, act=swiglu, bias=false) }
  }
  stack decoder(tokens) {
    embedding(96, d) as embed
    position(rotary)
    repeat(2) layer as layers
    rmsnorm as norm
    lm_head(96)
  }
}
"""


def _spec(tmp_path: Path, *passes: str, name: str = "p.arch") -> Path:
    p = tmp_path / name
    p.write_text(SPEC + "passes {\n" + "".join(f"  {x}\n" for x in passes) + "}\n")
    return p


def _strata(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "strata.cli", *argv], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


# (the passes, where the mistake is, how its message starts, its hint): tests/passes/test_quantize_order.py's
REFUSED = [
    (["quantize(int8_static)", "fuse_qkv"], "17:3", "fuse_qkv: it rewrites decoder.layers.0.attn.q, ",
     "put quantize last: list fuse_qkv before quantize(int8_static)"),
    (["quantize(int4_weight, group_size=32, method=gptq)", 'low_rank(8, on="mlp")'], "17:3",
     'low_rank(8, on="mlp"): it rewrites decoder.layers.0.mlp.gate, ', "put quantize last: "),
    (["quantize(int8_dynamic)", 'quantize(int4_weight, on="mlp")'], "17:3",
     'quantize(int4_weight, on="mlp"): decoder.layers.0.mlp.gate, ', "use on= to give each quantize its own"),
    (["quantize(int8_dynamic)", "lora(4)"], "17:3", "lora(4): 'decoder.layers.0.attn.q' is quantized",
     "lora and quantize do not share a spec's passes: train with lora, then quantize the run's weights"),
]


@pytest.mark.parametrize("passes, at, message, hint", REFUSED)
def test_what_the_passes_refuse_is_a_located_error_as_summary_gives_it(tmp_path, passes, at, message, hint):
    """check said 'ok' for these; summary, diagram, compile and compress refused them."""
    spec = _spec(tmp_path, *passes)
    checked, summary = _strata("check", str(spec)), _strata("summary", str(spec))
    assert (checked.returncode, summary.returncode) == (1, 1), checked.stdout
    assert checked.stdout == ""
    assert checked.stderr == summary.stderr  # the same words, line, caret and hint
    lines = checked.stderr.splitlines()
    assert lines[0].startswith(f"{spec}:{at}: error: {message}"), lines[0]
    assert lines[1] == f"   17 |   {passes[1]}" and lines[2] == "      |   ^" + "~" * (len(passes[1]) - 1)
    assert (f"hint: {hint}" in lines[3]) if hint else lines[3] == "1 error"
    assert "Traceback" not in checked.stderr


def test_passes_that_choose_from_the_weights_are_no_mistake(tmp_path):
    """low_rank(energy=) and quantize(auto) choose from weights a graph alone lacks:
    summary refuses them (compress runs them); check finds no mistake, as before."""
    for passes in (["low_rank(energy=0.9)", "fuse_qkv"], ["quantize(auto, bits=6, group_size=32)", "fuse_qkv"]):
        spec = _spec(tmp_path, *passes)
        checked = _strata("check", str(spec))
        assert checked.returncode == 0 and checked.stdout == f"{spec}: ok (tiny, 86,336 parameters)\n", checked
        assert _strata("summary", str(spec)).returncode == 1


def test_passes_run_only_on_a_spec_without_other_mistakes(tmp_path):
    """A pass run on a graph with a mistake in it would report what the mistake caused."""
    spec = _spec(tmp_path, "quantize(int8_static)", "fuse_qkv")
    spec.write_text(spec.read_text().replace("rmsnorm as norm", "rmsnrm as norm"))
    checked = _strata("check", str(spec))
    assert checked.returncode == 1 and "unknown component 'rmsnrm'" in checked.stderr
    assert "fuse_qkv: it rewrites" not in checked.stderr and checked.stderr.rstrip().endswith("1 error")


def test_the_passes_run_without_torch(tmp_path):
    """low_rank(energy=) imported torch before it found it had no weights."""
    ok = _spec(tmp_path, "low_rank(energy=0.9)", name="ok.arch")
    bad = _spec(tmp_path, "quantize(int8_static)", "fuse_qkv", name="bad.arch")
    code = ("import sys; from strata.cli import main; "
            f"assert main(['check', {str(ok)!r}]) == 0; assert main(['check', {str(bad)!r}]) == 1; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr


# Every shipped pass, with the options that read weights or calibration data or
# build another spec, one spec each (a refusal would stop the passes after it).
# The first names what fuse_qkv makes: the compiler's selector check runs the
# passes too (plugins.GRAPH_PASSES, not as a check: distill builds its teacher).
EVERY_PASS = [
    ['distill("teacher.arch", weights="teacher.safetensors")', "fuse_qkv", "fuse_mlp",
     'quantize(int8_dynamic, on="decoder.layers.*.attn.qkv")'],
    ["quantize(int4_weight, group_size=32, method=gptq, act_order=true, observer=mse)"],
    ["quantize(int4_weight, group_size=32, method=awq)"],
    ["quantize(int8_static, smooth=0.5)"],
    ["quantize(auto, bits=8, group_size=32)"],
    ["quantize(fp8)"],
    ["quantize(int8_weight, qat=true)"],
    ["prune(0.5, method=wanda)"],
    ['prune(0.5, method=sparsegpt, pattern="2:4")'],
    ["prune(0.5, method=structured, activation_aware=true)"],
    ['prune(0.5, method="2:4")'],
    ["low_rank(energy=0.9)"],
    ['low_rank(8, on="mlp", activation_aware=true)'],
    ["lora(4)"],
]


def test_the_check_of_every_pass_and_what_it_reads_imports_no_torch(tmp_path):
    """What `strata check` runs of each pass (refusals, the selector check) is
    graph only: a pass that reads weights, calibration data or a teacher stops,
    or records them, without importing torch."""
    from strata.passes import REGISTRY

    assert {p.split("(")[0] for ps in EVERY_PASS for p in ps} == set(REGISTRY)
    (tmp_path / "teacher.arch").write_text(SPEC.replace("model tiny", "model teacher").replace("d = 64", "d = 128"))
    paths = [str(_spec(tmp_path, *ps, name=f"p{i}.arch")) for i, ps in enumerate(EVERY_PASS)]
    code = ("import sys; from strata.cli import main; "
            f"failed = [p for p in {paths!r} if main(['check', p]) != 0]; assert not failed, failed; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "import strata.passes.distill, strata.passes.quantize_auto; assert 'networkx' in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr + r.stdout
