"""--resume continues the run with its own settings: those an earlier start took
from the command line (--set, --steps, keywords) stand where the spec's train
section writes nothing, so a spec with no train section resumes with the command
that extends it (`--resume --steps N`); what the spec writes, or this start's
--set, still wins (a setting changed in the spec continues the run)."""

from __future__ import annotations

import json

from tests.optional import require

torch = require("torch")

from strata.cli import main  # noqa: E402
from tests.train.helpers import GPT, text  # noqa: E402

BARE = GPT[:GPT.index("passes {")]  # the model alone: no passes, no train section


def _settings(run) -> dict:
    return json.loads((run / "run.json").read_text())["settings"]


def test_resume_keeps_the_settings_the_first_start_was_given(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text(text())
    (tmp_path / "m.arch").write_text(BARE)
    first = ["train", "m.arch", "--data", "a.txt", "--out", "r", "-q", "--set", "batch=3",
             "--set", "context=8", "--set", "tokenizer=char", "--set", "optimizer=sgd(lr=0.01)"]
    assert main([*first, "--steps", "2"]) == 0, capsys.readouterr().err
    assert main(["train", "m.arch", "--out", "r", "--resume", "--steps", "4", "-q"]) == 0, \
        capsys.readouterr().err
    s = _settings(tmp_path / "r")
    assert (s["batch"], s["context"], s["tokenizer"], s["optimizer"]["type"], s["steps"]) == \
        (3, 8, "char", "sgd", 4)
    # the spec now writes a batch, and this start sets a context: both win over the run's
    (tmp_path / "m.arch").write_text(BARE + "train { batch = 2 }\n")
    assert main(["train", "m.arch", "--out", "r", "--resume", "--steps", "6", "--set", "context=12",
                 "-q"]) == 0, capsys.readouterr().err
    s = _settings(tmp_path / "r")
    assert (s["batch"], s["context"], s["tokenizer"], s["optimizer"]["type"]) == (2, 12, "char", "sgd")
