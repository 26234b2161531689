"""A run whose spec has a calibrated pass (GPTQ, AWQ, SmoothQuant, int8_static,
SparseGPT, Wanda) evaluates and generates: calibrated by default on the data the
run trained on, once per command, with --calibration overriding; the run's data
gone is one line naming it and --calibration (strata/train/calibrate.py)."""

from __future__ import annotations

import json

from tests.optional import require

torch = require("torch")
require("torchao")

import pytest  # noqa: E402

import strata  # noqa: E402
import strata.train.calibrate as calibrate_module  # noqa: E402
import strata.train.recover as recover_module  # noqa: E402
from strata.cli import main  # noqa: E402
from tests.train.helpers import GPT, text, write  # noqa: E402

GPTQ = "quantize(int4_weight, method=gptq, group_size=32)"


def _train(tmp_path, passes: str, name: str = "r"):
    spec = write(tmp_path / f"{name}.arch", GPT.replace("passes { fuse_qkv }", f"passes {{ fuse_qkv; {passes} }}"))
    data = write(tmp_path / f"{name}.txt", text())
    return strata.train(spec, data=str(data), out=tmp_path / name, steps=2, eval_every=2, progress=False)


@pytest.fixture(scope="module")
def gptq(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("calib"), GPTQ)


def test_eval_and_generate_calibrate_on_the_runs_data_once(gptq, capsys, monkeypatch):
    calls = []
    real = calibrate_module.data_calibration_ids
    monkeypatch.setattr(calibrate_module, "data_calibration_ids", lambda *a: calls.append(a) or real(*a))
    assert main(["eval", str(gptq.path)]) == 0
    out, err = capsys.readouterr()
    assert "(validation split): loss" in out
    assert err == (f"strata: calibrated {GPTQ.replace('method=gptq, group_size=32', 'group_size=32, method=gptq')} "
                   f"on 128 sequences of {gptq.path}'s data ({gptq.path.parent / 'r.txt'})\n")
    assert main(["generate", str(gptq.path), "--prompt", "the cat", "--tokens", "5", "--seed", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("the cat")
    assert err.startswith("strata: calibrated quantize(int4_weight") and "tokens/s" in err.splitlines()[1]
    assert len(calls) == 2  # once per command


def test_the_default_is_what_compile_and_compress_calibrate_on(gptq, tmp_path):
    """eval's model is strata.compile(spec, weights=RUN)'s, which calibrates on the run's
    data as `--calibration RUN` does; other calibration data gives other weights."""
    x = torch.randint(0, 60, (2, 12))
    with torch.no_grad():
        run_model = strata.open_model(gptq.path).load_model()(x)
        default = strata.compile(gptq.info["spec"], weights=gptq.path)(x)
        explicit = strata.compile(gptq.info["spec"], weights=gptq.path, calibration=str(gptq.path))(x)
        other = strata.compile(gptq.path, calibration=str(write(tmp_path / "o.txt", text(800, seed=9))))(x)
    assert torch.equal(run_model, default) and torch.equal(default, explicit)
    assert not torch.equal(default, other)


def test_the_run_train_returns_is_calibrated_as_the_commands_calibrate(gptq, capsys):
    """`strata.train`'s Run generates with the GPTQ model calibrated on its data, as
    `strata generate RUN` does, not with the float model it trained."""
    x = torch.randint(0, 60, (2, 12))
    with torch.no_grad():
        assert torch.equal(gptq.model(x), strata.open_model(gptq.path).model(x))
    assert gptq.calibrated.startswith("calibrated quantize(int4_weight") and str(gptq.path) in gptq.calibrated
    greedy = gptq.generate("the ", tokens=10, temperature=0)
    assert main(["generate", str(gptq.path), "--prompt", "the ", "--tokens", "10", "--temperature", "0", "-q"]) == 0
    assert capsys.readouterr().out == greedy + "\n"


def test_calibration_overrides_the_runs_data(gptq, tmp_path, capsys):
    other = write(tmp_path / "o.txt", text(800, seed=9))
    assert main(["eval", str(gptq.path), "--calibration", str(other), "--json"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("{") and err.endswith(f"sequences of {other}\n")
    assert main(["generate", str(gptq.path), "--calibration", "builtin", "-q"]) == 2  # read with the run's tokenizer
    assert "never saw" in capsys.readouterr().err


def test_a_moved_run_calibrates_on_its_data_where_it_is_now(tmp_path, capsys):
    """The project (run and data together) moved: eval and compile find the data
    relative to the run folder, as every other reader of a run's data does."""
    import shutil

    (tmp_path / "p").mkdir()
    run = _train(tmp_path / "p", GPTQ)
    shutil.move(tmp_path / "p", tmp_path / "q")
    moved = tmp_path / "q" / "r"
    assert main(["eval", str(moved)]) == 0
    assert f"sequences of {moved}'s data" in capsys.readouterr().err
    x = torch.randint(0, 60, (1, 8))
    with torch.no_grad():
        assert torch.equal(strata.compile(moved)(x), strata.open_model(moved).load_model()(x))
    assert not (tmp_path / "p").exists() and run.path == tmp_path / "p" / "r"


def test_the_runs_data_gone_names_it_and_calibration(tmp_path, capsys):
    run = _train(tmp_path, GPTQ)
    data = tmp_path / "r.txt"
    data.unlink()
    for cmd in (["eval", str(run.path)], ["generate", str(run.path), "--tokens", "3"]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"calibrates on the data {run.path} trained on, and it (" in err, err
        # outside the run folder and the working directory: not said whether it is there
        assert f"r.txt) is recorded at {data}, outside the run folder and the working directory" in err, err
        assert str(data) in err and "; give --calibration FILE" in err, err
    spare = write(tmp_path / "spare.txt", text())
    assert main(["eval", str(run.path), "--calibration", str(spare), "--data", str(spare)]) == 0
    with pytest.raises(strata.errors.UsageError, match="give calibration=FILE"):
        strata.compile(run.path)


def test_calibration_without_a_calibrated_pass_is_refused(tmp_path, capsys):
    run = _train(tmp_path, "quantize(int8_weight)")
    assert main(["eval", str(run.path), "--calibration", "builtin"]) == 2
    assert "no pass of tiny_gpt reads activations" in capsys.readouterr().err
    assert main(["eval", str(run.path)]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("passes", ["quantize(int4_weight, method=awq, group_size=32)",
                                    "quantize(int8_dynamic, smooth=0.5)", "quantize(int8_static)",
                                    'prune(0.5, method=sparsegpt, on="mlp")', 'prune(0.5, method=wanda, on="mlp")',
                                    'low_rank(4, activation_aware=true, on="mlp")'])
def test_every_calibrated_pass_trains_and_evaluates(tmp_path, passes):
    """Training starts from the spec's initialisation, which there is nothing trained in to
    calibrate on (Wanda, SparseGPT, activation-aware low rank refused to start); the trained
    weights calibrate when compiled.  A resumed run loads its checkpoint without calibration."""
    run = _train(tmp_path, passes)
    assert run.val_loss is not None
    again = strata.train(tmp_path / "r.arch", data=str(tmp_path / "r.txt"), out=tmp_path / "r", steps=3,
                         eval_every=3, resume=True, progress=False)
    assert again.step == 3
    opened = strata.open_model(run.path)
    assert opened.evaluate(max_batches=1)["loss"] > 0
    assert opened.calibrated.startswith(f"calibrated {passes.split('(')[0]}(")
    assert opened.calibrated.endswith(f"of {run.path}'s data ({tmp_path / 'r.txt'})")


def test_a_run_on_examples_calibrates_on_their_texts(tmp_path, capsys):
    """seq2seq and classify train on JSON Lines (or their built-in task): calibration
    reads the examples' texts, each tokenized alone, not the file as text (a char
    tokenizer never saw its braces and quotes)."""
    from tests.train.helpers import SEQ2SEQ, pairs_jsonl

    spec = write(tmp_path / "s.arch", SEQ2SEQ + 'passes { prune(0.5, method=wanda, on="mlp") }\n')
    data = pairs_jsonl(tmp_path / "p.jsonl")
    run = strata.train(spec, data=str(data), out=tmp_path / "r", steps=2, eval_every=2, progress=False)
    assert main(["eval", str(run.path), "--max-batches", "1"]) == 0
    assert capsys.readouterr().err.endswith(f"sequences of {run.path}'s data ({data})\n")
    assert main(["compress", str(run.path), "--calibration", str(run.path), "-o", str(tmp_path / "c")]) == 0


def test_compress_of_such_a_run_calibrates_on_its_data_and_export_says_to_compress_first(gptq, tmp_path, capsys):
    """compress without --calibration reads the run's data, exactly what
    `--calibration RUN` reads (the same tensors), and says so; export
    of the float run names compress, and exports what compress wrote."""
    assert main(["compress", str(gptq.path), "-o", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert f"calibrated {GPTQ.replace('method=gptq, group_size=32', 'group_size=32, method=gptq')} on " \
           f"{gptq.path}'s data (" in out
    assert main(["compress", str(gptq.path), "-o", str(tmp_path / "b"), "--calibration", str(gptq.path)]) == 0
    assert "calibrated" not in capsys.readouterr().out  # given: nothing chosen for the user
    from safetensors.torch import load_file

    a, b = (load_file(str(tmp_path / x / "weights.safetensors")) for x in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert main(["export", str(gptq.path), "--to", "hf", "-o", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert f"compress first (strata compress {gptq.path} -o OUT" in err and err.count("\n") == 1
    assert not (tmp_path / "hf").exists()
    assert main(["export", str(tmp_path / "a"), "--to", "hf", "-o", str(tmp_path / "hf")]) == 0


def test_compress_eval_reads_the_runs_data_once(gptq, tmp_path, capsys, monkeypatch):
    """compress --eval of such a run read and tokenized the run's data twice: for the
    original it measures (calibrated as `strata eval` calibrates it) and for the
    compression; the two read the same data (no --calibration, or --calibration RUN),
    so it is read once, and the original's figures are still `strata eval`'s."""
    assert main(["eval", str(gptq.path), "--json"]) == 0
    want = json.loads(capsys.readouterr().out)
    want.pop("seconds")  # how long it took: not a figure of the model
    calls = []
    for module in (calibrate_module, recover_module):
        monkeypatch.setattr(module, "data_calibration_ids", lambda *a, _real=module.data_calibration_ids, **kw:
                            calls.append(a) or _real(*a, **kw))
    for out, given in (("a", []), ("b", ["--calibration", str(gptq.path)])):
        calls.clear()
        assert main(["compress", str(gptq.path), "-o", str(tmp_path / out), "--eval", *given]) == 0, \
            capsys.readouterr().err
        capsys.readouterr()
        report = json.loads((tmp_path / out / "report.json").read_text())
        assert {k: v for k, v in report["eval"]["original"].items() if k != "seconds"} == want, out
        assert len(calls) == 1, (out, calls)
