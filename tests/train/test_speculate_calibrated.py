"""A distillation teacher whose spec has a calibrated pass (GPTQ) is the model its
own run compiles — calibrated on the teacher run's data — for training the
student and for `strata generate STUDENT --speculate` (strata/train/teacher.py);
a draft's or a teacher's calibration is said on stderr as the run's own is."""

from __future__ import annotations

import os
import shutil

from tests.optional import require

torch = require("torch")
require("torchao")

import pytest  # noqa: E402

import strata  # noqa: E402
from strata.cli import main  # noqa: E402
from strata.train import run as run_module  # noqa: E402
from strata.train import teacher as teacher_module  # noqa: E402
from strata.train.run import Run  # noqa: E402
from strata.train.speculate import speculative_pair  # noqa: E402
from tests.train.helpers import GPT, text, write  # noqa: E402
from tests.train.helpers import in_the_pairs_project  # noqa: E402,F401 (autouse: the pair's folder is the cwd)

GPTQ = "quantize(int4_weight, method=gptq, group_size=32)"
WANDA = "prune(0.5, method=wanda)"


def _student(tmp, weights: str) -> str:
    return write(tmp / "student.arch", GPT.replace("tiny_gpt", "student").replace("repeat(2)", "repeat(1)").replace(
        "passes { fuse_qkv }", f'passes {{ distill("teacher.arch", weights="{weights}"); {WANDA} }}'))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calibrated_pair")
    data = write(tmp / "a.txt", text())
    teacher = write(tmp / "teacher.arch", GPT.replace("passes { fuse_qkv }", f"passes {{ fuse_qkv; {GPTQ} }}"))
    teacher = strata.train(teacher, data=str(data), out=tmp / "t", steps=30, progress=False)
    # was: a teacher whose spec quantizes could not load its weights (WeightsError, a traceback)
    student = strata.train(_student(tmp, str(tmp / "t")), data=str(data), out=tmp / "s", steps=10,
                           progress=False)
    return teacher, student


def _generate(capsys, *argv):
    assert main(["generate", *argv]) == 0, capsys.readouterr().err
    out = capsys.readouterr()
    return out.out, out.err.splitlines()


def test_the_draft_and_the_teacher_say_what_they_calibrated_on(pair, capsys):
    teacher, student = pair
    args = ["--prompt", "the cat", "--tokens", "12", "--temperature", "0"]
    want, err = _generate(capsys, str(teacher.path), *args)
    own = f"strata: calibrated quantize(int4_weight, group_size=32, method=gptq) on 128 sequences of {teacher.path}'s data"
    assert err[0].startswith(own) and len(err) == 2
    got, err = _generate(capsys, str(teacher.path), *args, "--draft", str(student.path))
    assert got == want and err[0].startswith(own), err
    assert err[1].startswith(f"strata: the draft: calibrated {WANDA} on 128 sequences of {student.path}'s data"), err
    got, err = _generate(capsys, str(student.path), *args, "--speculate")
    assert got == want, err
    assert err[0].startswith(f"strata: calibrated {WANDA} on 128 sequences of {student.path}'s data"), err
    assert err[1].startswith(f"strata: the teacher: {own.removeprefix('strata: ')}"), err


def test_the_teacher_is_its_runs_model_as_compiled(pair):
    """--speculate's teacher (and the one the student trained against) is
    `strata generate TEACHER_RUN`'s model: GPTQ calibrated on the teacher's data."""
    teacher, student = pair
    target, _ = speculative_pair(Run.open(student.path), speculate=True)
    x = torch.randint(0, 60, (2, 12))
    with torch.no_grad():
        assert torch.equal(target(x), strata.open_model(teacher.path).model(x))
    assert target.strata_calibrated.endswith(f"of {teacher.path}'s data ({teacher.path.parent / 'a.txt'})")


def test_a_calibrated_teacher_needs_the_run_its_weights_came_from(pair, tmp_path, capsys):
    teacher, _ = pair
    shutil.copy(teacher.weights(), tmp_path / "bare.safetensors")  # no run folder around it
    shutil.copy(teacher.path.parent / "teacher.arch", tmp_path / "teacher.arch")
    student = _student(tmp_path, "bare.safetensors")
    data = write(tmp_path / "a.txt", text())
    code = main(["train", str(student), "--data", str(data), "--out", str(tmp_path / "s"), "--steps", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "distill: the teacher's quantize(int4_weight, group_size=32, method=gptq) calibrates on the data its " \
           f"weights trained on, and {tmp_path / 'bare.safetensors'} came from no run" in err, err
    assert "--teacher-weights RUN_DIR" in err and not (tmp_path / "s").exists()


def test_a_draft_or_teacher_is_calibrated_once_for_every_generate_call(pair, monkeypatch):
    """Run.generate(draft=...) and (speculate=True) opened, compiled and calibrated the
    other model again on every call, while the run's own model was kept; the run keeps
    it too, by its path and weights: a second call calibrates nothing, another draft
    is its own."""
    teacher, student = pair
    calls = []
    for module in (run_module, teacher_module):
        monkeypatch.setattr(module, "calibrate", lambda g, _real=module.calibrate, **kw:
                            calls.append(os.path.normpath(kw["whose"])) or _real(g, **kw))
    t, s = Run.open(teacher.path), Run.open(student.path)  # nothing compiled yet
    args = {"tokens": 8, "temperature": 0}
    want = t.generate("the cat", draft=str(student.path), **args)
    assert t.generate("the cat", draft=str(student.path), **args) == want
    assert t.also_calibrated[0].startswith("the draft: calibrated")  # said on the second call too
    assert s.generate("the cat", speculate=True, **args) == s.generate("the cat", speculate=True, **args) == want
    assert s.also_calibrated[0].startswith("the teacher: calibrated")
    assert sorted(calls) == sorted([str(teacher.path), str(student.path)] * 2), calls
    # another draft (beside the student: its distill pass names ../teacher.arch): compiled for itself
    other = shutil.copytree(student.path, student.path.parent / "s_copy", dirs_exist_ok=True)
    assert t.generate("the cat", draft=str(other), **args) == want
    assert calls[4:] == [str(other)], calls
