"""strata compress: the compressed model is a spec again; it checks, it loads its
weights, it computes what the passes made, and its report says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.passes.helpers import GPT, LLAMA, ids, spec_file, torch, weights

from strata.api import compile
from strata.cli import main
from strata.errors import SpecError
from strata.backends.torch.workflows.compress import compress
from strata.passes.weight_transfer import transform


def _transformed(spec, w, passes):
    """The model the passes make, straight from the pipeline (for comparison)."""
    from safetensors.torch import load_file

    from strata.backends.torch.compile import compile_graph
    from strata.backends.torch.weights_file import load_state
    from strata.compiler import build_file
    from strata.passes.text import parse_pass_texts

    g0 = build_file(spec)
    g0.graph["passes"] = parse_pass_texts(passes, g0)
    g, state = transform(g0, dict(load_file(str(w))))
    net = compile_graph(g, quantize=False)
    load_state(net, state)
    return net.eval()


def test_structured_and_low_rank_written_as_a_spec(tmp_path, capsys):
    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    passes = ["prune(0.5, method=structured)", 'low_rank(energy=0.6, on="decoder.layers.*.mlp.down")']
    out = tmp_path / "out"
    assert main(["compress", str(spec), "--weights", str(w), "-o", str(out)]
                + [a for p in passes for a in ("--pass", p)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'model.arch'}" in printed and "logits SQNR" in printed
    text = (out / "model.arch").read_text()
    assert "mlp(64, act=swiglu, bias=false)" in text
    assert "attention(2, kv_heads=1, causal=true, bias=false, head_dim=16)" in text
    assert "low_rank(" in text and "energy" not in text  # the ranks the energy chose
    assert "prune(" not in text.split("passes {")[1]  # the sizes say it
    assert main(["check", str(out / "model.arch")]) == 0
    capsys.readouterr()
    x = ids(96)
    small = compile(out / "model.arch", weights=out / "weights.safetensors").eval()
    with torch.no_grad():
        torch.testing.assert_close(small(x), _transformed(spec, w, passes)(x), atol=1e-5, rtol=1e-5)
    report = json.loads((out / "report.json").read_text())
    assert report["parameters"]["after"] < report["parameters"]["before"]
    assert [p["pass"] for p in report["passes"]] == ["prune", "low_rank"]
    assert report["logits"]["sqnr_db"] is not None


def test_quantized_and_masked(tmp_path):
    spec = spec_file(tmp_path, GPT)
    w = weights(tmp_path, spec)
    out = tmp_path / "q"
    r = compress(spec, w, out, passes=['prune(0.5, on="mlp")', 'quantize(int8_dynamic, on="mlp")']).report
    text = (out / "model.arch").read_text()
    assert 'quantize(int8_dynamic, on="mlp")' in text and "the zeros are in its weights" in text
    assert r["weight_bytes"]["compiled"] < r["weight_bytes"]["before"]
    assert r["nonzero_parameters"] < r["parameters"]["after"]
    assert any("int8_dynamic" in k for k in r["kernels"])
    assert r["logits"]["sqnr_db"] > 10
    from strata.compiler import build_file
    from strata.compiler.cost import weight_bytes
    from strata.passes import apply_passes

    assert weight_bytes(apply_passes(build_file(out / "model.arch"))) == r["weight_bytes"]["compiled"]


def test_a_selection_a_spec_cannot_write_is_refused(tmp_path, capsys):
    spec = spec_file(tmp_path, GPT)
    w = weights(tmp_path, spec)
    code = main(["compress", str(spec), "--weights", str(w), "-o", str(tmp_path / "o"),
                 "--pass", 'prune(0.5, method=structured, on="decoder.h.0.mlp")'])
    assert code == 2
    err = capsys.readouterr().err
    assert "strata: error: compress: structured pruning selected some uses" in err and "decoder.h.1.mlp" in err
    assert not (tmp_path / "o" / "model.arch").exists()


def test_refusals(tmp_path, capsys):
    spec = spec_file(tmp_path, GPT)
    w = weights(tmp_path, spec)
    assert main(["compress", str(spec), "--weights", str(w), "-o", str(tmp_path / "o")]) == 2
    assert "no passes to apply" in capsys.readouterr().err
    assert main(["compress", str(spec), "--weights", str(w), "-o", str(tmp_path / "o"), "--pass", "quantize(fp8)"]) == 2
    assert "fp8 quantization needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    other = spec_file(tmp_path, LLAMA, "l.arch")
    assert main(["compress", str(other), "--weights", str(w), "-o", str(tmp_path / "o2"), "--pass", "fuse_qkv"]) == 2
    assert "do not fit l.arch" in capsys.readouterr().err
    out = tmp_path / "o3"
    assert main(["compress", str(spec), "--weights", str(w), "-o", str(out), "--pass", "fuse_qkv"]) == 0
    assert main(["compress", str(spec), "--weights", str(w), "-o", str(out), "--pass", "fuse_qkv"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_imports_and_paths_are_resolved(tmp_path):
    """A spec that imports and extends another becomes one file; train data and a
    distill teacher stay reachable from the new folder."""
    (tmp_path / "base.arch").write_text(GPT)
    (tmp_path / "data.txt").write_text("hello")
    spec = spec_file(tmp_path, 'import "base.arch"\nmodel small extends tiny_gpt { depth = 1 }\n'
                     'passes { distill("base.arch") }\ntrain { data = "data.txt" }\n', "small.arch")
    w = weights(tmp_path, spec)
    out = tmp_path / "nested" / "out"
    compress(spec, w, out, passes=["prune(0.5, method=structured)"])
    text = (out / "model.arch").read_text()
    assert "import" not in text and "extends" not in text and "model small {" in text
    assert 'distill("../../base.arch")' in text and 'data = "../../data.txt"' in text
    assert main(["check", str(out / "model.arch")]) == 0


def test_a_teacher_of_the_same_file_comes_along(tmp_path):
    """distill(tiny_gpt) names a model of the student's file: the compressed spec,
    one model standing alone, named a teacher it did not hold.  It holds the teacher
    too (unpruned: the file's passes are the student's), the student last."""
    spec = spec_file(tmp_path, GPT + "model small extends tiny_gpt { depth = 1 }\n"
                     "passes { distill(tiny_gpt) }\n", "pair.arch")
    w = weights(tmp_path, spec)
    out = tmp_path / "out"
    compress(spec, w, out, passes=["prune(0.5, method=structured, on=mlp)"])
    text = (out / "model.arch").read_text()
    assert text.index("model tiny_gpt {") < text.index("model small {") and "extends" not in text
    assert main(["check", str(out / "model.arch")]) == 0
    from strata.compiler import build_file

    assert build_file(out / "model.arch").graph["name"] == "small"
    assert build_file(out / "model.arch", model="tiny_gpt").graph["parameters"] == \
        build_file(spec, model="tiny_gpt").graph["parameters"]


def test_a_data_path_written_as_a_bare_word_is_made_relative_too(tmp_path):
    """YAML's `data: corpus.txt` (and the .arch word `data = corpus.txt`) is a
    word, not a string: it was written into OUT/model.arch unchanged, so training
    OUT/model.arch looked for OUT/corpus.txt."""
    from strata.compiler import build_file
    from strata.train.settings import resolve_settings

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "corpus.txt").write_text("hello")
    (lib / "base.yaml").write_text(
        "models:\n  base:\n    vars: {d: 16}\n    stacks:\n      decoder:\n"
        "        inputs: [tokens]\n        body:\n          - {embedding: [40, d], as: wte}\n"
        "          - residual: [layernorm, {attention: 2, causal: true}]\n"
        "          - {lm_head: null, tie: wte}\ntrain:\n  data: corpus.txt\n")
    (tmp_path / "work").mkdir()
    spec = spec_file(tmp_path / "work", 'import "../lib/base.yaml"\nmodel derived extends base { d = 32 }\n',
                     "derived.arch")
    w = weights(tmp_path, spec)
    out = tmp_path / "nested" / "out"
    compress(spec, w, out, passes=["quantize(int8_dynamic)"])
    assert 'data = "../../lib/corpus.txt"' in (out / "model.arch").read_text()
    data = resolve_settings(build_file(out / "model.arch"))["data"]
    assert Path(data).resolve() == (lib / "corpus.txt").resolve()


def test_written_passes_that_name_fused_layers_or_read_activations_load_again(tmp_path):
    """low_rank(energy) after fuse_qkv writes ranks for attn.qkv, which only the fused
    graph has; low_rank(activation_aware=true) is written without it (its factors are
    in the weights): both outputs compile back and compute the compressed model."""
    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    for i, passes in enumerate([["fuse_qkv", "low_rank(energy=0.6)"], ["low_rank(8, activation_aware=true)"]]):
        out = tmp_path / f"out{i}"
        r = compress(spec, w, out, passes=passes, calibration=ids(96, rows=2, length=16)).report
        assert r["logits"]["loaded_equals_in_memory"]
        written = (out / "model.arch").read_text().split("passes {")[1]
        assert "energy" not in written and "activation_aware" not in written


def test_eval_table_shows_a_classifiers_accuracy_and_a_language_models_perplexity():
    """--eval's table: a classifier (no perplexity) had two rows named 'loss' and
    counted 'predictions'; perplexity printed as 4 digits ('15' for 15.00)."""
    from strata.backends.torch.workflows.compress import eval_table

    cls = {"original": {"loss": 1.0656, "accuracy": 0.625, "count": 8, "data": "task"},
           "compressed": {"loss": 1.0655, "accuracy": 0.5, "count": 8, "data": "task"}}
    rows = eval_table(cls)
    assert [r.split()[0] for r in rows[1:]] == ["accuracy", "loss"]
    assert "62.50%" in rows[1] and "50.00%" in rows[1] and "0.800x" in rows[1]
    assert rows[2].endswith("8 examples, task")
    lm = {"original": {"loss": 2.7077, "perplexity": 14.995, "accuracy": 0.3, "count": 9, "data": "d"},
          "compressed": {"loss": 2.708, "perplexity": 15.0, "accuracy": 0.3, "count": 9, "data": "d"}}
    rows = eval_table(lm)
    assert [r.split()[0] for r in rows[1:]] == ["perplexity", "loss"]
    assert "15.00" in rows[1] and rows[2].endswith("9 predictions, d")


def test_a_source_that_does_not_exist_is_named_as_such(tmp_path, capsys):
    """`compress nothere -o OUT` said 'a spec needs its weights', and with
    --weights RUN blamed the run ('compress needs the spec as a file')."""
    spec = spec_file(tmp_path, GPT)
    w = weights(tmp_path, spec)
    missing = str(tmp_path / "nothere.arch")
    for extra in ([], ["--weights", str(w)]):
        assert main(["compress", missing, *extra, "-o", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.strip() == f"strata: error: {missing}: no such run folder or spec file", err
    assert not (tmp_path / "out").exists()


def test_max_batches_without_eval_is_refused(tmp_path, capsys):
    """--max-batches bounds --eval; alone it was silently ignored (as --data
    without --finetune is refused, so is this)."""
    spec = spec_file(tmp_path, GPT)
    w = weights(tmp_path, spec)
    assert main(["compress", str(spec), "--weights", str(w), "--pass", "fuse_qkv", "--max-batches", "2",
                 "-o", str(tmp_path / "out")]) == 2
    assert "--max-batches bounds what --eval measures" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()



def test_a_lora_spec_compresses_with_more_passes(tmp_path):
    """A LoRA run's spec keeps its lora pass, and its weights hold the adapters merged;
    `strata compress RUN --pass 'quantize(...)'` refused ('carries LoRA adapters; merge
    them first'), fuse_qkv fused nothing, prune passed over the adapted linears and
    low_rank's factors did not load.  With adapters merged (the default) the lora pass
    (zero adapters on these weights) is taken out when others run; its note stays."""
    spec = spec_file(tmp_path, LLAMA + '\npasses { lora(4, on="attention") }\n')
    w = weights(tmp_path, spec)
    x = ids(96)
    with torch.no_grad():
        plain = compile(spec, weights=w, passes=[]).eval()(x)
    done = {"quantize(int8_weight)": "15 linears", "fuse_qkv": "fused 6 q/k/v projections into 2 matmuls",
            "prune(0.3)": "in 15 linears", "low_rank(8)": "factored 15 linears"}
    for i, (p, said) in enumerate(done.items()):
        out = tmp_path / f"out{i}"
        r = compress(spec, w, out, passes=[p]).report
        assert [a["pass"] for a in r["passes"]] == [p.split("(")[0]] and said in r["passes"][0]["report"]
        assert r["logits"]["loaded_equals_in_memory"]
        arch = (out / "model.arch").read_text()
        assert '#   lora(4, on="attention"): the adapters are merged into its weights' in arch
        assert "lora(" not in arch.split("\nmodel ", 1)[1]  # no pass left to add adapters
        if p == "fuse_qkv":
            with torch.no_grad():
                got = compile(out / "model.arch", weights=out / "weights.safetensors").eval()(x)
            assert torch.allclose(got, plain, atol=1e-5)
    with pytest.raises(SpecError, match="carries LoRA adapters") as e:  # kept adapters cannot be quantized
        compress(spec, w, tmp_path / "keep", passes=["quantize(int8_weight)"], adapters="keep")
    assert e.value.diagnostics[0].hint.startswith('merge them first: adapters="merge" (the default)')


def test_kept_adapters_refused_by_quantize_name_the_flag(tmp_path, capsys):
    """`strata compress RUN --adapters keep --pass 'quantize(...)'` hinted at a Python
    function (strata.backends.torch.workflows.adapters.merge_lora); the command line
    names its own flag, as the Python API its keyword (above)."""
    spec = spec_file(tmp_path, LLAMA + '\npasses { lora(4, on="attention") }\n')
    w = weights(tmp_path, spec)
    assert main(["compress", str(spec), "--weights", str(w), "--adapters", "keep", "--pass",
                 "quantize(int8_weight)", "-o", str(tmp_path / "keep")]) == 1
    err = capsys.readouterr().err
    assert "--pass:1:1: error: quantize(int8_weight): 'decoder.layers.0.attn.q' carries LoRA adapters" in err, err
    assert "hint: merge them first: --adapters merge (the default) merges them into the weights" in err
    assert "merge_lora" not in err and not (tmp_path / "keep").exists()


@pytest.mark.parametrize("pass_, lora_on, n", [("fuse_qkv", "attention", 6), ("fuse_mlp", "mlp", 4)])
def test_kept_adapters_the_fusions_pass_over_are_said(tmp_path, capsys, pass_, lora_on, n):
    """With --adapters keep, fuse_qkv and fuse_mlp left the projections carrying
    adapters unfused and said only 'fused 0 ... into 0 matmuls', in the printed
    lines, report.json and the summary, as prune and low_rank did before they said so."""
    spec = spec_file(tmp_path, LLAMA + f'\npasses {{ lora(4, on="{lora_on}") }}\n')
    w = weights(tmp_path, spec)
    out = tmp_path / "keep"
    assert main(["compress", str(spec), "--weights", str(w), "--adapters", "keep", "--pass", pass_,
                 "-o", str(out)]) == 0
    said = f"; {n} linears with LoRA adapters left alone (a fused matmul holds no adapters of its parts)"
    printed = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith(pass_)]
    assert len(printed) == 1 and printed[0].endswith(said), printed
    rep = json.loads((out / "report.json").read_text())["passes"][1]
    assert rep["report"].endswith(said) and len(rep["adapted"]) == n, rep
    assert main(["summary", str(spec), "--pass", pass_]) == 0
    table = " ".join(capsys.readouterr().out.split())  # the pass row wraps
    assert said in table, table


def test_kept_adapters_refused_by_structured_pruning_name_the_flag(tmp_path, capsys):
    """`strata compress RUN --adapters keep --pass 'prune(0.5, method=structured)'`
    said "list prune before lora": the run's own spec holds the lora pass, which a
    --pass cannot come before; the flag that lets it run is --adapters merge."""
    spec = spec_file(tmp_path, LLAMA + '\npasses { lora(4, on="attention") }\n')
    w = weights(tmp_path, spec)
    assert main(["compress", str(spec), "--weights", str(w), "--adapters", "keep", "--pass",
                 "prune(0.5, method=structured)", "-o", str(tmp_path / "keep")]) == 1
    err = capsys.readouterr().err
    assert ("--pass:1:1: error: prune(0.5, method=structured): 'decoder.layers.0.attn.q' carries LoRA "
            "adapters, which fit its full width, not the pruned one") in err, err
    assert "hint: merge them first: --adapters merge (the default) merges them into the weights" in err, err
    assert "before lora" not in err and not (tmp_path / "keep").exists()


@pytest.mark.parametrize("pass_, why", [("prune(0.5)", "merged adapters would fill the zeros"),
                                         ("low_rank(8)", "a linear is factored or adapted, not both")])
def test_kept_adapters_passed_over_are_said(tmp_path, capsys, pass_, why):
    """With --adapters keep, prune(0.5) left the linears carrying adapters alone and
    said only 'in 7 linears' (low_rank 'factored 7 linears'): neither said which
    were passed over, nor why — not in the printed lines, report.json or the summary."""
    spec = spec_file(tmp_path, LLAMA + '\npasses { lora(4, on="attention") }\n')
    w = weights(tmp_path, spec)
    out = tmp_path / "keep"
    assert main(["compress", str(spec), "--weights", str(w), "--adapters", "keep", "--pass", pass_,
                 "-o", str(out)]) == 0
    said = f"; 8 linears with LoRA adapters left alone ({why})"
    printed = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith(pass_.split("(")[0])]
    assert len(printed) == 1 and printed[0].endswith(said), printed
    rep = json.loads((out / "report.json").read_text())["passes"][1]
    assert rep["report"].endswith(said) and len(rep["adapted"]) == 8, rep  # as docs/passes.md says
    assert main(["summary", str(spec), "--pass", pass_]) == 0
    table = " ".join(capsys.readouterr().out.split())  # the pass row wraps
    assert said in table, table
    # a selection of adapted linears only: nothing to do, and the error says why
    assert main(["summary", str(spec), "--pass", pass_.replace(")", ', on="attention")')]) == 1
    assert "adapters are left alone)" in capsys.readouterr().err
