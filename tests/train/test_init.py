"""`strata train --init WEIGHTS`: weights load by name in their own shape, as
docs/training.md says; the model's weights the checkpoint lacks start anew, and
one the checkpoint holds in another shape is refused with a way out (the docs
said such weights were left new, the code refused them without one)."""

from __future__ import annotations

from pathlib import Path

from tests.optional import require

torch = require("torch")

from strata.cli import main  # noqa: E402
from tests.matrix_specs import PLAIN  # noqa: E402

TRAIN = "train {\n  tokenizer = char\n  batch = 2\n  context = 16\n}\n"


def _pretrain(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN + TRAIN)
    Path("d.txt").write_text("hello world, some text to train on. " * 40)
    assert main(["train", "p.arch", "--data", "d.txt", "--out", "r", "--steps", "1", "-q"]) == 0
    capsys.readouterr()


def test_a_new_module_starts_anew_and_the_rest_loads(tmp_path, monkeypatch, capsys):
    _pretrain(tmp_path, monkeypatch, capsys)
    # the learned position table renamed: a new module, the checkpoint's is ignored
    Path("q.arch").write_text(PLAIN.replace("position(learned, ctx)", "position(learned, 2 * ctx) as pos2")
                              + TRAIN)
    assert main(["train", "q.arch", "--data", "d.txt", "--init", "r", "--out", "t", "--steps", "1"]) == 0
    out = capsys.readouterr()
    line = next(x for x in (out.out + out.err).splitlines() if x.startswith("init: "))
    assert line.endswith("weights loaded; new: decoder.pos2.weight"), line


def test_a_weight_of_another_shape_is_refused_with_a_way_out(tmp_path, monkeypatch, capsys):
    _pretrain(tmp_path, monkeypatch, capsys)
    Path("q.arch").write_text(PLAIN.replace("ctx = 32", "ctx = 64") + TRAIN)
    assert main(["train", "q.arch", "--data", "d.txt", "--init", "r", "--out", "t", "--steps", "1",
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert err == ("strata: error: r/model.safetensors: the checkpoint does not fit the model: "
                   "decoder.pos.weight is [64, 32] in the model, [32, 32] in the checkpoint; --init takes "
                   "a weight only in its own shape: train the spec the weights came from, or give a "
                   "module that should start anew another name in the spec (e.g. classifier(3) as "
                   "head3)\n"), err
    assert not Path("t/model.safetensors").exists()


def test_many_weights_of_another_shape_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """Another width changes every weight: the refusal listed each one on its own line
    (a screenful); now the first, how many more, and the way out, in one line."""
    _pretrain(tmp_path, monkeypatch, capsys)
    Path("q.arch").write_text(PLAIN.replace("d = 32", "d = 48") + TRAIN)
    assert main(["train", "q.arch", "--data", "d.txt", "--init", "r", "--out", "t", "--steps", "1",
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("strata: error: r/model.safetensors: "), err
    assert "decoder.wte.weight is [300, 48] in the model, [300, 32] in the checkpoint (and " in err, err
    assert "more); --init takes a weight only in its own shape" in err, err


def test_data_the_init_tokenizer_never_saw_names_init(tmp_path, monkeypatch, capsys):
    """--init reuses the tokenizer of its weights: data with characters it never
    saw said only 'characters the tokenizer never saw', not where it came from."""
    _pretrain(tmp_path, monkeypatch, capsys)
    Path("e.txt").write_text("QUIZ JUMP! " * 200)
    assert main(["train", "p.arch", "--data", "e.txt", "--init", "r", "--out", "t", "--steps", "1",
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("strata: error: the text has characters the tokenizer never saw: '!' 'I'"), err
    assert err.endswith("; the tokenizer is the one --init r came with (r/tokenizer.json): give --data "
                        "text it covers (the data those weights trained on)\n"), err
    assert err.count("\n") == 1


def test_an_init_refusal_writes_nothing(tmp_path, monkeypatch, capsys):
    """The tokenizer --init brings (data it never saw, a vocabulary the model cannot
    hold) and weights of another shape were refused after the new run's folder was
    made (run.json, tokenizer.json, cache/): now before anything is written."""
    _pretrain(tmp_path, monkeypatch, capsys)
    Path("e.txt").write_text("QUIZ JUMP! " * 200)
    Path("q.arch").write_text(PLAIN.replace("ctx = 32", "ctx = 64") + TRAIN)
    Path("small.arch").write_text(PLAIN.replace("vocab = 300", "vocab = 8") + TRAIN)
    for spec, data, said in [("p.arch", "e.txt", "never saw"), ("q.arch", "d.txt", "does not fit the model"),
                             ("small.arch", "d.txt", "ids; the model's vocabulary holds 8")]:
        assert main(["train", spec, "--data", data, "--init", "r", "--out", "new/t", "--steps", "1", "-q"]) == 2
        assert said in capsys.readouterr().err
        assert not Path("new").exists()
