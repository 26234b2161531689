"""quantize(auto, bits=B): the knapsack is exact (against brute force), the
sensitivity is the KL of the logits with that one linear rounded, the choice
keeps the budget, impossible budgets and missing calibration data are located
errors, and the compress output names the choice (spec, report, diagram)."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from tests.passes.helpers import GPT, ids, spec_file, torch, weights

from strata.api import compile
from strata.compiler import build_file
from strata.errors import SpecError
from strata.passes import apply_passes
from strata.backends.torch.workflows.compress import compress
from strata.passes.qparams import rtn
from strata.passes.quant_budget import choose
from strata.passes.text import parse_pass_texts

AUTO = "quantize(auto, bits=6, group_size=32)"


def _brute(costs, scores, budget):
    names = list(costs)
    best = None
    for pick in itertools.product(*(list(costs[n]) for n in names)):
        if sum(costs[n][s] for n, s in zip(names, pick)) > budget:
            continue
        key = (sum(scores[n][s] for n, s in zip(names, pick)), sum(costs[n][s] for n, s in zip(names, pick)))
        best = key if best is None or key < best else best
    return best


def test_the_knapsack_is_exact():
    rng = random.Random(0)
    for _ in range(200):
        costs, scores = {}, {}
        for i in range(rng.randint(1, 5)):
            c4, c8 = rng.randint(1, 20), rng.randint(21, 40)
            costs[f"l{i}"] = {"int4_weight": c4, "int8_weight": c8, "float": rng.randint(41, 80)}
            scores[f"l{i}"] = {"int4_weight": rng.random(), "int8_weight": rng.random() / 10, "float": 0.0}
        budget = rng.randint(sum(c["int4_weight"] for c in costs.values()), sum(c["float"] for c in costs.values()))
        got = choose(costs, scores, budget)
        key = (sum(scores[n][s] for n, s in got.items()), sum(costs[n][s] for n, s in got.items()))
        assert key[1] <= budget
        want = _brute(costs, scores, budget)
        assert key[0] == pytest.approx(want[0], abs=1e-12) and key[1] == want[1]


def test_a_coarse_budget_still_holds():
    """More spare bytes than the knapsack has steps: rounded up, never over."""
    costs = {f"l{i}": {"int4_weight": 1000 + i, "int8_weight": 9001 + 7 * i, "float": 40000} for i in range(30)}
    scores = {n: {"int4_weight": 1.0, "int8_weight": 0.1, "float": 0.0} for n in costs}
    budget = 400_003
    got = choose(costs, scores, budget)
    assert sum(costs[n][s] for n, s in got.items()) <= budget


def _graph(spec, w, passes, calib):
    from safetensors.torch import load_file

    from strata.backends.torch.workflows.runner import RUNNER
    from strata.passes.weight_transfer import transform

    g0 = build_file(spec)
    g0.graph["passes"] = parse_pass_texts(passes, g0)
    return transform(g0, dict(load_file(str(w))), calibration=calib, runner=RUNNER)[0]


def test_sensitivity_is_the_kl_of_the_logits_with_that_linear_alone_rounded(gpt):
    spec, w = gpt
    calib = ids(80, rows=3, length=24, seed=5)
    g = _graph(spec, w, [AUTO], calib)
    auto = g.graph["applied"][-1]["record"]["auto"]
    net = compile(spec, weights=w, passes=[]).eval()
    n = "decoder.h.1.mlp.down"
    with torch.no_grad():
        ref = net(calib).double().log_softmax(-1)
        mod = net.get_submodule(n)
        mod.weight.copy_(rtn(mod.weight, "int4_weight", 32).dequantize())
        got = net(calib).double().log_softmax(-1)
    kl = float((ref.exp() * (ref - got)).sum(-1).mean())
    assert auto["layers"][n]["kl"]["int4_weight"] == pytest.approx(kl, rel=1e-4)
    assert auto["achieved"] <= 6 and auto["rows"] == 3


def test_the_choice_keeps_the_budget_and_marks_each_linear(gpt):
    spec, w = gpt
    calib = ids(80, rows=2, length=16)
    for bits in (4.7, 6, 32):
        g = _graph(spec, w, [f"quantize(auto, bits={bits}, group_size=32)"], calib)
        rec = g.graph["applied"][-1]["record"]
        assert rec["auto"]["least"] <= rec["auto"]["achieved"] <= bits
        for n, x in rec["auto"]["layers"].items():
            assert g.nodes[n]["attrs"].get("quant_scheme", "float") == x["scheme"]
        if bits == 32:  # room for every layer in float: only a rounding that changes nothing is taken
            assert all(x["kl"].get(x["scheme"], 0.0) == 0.0 for x in rec["auto"]["layers"].values())
            assert any(x["scheme"] == "float" for x in rec["auto"]["layers"].values())


def test_a_budget_below_every_assignment_says_the_least(gpt):
    spec, w = gpt
    with pytest.raises(SpecError, match=r"no assignment fits 3 bits per weight; the least these 12 linears "
                                        r"can take is 4\.\d+ .*write bits=4\.\d+ or more") as e:
        _graph(spec, w, ["quantize(auto, bits=3, group_size=32)"], ids(80))
    assert "--pass:1:1: error" in str(e.value)


def test_without_calibration_data_it_is_a_located_error(gpt, tmp_path):
    spec, w = gpt
    with pytest.raises(SpecError, match="give calibration data.*--calibration"):
        compile(spec, weights=w, passes=[AUTO])
    located = spec_file(tmp_path, GPT + "\npasses { quantize(auto, bits=6, group_size=32) }\n", "a.arch")
    with pytest.raises(SpecError, match=r"a\.arch:\d+:\d+: error: .*--calibration"):
        apply_passes(build_file(located))


@pytest.mark.parametrize("text, why", [("quantize(auto)", "needs bits="),
                                       ("quantize(int8_weight, bits=4)", "budget of quantize\\(auto\\)"),
                                       ("quantize(auto, bits=5, method=gptq)", "round-to-nearest"),
                                       ("quantize(auto, bits=5, strict=true)", "applies to int4_weight, not auto"),
                                       ("quantize(int8_weight, strict=true)", "applies to int4_weight, not int8")])
def test_options_that_do_not_go_together(gpt, text, why):
    spec, _ = gpt
    with pytest.raises(SpecError, match=why):
        parse_pass_texts([text], build_file(spec))


def test_compress_writes_the_choice_as_quantize_passes_and_reports_it(gpt, tmp_path):
    from strata.backends.diagram import diagram

    spec, w = gpt
    out = tmp_path / "out"
    res = compress(spec, w, out, passes=[AUTO], calibration=ids(80, rows=2, length=16))
    layers = res.report["passes"][-1]["auto"]["layers"]
    lines = "\n".join(res.lines())
    assert all(n in lines for n in layers)
    report = json.loads((out / "report.json").read_text())
    assert report["passes"][-1]["auto"]["layers"] == layers
    g = apply_passes(build_file(out / "model.arch"))  # the written spec holds the same choice
    for n, x in layers.items():
        assert g.nodes[n]["attrs"].get("quant_scheme", "float") == x["scheme"]
    assert "auto" not in (out / "model.arch").read_text().split("passes {")[1]
    text = diagram(out / "model.arch", level="op", unfold=True, after_passes=True).source
    badges = [next((b for b in ("int4", "int8") if b in ln), "float") for ln in text.splitlines() if "Linear" in ln]
    # each layer's badge names its scheme (float layers carry none), in the graph's order
    assert badges == [layers[n]["scheme"].removesuffix("_weight")[:5] for n in g if n in layers]


SIDE = GPT.replace("    lm_head(tie=wte)", "    branch { linear(128) as side_proj; lm_head(vocab) as aux_head } as aux\n"
                   "    lm_head(tie=wte)")


def test_linears_that_feed_only_a_side_output_stay_float_and_are_named(tmp_path):
    """A second head in a branch moves the main output's distribution not at all:
    its KL was 0, so auto put it in int4 unmeasured (and counted it in the
    budget).  It stays float, outside the budget, and the report says why."""
    spec = spec_file(tmp_path, SIDE)
    w = weights(tmp_path, spec)
    res = compress(spec, w, tmp_path / "out", passes=[AUTO], calibration=ids(80, rows=2, length=16))
    auto = res.report["passes"][-1]["auto"]
    side = {"decoder.side_proj": ["aux"], "decoder.aux_head": ["aux"]}
    assert auto["side"] == side and not set(side) & set(auto["layers"]) and len(auto["layers"]) == 12
    g = apply_passes(build_file(tmp_path / "out" / "model.arch"))
    assert all("quant_scheme" not in g.nodes[n]["attrs"] for n in side)
    assert ("2 linears left float, outside the budget: decoder.side_proj, decoder.aux_head feed only the "
            "side output aux") in "\n".join(res.lines())
    with pytest.raises(SpecError, match=r"feeds only side outputs \(aux from 'decoder.aux_head'\).*"
                                        r"quantize\(int8_weight, on=\"decoder.aux_head\"\)"):
        _graph(spec, w, ['quantize(auto, bits=6, group_size=32, on="decoder.aux_head")'], ids(80))


def test_int8_static_is_no_candidate_and_runs_beside_auto_on_other_linears(gpt, tmp_path):
    """auto minimises the KL under a budget of stored bits: int8_static stores what
    int8_weight does (and an activation scale) and rounds the activations too, so it
    is never the better choice there (docs/passes.md).  Beside auto, on other
    linears, it composes: compressed, written and loaded back exactly."""
    spec, w = gpt
    calib = ids(80, rows=2, length=16)
    passes = ['quantize(int8_static, on="attention")', 'quantize(auto, bits=6, group_size=32, on="mlp")']
    out = tmp_path / "out"
    res = compress(spec, w, out, passes=passes, calibration=calib)
    layers = res.report["passes"][-1]["auto"]["layers"]
    assert set(layers) == {f"decoder.h.{i}.mlp.{r}" for i in range(2) for r in ("up", "down")}
    assert all(set(x["kl"]) <= {"int4_weight", "int8_weight"} for x in layers.values())
    assert res.report["logits"]["loaded_equals_in_memory"]
    assert 'quantize(int8_static, on="attention")' in (out / "model.arch").read_text()
    # on the same linears, the second is refused, naming the first
    with pytest.raises(SpecError, match=r"are already quantized by quantize\(auto, "):
        compile(spec, weights=w, calibration=calib, passes=passes[1:] + ['quantize(int8_static, on="mlp")'])
