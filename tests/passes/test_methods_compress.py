"""The calibrated methods through the pipeline and `strata compress`: float
equivalence of the migrations, the integers GPTQ hands on, located refusals,
and the command line in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.passes.helpers import GPT, LLAMA, ids, spec_file, sqnr, torch, weights

from strata.api import compile
from strata.errors import SpecError
from strata.backends.torch.workflows.compress import compress


def _pipeline(spec, w, passes, calib):
    from safetensors.torch import load_file

    from strata.compiler import build_file
    from strata.passes import PassContext, apply_passes
    from strata.passes.text import parse_pass_texts

    g0 = build_file(spec)
    g0.graph["passes"] = parse_pass_texts(passes, g0)
    from strata.backends.torch.workflows.runner import RUNNER

    ctx = PassContext(state=dict(load_file(str(w))), calibration=calib, runner=RUNNER)

    def step(p, before, after):
        ctx.state = p.convert(after.graph["applied"][-1]["record"], ctx.state, ctx)

    return apply_passes(g0, ctx=ctx, on_pass=step), ctx


@pytest.mark.parametrize("text", [LLAMA, GPT])
def test_migrations_leave_the_float_model_unchanged(tmp_path, text, monkeypatch):
    import strata.passes.methods.apply as methods

    # AWQ's clipping changes the float weights by design: the migration alone is checked here
    monkeypatch.setattr(methods, "awq_clip", lambda W, x, grid: (W, 0.0, 0.0))
    spec = spec_file(tmp_path, text)
    w = weights(tmp_path, spec)
    x = ids(80, rows=4, length=16)
    base = compile(spec, passes=[], weights=w).eval()
    for p in ["quantize(int8_dynamic, smooth=0.5)", "quantize(int4_weight, method=awq, group_size=32)"]:
        g, ctx = _pipeline(spec, w, [p], x)
        rec = g.graph["applied"][-1]["record"]
        assert rec["scales"]
        if "smooth" in p:  # q/k/v and the MLP input folded; o (llama: GQA) and down (gpt: GELU) not
            assert rec["skipped"]
        if text == LLAMA:  # the reason is GQA's, not "not a norm's output"
            assert "2 key/value heads for 4 heads" in rec["skipped"]["decoder.layers.0.attn.o"]
        # both also scale down into up (llama) and o into v (gpt: as many kv heads as heads)
        pair = "up" if text == LLAMA else "v"
        assert any(v.get("folded_into", "").endswith("." + pair) for v in rec["scales"].values())
        net = compile(spec, passes=[], quantize=False)
        from strata.backends.torch.weights_file import load_state

        load_state(net, ctx.state)
        with torch.no_grad():
            torch.testing.assert_close(net.eval()(x), base(x), atol=1e-4, rtol=1e-4)
        changed = [k for k in ctx.state if "norm" in k and not torch.equal(ctx.state[k], base.state_dict().get(
            k, ctx.state[k]))]
        assert changed or text == GPT


@pytest.mark.parametrize("observer", ["", ", observer=mse"])
def test_gptq_hands_on_integers_on_the_grid(tmp_path, observer):
    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    g, ctx = _pipeline(spec, w, [f'quantize(int4_weight, method=gptq, group_size=32, act_order=true{observer})'],
                       ids(96, rows=8, length=32))
    names = g.graph["applied"][-1]["record"]["linears"]
    assert sorted(ctx.quantized) == sorted(names)
    for n, qw in ctx.quantized.items():
        assert torch.equal(qw.weight, ctx.state[f"{n}.weight"])
        assert qw.q.dtype == torch.int8 and -8 <= int(qw.q.min()) and int(qw.q.max()) <= 7
        s = qw.scale.repeat_interleave(32, 1)
        z = qw.zero.repeat_interleave(32, 1)
        torch.testing.assert_close((qw.q.float() - z) * s, qw.weight)
        assert torch.equal(qw.stored().dequantize(), qw.weight)  # what the packer stores decodes the same


def test_gptq_and_sparsegpt_beat_the_plain_methods(tmp_path):
    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    calib = ids(96, rows=8, length=32)
    x = ids(96, rows=4, length=32, seed=5)
    with torch.no_grad():
        ref = compile(spec, passes=[], weights=w).eval()(x)
        for plain, better in [("quantize(int4_weight, group_size=32)",
                               "quantize(int4_weight, method=gptq, group_size=32)"),
                              ("prune(0.5)", "prune(0.5, method=sparsegpt)")]:
            a = compile(spec, passes=[plain], weights=w).eval()(x)
            b = compile(spec, passes=[better], weights=w, calibration=calib).eval()(x)
            assert sqnr(ref, b) > sqnr(ref, a), better


def test_calibration_rows_beyond_the_cap_are_thinned_evenly(tmp_path):
    from strata.backends.torch.workflows.calibration import MAX_ROWS, load_calibration
    from strata.compiler import build_file

    g = build_file(spec_file(tmp_path, LLAMA))  # vocabulary 96, context 64
    i = torch.arange(300)
    rows = torch.stack([i // 96, i % 96] * 8, dim=1)  # (300, 16): row i spells i in base 96
    ids = load_calibration(rows.clone(), g)
    assert ids.shape == (MAX_ROWS, 16)
    got = ids[:, 0] * 96 + ids[:, 1]  # which rows were kept
    assert torch.equal(got, torch.linspace(0, 299, MAX_ROWS).round().long())
    assert int(got[0]) == 0 and int(got[-1]) == 299 and len(set(got.tolist())) == MAX_ROWS
    assert torch.equal(load_calibration(rows[:100].clone(), g), rows[:100])  # under the cap: as given


def test_logits_sqnr_is_measured_on_rows_calibration_left_out(tmp_path):
    """GPTQ fits its own calibration rows: the report's SQNR on them read ~12 dB
    better than on any other ids, so it is measured on rows calibration skipped."""
    from strata.backends.torch.workflows.calibration import load_calibration
    from strata.compiler import build_file

    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    rows = ids(96, rows=200, length=16)
    passes = ["quantize(int4_weight, method=gptq, group_size=32)"]
    out = tmp_path / "out"
    logits = compress(spec, w, out, passes=passes, calibration=rows).report["logits"]
    held = logits["held_out_rows"]
    used = load_calibration(rows, build_file(spec))
    assert len(held) == 2 and not any(bool((used == rows[i]).all(1).any()) for i in held)
    assert logits["ids_from"] == f"held-out rows {held} of the calibration data"
    ref = compile(spec, passes=[], weights=w).eval()
    small = compile(out / "model.arch", weights=out / "weights.safetensors").eval()
    with torch.no_grad():
        assert logits["sqnr_db"] == pytest.approx(sqnr(ref(rows[held]), small(rows[held])), abs=0.01)
    # every row calibrated on (128 or fewer): random ids, and the report says so
    few = compress(spec, w, out, passes=passes, calibration=rows[:8], overwrite=True).report["logits"]
    assert few["held_out_rows"] is None and few["ids_from"].startswith("random ids (calibration used all 8 rows")


def test_a_method_without_calibration_is_a_located_error(tmp_path):
    spec = spec_file(tmp_path, GPT)
    w = weights(tmp_path, spec)
    for p in ["quantize(int4_weight, method=gptq, group_size=32)", "prune(0.5, method=sparsegpt)",
              "quantize(int8_dynamic, smooth=0.5)"]:
        with pytest.raises(SpecError) as e:
            compress(spec, w, tmp_path / "out", passes=[p])
        assert str(e.value).startswith("--pass:1:1: error:") and "--calibration" in str(e.value)
    with pytest.raises(SpecError, match="int4_weight or int8_weight"):
        compress(spec, w, tmp_path / "out", passes=["quantize(int8_dynamic, method=gptq)"])
    for p, hint in [("quantize(int4_weight, group_size=32, observer=mse)", "write method=gptq$"),
                    ("quantize(int4_weight, method=awq, observer=mse)", "awq searches its own clipping")]:
        with pytest.raises(SpecError) as e:
            compress(spec, w, tmp_path / "out", passes=[p])
        assert str(e.value).startswith("--pass:1:1: error:") and "observer=mse" in str(e.value)
        assert any(re.search(hint, line) for line in str(e.value).splitlines()), str(e.value)
    assert not (tmp_path / "out").exists()


def test_compress_with_calibration_on_the_command_line(tmp_path):
    from safetensors.torch import save_file

    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    save_file({"tokens": ids(96, rows=8, length=32)}, str(tmp_path / "calib.safetensors"))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "strata", "compress", str(spec), "--weights", str(w),
                           "--calibration", str(tmp_path / "calib.safetensors"), "-o", str(out),
                           "--pass", "quantize(int4_weight, method=gptq, group_size=32)"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "gptq" in proc.stdout and "rounding to nearest" in proc.stdout
    text = (out / "model.arch").read_text()
    assert "quantize(int4_weight, group_size=32)" in text and "method=gptq" not in text.split("passes {")[1]
    report = json.loads((out / "report.json").read_text())
    record = report["passes"][0]
    assert record["relative_error"] and record["options"]["method"] == "gptq"
    small = compile(out / "model.arch", weights=out / "weights.safetensors")  # no calibration needed again
    assert small is not None


def test_a_gptq_compress_output_reloads_whatever_its_options(tmp_path):
    """OUT/model.arch writes the plain scheme: none of GPTQ's own options (act_order,
    observer) is left for a spec whose method is round to nearest to refuse."""
    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    out = tmp_path / "out"
    compress(spec, w, out, calibration=ids(96, rows=8, length=32),
             passes=["quantize(int4_weight, method=gptq, group_size=32, act_order=true, observer=mse)"])
    written = (out / "model.arch").read_text().split("passes {")[1]
    assert "quantize(int4_weight, group_size=32)" in written and "observer" not in written
    x = ids(96, rows=2, length=16, seed=4)
    small = compile(out / "model.arch", weights=out / "weights.safetensors").eval()
    again = compile(out / "model.arch", weights=out / "weights.safetensors").eval()
    with torch.no_grad():
        assert torch.equal(small(x), again(x))


def test_finetune_holds_masks_and_sizes_and_recovers(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from strata.cli import main

    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    g = torch.Generator().manual_seed(3)
    save_file({"tokens": torch.randint(0, 96, (4000,), generator=g)}, str(tmp_path / "data.safetensors"))
    passes = ['prune(0.25, method=structured, on="mlp")', 'prune(0.5, on="attention")']
    plain, tuned = tmp_path / "plain", tmp_path / "tuned"
    args = [str(spec), "--weights", str(w)] + [a for p in passes for a in ("--pass", p)]
    assert main(["compress", *args, "-o", str(plain)]) == 0
    assert main(["compress", *args, "-o", str(tuned), "--finetune", "40", "--data",
                 str(tmp_path / "data.safetensors")]) == 0
    assert "finetune 40 steps" in capsys.readouterr().out
    assert (plain / "model.arch").read_text() == (tuned / "model.arch").read_text()  # sizes held
    a, b = load_file(str(plain / "weights.safetensors")), load_file(str(tuned / "weights.safetensors"))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    for k in a:
        if ".attn." in k and k.endswith("weight") and a[k].dim() == 2:
            assert torch.equal(a[k] == 0, b[k] == 0) and float((a[k] == 0).float().mean()) >= 0.5  # masks held
    assert any(not torch.equal(a[k], b[k]) for k in a)
    f = json.loads((tuned / "report.json").read_text())["finetune"]
    assert f["distill_loss"]["last"] < f["distill_loss"]["first"]
    assert f["after"]["kl_to_original"] < 0.9 * f["before"]["kl_to_original"]  # closer to the original
    assert f["held"]["masked_linears"] > 0


def test_data_without_finetune_is_refused(tmp_path):
    from strata.api import compress as api_compress
    from strata.errors import UsageError

    spec = spec_file(tmp_path, GPT)
    w = weights(tmp_path, spec)
    with pytest.raises(UsageError, match="--finetune"):
        api_compress(spec, tmp_path / "o", weights=w, passes=["prune(0.5)"], data="x.txt")


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_per_channel_int4_methods_hand_on_one_scale_a_row_and_beat_rounding(tmp_path, method):
    """group_size=channel: GPTQ's integers stand for its weights with one scale and
    zero point per row; GPTQ and AWQ lower the model's output error against
    per-row rounding to nearest on the same rows."""
    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    calib = ids(96, rows=8, length=32)
    p = f"quantize(int4_weight, method={method}, group_size=channel)"
    if method == "gptq":
        _, ctx = _pipeline(spec, w, [p], calib)
        for n, qw in ctx.quantized.items():
            assert qw.scale.shape == (qw.weight.shape[0], 1) and qw.zero.shape == qw.scale.shape
            torch.testing.assert_close((qw.q.float() - qw.zero) * qw.scale, qw.weight)
            assert torch.equal(qw.stored().dequantize(), qw.weight)
    x = ids(96, rows=4, length=32, seed=5)
    with torch.no_grad():
        ref = compile(spec, passes=[], weights=w).eval()(x)
        plain = compile(spec, passes=["quantize(int4_weight, group_size=channel)"], weights=w).eval()(x)
        better = compile(spec, passes=[p], weights=w, calibration=calib).eval()(x)
    assert sqnr(ref, better) > sqnr(ref, plain)


@pytest.mark.parametrize("later", ['prune(0.5, on="mlp")', 'prune(0.5, method=sparsegpt, on="mlp")',
                                   'prune(0.25, method=structured, on="mlp")', 'low_rank(8, on="mlp")', "fuse_mlp"])
def test_a_pass_after_gptq_that_rewrites_its_linears_is_refused(tmp_path, later):
    """GPTQ's integers were handed to the kernels whatever a later pass did to the
    weight (the masks of a later prune lost, a structured prune's smaller linears an
    internal error); then they were silently dropped and the weight rounded to
    nearest, the report still giving GPTQ's error.  A pass that rewrites linears
    GPTQ chose is now a located error, with the order that works; the same pass on
    other linears is accepted and GPTQ's integers kept."""
    from safetensors.torch import load_file

    from strata.backends.torch.workflows.runner import RUNNER
    from strata.compiler import build_file
    from strata.passes.qparams import QuantizedWeight
    from strata.passes.text import parse_pass_texts
    from strata.passes.weight_transfer import transform  # the pipeline compile and compress run

    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    calib = ids(96, rows=8, length=32)
    gptq = "quantize(int4_weight, method=gptq, group_size=32)"
    with pytest.raises(SpecError) as e:
        compress(spec, w, tmp_path / "out", passes=[gptq, later], calibration=calib)
    text = str(e.value)
    assert text.startswith(f"--pass:1:1: error: {later}: it rewrites decoder.layers.0.mlp.gate"), text
    assert "whose integers quantize(int4_weight, group_size=32, method=gptq) chose by GPTQ" in text
    assert f"hint: put quantize last: list {later} before quantize(int4_weight" in text
    assert not (tmp_path / "out").exists()
    # on the attention only, GPTQ leaves the MLP to the later pass: its integers stand
    passes = ['quantize(int4_weight, method=gptq, group_size=32, on="attention")', later]
    g0 = build_file(spec)
    g0.graph["passes"] = parse_pass_texts(passes, g0)
    found: dict[str, QuantizedWeight] = {}
    transform(g0, dict(load_file(str(w))), calibration=calib, runner=RUNNER, quantized=found)
    assert "decoder.layers.0.attn.q" in found and not any(".mlp." in n for n in found)


@pytest.mark.parametrize("prune", ['prune(0.5, on="mlp")', 'prune(0.5, method=sparsegpt, on="mlp")'])
@pytest.mark.parametrize("order", ["", ", act_order=true"])
def test_gptq_after_a_prune_keeps_its_zeros(tmp_path, prune, order):
    """GPTQ spread each column's rounding error over the columns after it, zeros
    included: after prune(0.5) some 3 % of the pruned weights came back (the
    report still said density 0.5).  Its updates now skip a pruned weight's zeros."""
    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    g, ctx = _pipeline(spec, w, [prune, f"quantize(int4_weight, method=gptq, group_size=32{order})"],
                       ids(96, rows=8, length=32))
    for n in ("decoder.layers.0.mlp.up", "decoder.layers.1.mlp.down"):
        q = ctx.quantized[n].weight
        assert float((q == 0).double().mean()) >= 0.5, n


def test_gptq_after_activation_aware_low_rank(tmp_path):
    """GPTQ reloads each block's new weights into its streaming model; a part of the
    state dict read as the spec's names went through the passes again, and
    low_rank(activation_aware=true), with no calibration there, refused: 'needs
    calibration data when the weights load' though --calibration was given."""
    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    r = compress(spec, w, tmp_path / "out", calibration=ids(96, rows=8, length=32),
                 passes=['low_rank(16, activation_aware=true, on="mlp")',
                         "quantize(int8_weight, method=gptq)"]).report
    assert r["logits"]["loaded_equals_in_memory"]
    assert "21 linears" in next(p["report"] for p in r["passes"] if p["pass"] == "quantize")


def test_gptq_measures_each_linear_after_those_before_it_by_default(tmp_path):
    """GPTQ is sequential inside a block by default (AutoGPTQ's true_sequential):
    q, k and v read the block's input either way, so they come out the same;
    o, gate, up and down are fitted to what the quantized linears before them
    produce, so they differ from the one-pass fit; sequential=false is the one pass."""
    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    calib = ids(96, rows=8, length=32)
    p = "quantize(int4_weight, method=gptq, group_size=32"
    (g1, seq), (g2, one) = (_pipeline(spec, w, [p + extra], calib) for extra in (")", ", sequential=false)"))
    assert g1.graph["applied"][-1]["record"]["calibration"]["sequential"] is True
    assert g2.graph["applied"][-1]["record"]["calibration"]["sequential"] is False
    first = [n for n in seq.quantized if n.endswith((".q", ".k", ".v")) and ".layers.0." in n]
    later = [n for n in seq.quantized if ".layers.0." in n and n not in first]
    assert len(first) == 3 and len(later) == 4
    for n in first:
        assert torch.equal(seq.state[f"{n}.weight"], one.state[f"{n}.weight"]), n
    for n in later:
        assert not torch.equal(seq.state[f"{n}.weight"], one.state[f"{n}.weight"]), n


def test_sequential_is_gptqs_option(tmp_path):
    spec = spec_file(tmp_path, LLAMA)
    with pytest.raises(SpecError, match="sequential is GPTQ's"):
        compile(spec, passes=["quantize(int4_weight, sequential=true)"])


@pytest.mark.parametrize("text", [LLAMA, GPT])
def test_awq_measures_a_norms_readers_at_the_attentions_and_mlps_output(tmp_path, text):
    """AWQ's loss for q, k, v is the attention's output and for the MLP's input
    linears the MLP's (the reference's module2inspect), never worse than
    rounding on it; a pair (down after up, o after v) is measured at its linear."""
    spec = spec_file(tmp_path, text)
    w = weights(tmp_path, spec)
    g, _ = _pipeline(spec, w, ["quantize(int4_weight, method=awq, group_size=32)"], ids(80, rows=8, length=16))
    scales = g.graph["applied"][-1]["record"]["scales"]
    at = {k: v.get("measured_at") for k, v in scales.items() if "folded_into" not in v}
    stack = "decoder.layers" if text == LLAMA else "decoder.h"
    modules = sorted(v for v in at.values() if v != "each linear's output")
    assert modules == [f"{stack}.{i}.{m}" for i in (0, 1) for m in ("attn", "mlp")], at
    # the final norm's one reader, the (untied) head, has no module around it
    assert [k for k, v in at.items() if v == "each linear's output"] == (["decoder.norm"] if text == LLAMA else [])
    for v in scales.values():
        assert v["error"] <= v["rtn_error"]
    assert any(v["alpha"] > 0 for v in scales.values())


@pytest.mark.parametrize("method", ["smooth=0.5", "method=awq, group_size=32"])
def test_a_norm_read_by_several_blocks_is_scaled_once(tmp_path, method):
    """An encoder's final norm feeds every decoder block's cross-attention keys
    and values: its scale is chosen once, for all of them, where it is first
    read — not again at each block, which compounded the migration."""
    from safetensors.torch import load_file

    from tests.backends.torch.test_stream import SEQ2SEQ

    spec = spec_file(tmp_path, SEQ2SEQ)
    w = weights(tmp_path, spec)
    scheme = "int8_dynamic" if "smooth" in method else "int4_weight"
    g, ctx = _pipeline(spec, w, [f"quantize({scheme}, {method})"], ids(64, rows=8, length=16))
    rec = g.graph["applied"][-1]["record"]
    assert "encoder.norm" in rec["scales"]
    before, after = load_file(str(w))["encoder.norm.weight"], ctx.state["encoder.norm.weight"]
    s = (before.double() / after.double())
    if "smooth" in method:
        assert float(s.max()) == pytest.approx(rec["scales"]["encoder.norm"]["max_scale"], abs=1e-3)
        assert float(s.min()) == pytest.approx(rec["scales"]["encoder.norm"]["min_scale"], abs=1e-3)
    else:
        assert rec["scales"]["encoder.norm"]["measured_at"] == "each linear's output"
    k0 = load_file(str(w))["decoder.layers.2.cross_attn.k.weight"]  # every reader carries the same scale
    if "smooth" in method:
        torch.testing.assert_close(ctx.state["decoder.layers.2.cross_attn.k.weight"].double(), k0.double() * s)
