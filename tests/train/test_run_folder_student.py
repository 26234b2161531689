"""A distilled student's run folder copied alone — without its teacher's spec,
which its model.arch still names in `distill("../../teacher.arch")` — evaluates,
generates, compresses (with --finetune and --eval), exports and compiles: none
of them uses the teacher.  Training it and `generate --speculate` do, and say
the teacher's spec is gone; `strata check` of its model.arch still reports the
path, located, as it does for any spec."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.optional import require

torch = require("torch")

import strata  # noqa: E402
from tests.train.helpers import text  # noqa: E402
from tests.train.test_run_folder import _distilled, cli  # noqa: E402


def test_a_students_run_folder_copied_alone_needs_no_teacher(tmp_path, capsys, monkeypatch):
    proj = tmp_path / "proj"
    _distilled(proj, capsys, monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copytree(proj / "runs" / "student", elsewhere / "s")
    teacher_run = tmp_path / "teacher_run"
    shutil.copytree(proj / "runs" / "teacher", teacher_run)
    shutil.rmtree(proj)  # the teacher's spec, the student's and the data gone: the run folder alone
    monkeypatch.chdir(elsewhere)
    Path("other.txt").write_text(text()[:3000])

    code, out, err = cli(capsys, "eval", "s", "--data", "other.txt", "--max-batches", 1)
    assert code == 0 and "other.txt" in out, err
    code, _, err = cli(capsys, "generate", "s", "--prompt", "the", "--tokens", 3, "--temperature", 0, "-q")
    assert code == 0, err
    code, _, err = cli(capsys, "compress", "s", "--pass", "quantize(int8_dynamic)", "-o", "q", "--eval",
                       "other.txt", "--max-batches", 1, "--finetune", 2, "--data", "other.txt")
    assert code == 0, err
    assert 'distill("../../teacher.arch")' in Path("q/model.arch").read_text()  # kept, as written
    code, out, err = cli(capsys, "eval", "q", "--data", "other.txt", "--max-batches", 1)
    assert code == 0 and "other.txt" in out, err
    code, _, err = cli(capsys, "generate", "q", "--tokens", 3, "--temperature", 0, "-q")
    assert code == 0, err
    code, _, err = cli(capsys, "export", "s", "-o", "hf")
    assert code == 0 and Path("hf/model.safetensors").is_file(), err
    code, _, err = cli(capsys, "export", "q", "-o", "hf_q")
    assert code == 0 and Path("hf_q/model.safetensors").is_file(), err
    code, _, err = cli(capsys, "compile", "s", "-o", "s.py")
    assert code == 0 and "def build(" in Path("s.py").read_text(), err
    net = strata.compile("q/model.arch", weights="q/weights.safetensors")
    assert net(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 128)
    assert strata.compile("s")(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 128)

    # what does use the teacher says its spec is not read (outside the run folder and the
    # working directory: whether it is there is not said), before its weights (gone too)
    for given in ([], ["--teacher-weights", teacher_run]):
        code, _, err = cli(capsys, "generate", "s", "--tokens", 3, "--speculate", *given)
        assert code == 2 and len(err.splitlines()) == 1, err
        assert "its distill pass names its teacher spec at " in err and "outside the run folder" in err, err
        assert err.rstrip().endswith("strata generate TEACHER_RUN --draft s"), err
    monkeypatch.chdir(tmp_path)  # where the pass's ../../teacher.arch would be: inside, so its absence is said
    code, _, err = cli(capsys, "generate", "elsewhere/s", "--tokens", 3, "--speculate")
    assert code == 2 and "distill: the teacher's spec ../../teacher.arch is gone" in err, err
    assert "--speculate need it" in err
    monkeypatch.chdir(elsewhere)
    code, _, err = cli(capsys, "train", "s/model.arch", "--out", "s", "--resume", "--steps", 4,
                       "--data", "other.txt", "-q")
    assert code == 1 and "s/model.arch:" in err and "error: distill: teacher spec 'teacher.arch' not found" in err
    code, _, err = cli(capsys, "check", "s/model.arch")
    assert code == 1 and "error: distill: teacher spec 'teacher.arch' not found" in err, err


def test_a_teacher_whose_weights_are_gone_is_named(tmp_path, capsys, monkeypatch):
    """The pass's weights= found nowhere was said as 'runs/s/../teacher: no such file
    or folder', naming neither the teacher nor what to give instead."""
    from tests.train.helpers import GPT

    monkeypatch.chdir(tmp_path)
    Path("a.txt").write_text(text())
    Path("teacher.arch").write_text(GPT)
    Path("student.arch").write_text(GPT.replace("tiny_gpt", "student").replace("d = 32", "d = 16").replace(
        "passes { fuse_qkv }", 'passes { distill("teacher.arch", weights="runs/teacher") }'))
    assert cli(capsys, "train", "teacher.arch", "--data", "a.txt", "--out", "runs/teacher", "--steps", 2,
               "-q")[0] == 0
    assert cli(capsys, "train", "student.arch", "--data", "a.txt", "--out", "runs/s", "--steps", 2, "-q")[0] == 0
    shutil.move("runs/teacher", "kept")
    gone = ' in the pass) are gone: not at runs/teacher; give --teacher-weights with where they are now\n'
    for args, written in ((["generate", "runs/s", "--speculate", "--tokens", 3], "../teacher"),  # RUN/model.arch's
                          (["train", "student.arch", "--data", "a.txt", "--out", "runs/s2", "--steps", 1, "-q"],
                           "runs/teacher")):
        code, _, err = cli(capsys, *args)
        assert (code, err) == (2, f'strata: error: distill: the teacher\'s weights (weights="{written}"' + gone), err
    code, _, err = cli(capsys, "generate", "runs/s", "--speculate", "--tokens", 3, "--teacher-weights", "kept")
    assert code == 0, err
