"""Settings: the spec's train section, then --set in the spec's own syntax (errors
located in the argument), then flags."""

from __future__ import annotations

import pytest

from tests.optional import require

torch = require("torch")

from strata.cli import main
from strata.compiler import build_text
from strata.errors import SpecError, UsageError
from strata.train.settings import resolve_settings
from tests.train.helpers import GPT, write


def test_spec_then_set_then_flags():
    g = build_text(GPT)
    cfg = resolve_settings(g, ["batch=2*8", "optimizer=adamw(lr=3e-4)", "steps=7"], {"steps": 5})
    assert cfg["batch"] == 16 and cfg["steps"] == 5 and cfg["context"] == 16
    assert cfg["optimizer"] == {"type": "adamw", "lr": 3e-4, "betas": (0.9, 0.999),
                                "weight_decay": 0.0, "eps": 1e-8}
    assert cfg["schedule"] == {"type": "cosine", "warmup": 5, "min_lr": 3e-4}
    kw = resolve_settings(g, [], {"optimizer": "sgd(lr=0.1)", "schedule": {"type": "constant"}})
    assert kw["optimizer"]["type"] == "sgd" and kw["schedule"] == {"type": "constant", "warmup": 0}


@pytest.mark.parametrize("arg,col,message", [
    ("batch=-4", 7, "train setting 'batch': Input should be greater than 0"),
    ("bach=4", 1, "unknown train setting 'bach'"),
    ("batch", 1, "expected key=value"),
    ("batch=(", 8, "unexpected end of file"),
    ("optimizer=adam(lr=1)", 11, "unknown function 'adam'"),
    ("tokenizer=wordpiece", 11, "train setting 'tokenizer': Input should be 'char', 'byte' or 'bpe'"),
    ("lr=3e-4", 1, "'lr' is an option of optimizer, not a train setting"),
    ("schedule=cosine(warmup=-1)", 10, "cosine: warmup Input should be greater than or equal to 0"),
])
def test_set_errors_are_located_in_the_argument(arg, col, message, tmp_path, capsys):
    spec = write(tmp_path / "g.arch", GPT)
    assert main(["train", str(spec), "--set", arg, "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert f"--set:1:{col}: error: {message}" in err, err
    assert f"    1 | {arg}" in err and "^" in err and "Traceback" not in err


def test_set_hints():
    g = build_text(GPT)
    with pytest.raises(SpecError) as e:
        resolve_settings(g, ["lr=1e-3"])
    assert "hint: write it inside the call: --set 'optimizer=adamw(lr=3e-4)'" in str(e.value)
    with pytest.raises(SpecError, match="did you mean 'batch'"):
        resolve_settings(g, ["bach=4"])


def test_keyword_errors_are_usage_errors():
    g = build_text(GPT)
    with pytest.raises(UsageError, match="unknown train setting 'bach'; did you mean 'batch'"):
        resolve_settings(g, [], {"bach": 3})
    with pytest.raises(UsageError, match="train setting 'batch'"):
        resolve_settings(g, [], {"batch": 0})


@pytest.mark.parametrize("flag,value", [("--steps", 10 ** 18), ("--steps", 2 ** 53 + 1), ("--steps", -1),
                                        ("--checkpoint-every", 0), ("--eval-every", 10 ** 23)])
def test_step_counts_are_bounded_before_anything_is_spent(flag, value, tmp_path, capsys, monkeypatch):
    """`--steps 10**18` trained without end (--finetune was bounded, --steps not):
    both are refused in one line by the same check, 2**53 the most a run records."""
    import strata

    def started(*a, **k):
        raise AssertionError("training started")
    monkeypatch.setattr(strata.train, "train", started)
    spec = write(tmp_path / "g.arch", GPT)
    assert main(["train", str(spec), flag, str(value), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == f"strata: error: {flag} {value:,}: give a number of steps from 1 to 2**53 " \
                  "(the most a run records exactly)\n"
    assert not (tmp_path / "r").exists()


def test_step_settings_are_bounded_in_the_spec_and_the_api():
    g = build_text(GPT)
    assert resolve_settings(g, [], {"steps": 2 ** 53})["steps"] == 2 ** 53
    for name in ("steps", "accumulate", "eval_every", "eval_steps", "checkpoint_every"):
        with pytest.raises(UsageError, match=f"train setting '{name}': Input should be less than or equal "
                                             "to 9007199254740992"):
            resolve_settings(g, [], {name: 2 ** 53 + 1})
    with pytest.raises(SpecError, match="--set:1:7: error: train setting 'steps'"):
        resolve_settings(g, ["steps=10**17"])


def test_context_longer_than_positions(tmp_path, capsys):
    spec = write(tmp_path / "g.arch", GPT)
    assert main(["train", str(spec), "--set", "context=64", "--out", str(tmp_path / "r"), "-q"]) == 2
    assert "context = 64 is longer than the model's positions (ctx = 32)" in capsys.readouterr().err


def test_existing_run_needs_resume_or_overwrite(tmp_path, capsys):
    spec = write(tmp_path / "g.arch", GPT)
    out = tmp_path / "r"
    assert main(["train", str(spec), "--steps", "2", "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    assert main(["train", str(spec), "--steps", "2", "--out", str(out), "-q"]) == 2
    assert "already holds a run: --resume continues it" in capsys.readouterr().err
    assert main(["train", str(spec), "--steps", "3", "--out", str(out), "-q", "--overwrite"]) == 0
    (tmp_path / "other").mkdir()
    write(tmp_path / "other" / "x", "")
    assert main(["train", str(spec), "--out", str(tmp_path / "other"), "-q"]) == 2
    assert "not empty and holds no run" in capsys.readouterr().err
