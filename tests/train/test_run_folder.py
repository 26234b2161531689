"""A run folder keeps working when the project folder is moved, renamed or
copied, or when the run folder alone is copied elsewhere: it holds its spec as
trained (RUN/model.arch, imports and `extends` resolved into one file) and
records its data relative to itself.  A run folder written before that (run.json
naming its spec by an absolute path, and nothing else) loads as it did."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.optional import require

torch = require("torch")

import strata  # noqa: E402
from strata.cli import main  # noqa: E402
from strata.train.data import builtin_text  # noqa: E402
from tests.matrix_specs import BASE, DERIVED  # noqa: E402


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "internal error" not in err and "Traceback" not in err, err
    return code, out, err


@pytest.fixture
def project(tmp_path, monkeypatch, capsys):
    """proj/work/derived.arch extends proj/lib/base.arch (another folder, with its own
    train section and data); trained 2 steps from proj/work on --data ../data/text.txt
    into proj/work/runs/d."""
    proj = tmp_path / "proj"
    for sub in ("lib", "work", "data"):
        (proj / sub).mkdir(parents=True)
    (proj / "lib" / "base.arch").write_text(BASE)
    (proj / "lib" / "corpus.txt").write_text(builtin_text()[20_000:40_000])  # the spec's data, not the run's
    (proj / "data" / "text.txt").write_text(builtin_text()[:20_000])
    (proj / "work" / "derived.arch").write_text(DERIVED)
    monkeypatch.chdir(proj / "work")
    code, _, err = cli(capsys, "train", "derived.arch", "--data", "../data/text.txt", "--out", "runs/d",
                       "--steps", 2, "-q")
    assert code == 0, err
    return proj


def _info(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def test_the_run_folder_holds_its_spec_and_data_path(project):
    run = project / "work" / "runs" / "d"
    info = _info(run)
    assert info["spec_copy"] == "model.arch" and "model.arch" in info["files"]
    text = (run / "model.arch").read_text()
    assert "import \"" not in text and " extends " not in text and "model derived {" in text
    assert "d     = 16" in text and 'data      = "../../../lib/corpus.txt"' in text  # relative to the run
    assert info["data"]["from_run"] == "../../../data/text.txt"
    assert info["data"]["path"] == str((project / "data" / "text.txt").resolve())


def test_a_moved_project_evaluates_generates_compresses_exports_and_resumes(project, tmp_path, capsys,
                                                                           monkeypatch):
    sha = _info(project / "work" / "runs" / "d")["data"]["sha256"]
    moved = tmp_path / "renamed"
    shutil.move(project, moved)
    monkeypatch.chdir(moved / "work")
    code, out, err = cli(capsys, "eval", "runs/d", "--max-batches", 1)
    assert code == 0 and "renamed/data/text.txt (validation split)" in out, err
    code, out, err = cli(capsys, "generate", "runs/d", "--tokens", 3, "--temperature", 0, "-q")
    assert code == 0, err
    # --calibration RUN reads the run's data where it is now; the output evaluates on it too
    code, _, err = cli(capsys, "compress", "runs/d", "--pass", "quantize(int8_dynamic)", "-o", "../small",
                       "--calibration", "runs/d")
    assert code == 0, err
    code, out, err = cli(capsys, "eval", "../small", "--max-batches", 1)
    assert code == 0 and "text.txt" in out, err
    code, _, err = cli(capsys, "export", "runs/d", "-o", "../exported")
    assert code == 0 and (moved / "exported" / "model.safetensors").is_file(), err
    net = strata.compile("runs/d")
    assert net(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 300)
    # --resume reads the run's own data (not the spec's lib/corpus.txt), found relative to the run
    code, out, err = cli(capsys, "train", "derived.arch", "--out", "runs/d", "--resume", "--steps", 3, "-q")
    assert code == 0 and "runs/d: step 3" in out, err
    info = _info(moved / "work" / "runs" / "d")
    assert info["data"]["sha256"] == sha and info["data"]["path"] == str(moved / "data" / "text.txt")


def test_a_run_folder_copied_alone_evaluates_and_generates(project, tmp_path, capsys, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copytree(project / "work" / "runs" / "d", elsewhere / "d")
    monkeypatch.chdir(elsewhere)
    code, out, err = cli(capsys, "eval", "d", "--max-batches", 1)  # its data still at its absolute path
    assert code == 0 and "text.txt" in out, err
    shutil.rmtree(project)  # the spec, its base and the data gone: the run folder alone
    code, out, err = cli(capsys, "generate", "d", "--tokens", 3, "--temperature", 0, "-q")
    assert code == 0, err
    code, out, err = cli(capsys, "eval", "d", "--max-batches", 1)
    assert code == 2 and len(err.splitlines()) == 1, err
    # its recorded absolute path is outside the run folder and the working directory: that
    # it is gone is not said (a run.json from someone else must not learn what is there)
    assert err.startswith("strata: error: d: its data (../data/text.txt) is recorded at ") and \
        ", outside the run folder and the working directory, where strata reads a run's data only" in err \
        and err.rstrip().endswith("; give --data"), err
    Path("other.txt").write_text(builtin_text()[:3000])
    code, out, err = cli(capsys, "eval", "d", "--data", "other.txt", "--max-batches", 1)
    assert code == 0 and "other.txt" in out, err
    # --resume of the copy: the run's data is gone, and the spec names none to fall back on
    Path("s.arch").write_text((elsewhere / "d" / "model.arch").read_text())
    code, _, err = cli(capsys, "train", "d/model.arch", "--out", "d", "--resume", "--steps", 3, "-q")
    assert code == 2 and "the data the run trained on (../data/text.txt) is recorded at " in err, err
    assert "give --data with where it is now to resume" in err and len(err.splitlines()) == 1
    code, out, err = cli(capsys, "train", "d/model.arch", "--out", "d", "--resume", "--steps", 3, "-q",
                         "--data", "other.txt")
    assert code == 0 and "d: step 3" in out, err


def test_the_runs_spec_is_what_loads_and_resume_refuses_a_changed_one(project, capsys):
    spec = project / "work" / "derived.arch"
    spec.write_text(DERIVED.replace("d = 16", "d = 24"))  # the user's spec changes its shapes
    code, out, err = cli(capsys, "eval", "runs/d", "--max-batches", 1)  # built from RUN/model.arch
    assert code == 0, err
    code, _, err = cli(capsys, "train", "derived.arch", "--out", "runs/d", "--resume", "--steps", 3, "-q")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("strata: error: runs/d: --resume: derived.arch has changed since the run trained "
                          "it: it no longer fits the run's weights (step 2): decoder.wte.weight is "
                          "[300, 24] in the spec, [300, 16] in the run (and 35 more); resume with the spec "
                          "as the run trained it (strata train runs/d/model.arch --out runs/d --resume)"), err
    code, out, err = cli(capsys, "train", "runs/d/model.arch", "--out", "runs/d", "--resume", "--steps", 3,
                         "-q")
    assert code == 0 and "runs/d: step 3" in out, err
    # a change that keeps the shapes resumes, and is then the run's spec
    spec.write_text(DERIVED + "train { eval_every = 2 }\n")
    code, out, err = cli(capsys, "train", "derived.arch", "--out", "runs/d", "--resume", "--steps", 4, "-q")
    assert code == 0 and "runs/d: step 4" in out, err
    assert "eval_every = 2" in (project / "work" / "runs" / "d" / "model.arch").read_text()


def test_an_old_run_folder_loads_as_before(project, tmp_path, capsys, monkeypatch):
    """run.json as strata wrote it before model.arch: the spec's absolute path, the
    data's absolute path; no spec_copy, no from_run."""
    run = project / "work" / "runs" / "d"
    info = _info(run)
    del info["spec_copy"], info["data"]["from_run"]
    info["files"].remove("model.arch")
    (run / "run.json").write_text(json.dumps(info, indent=1))
    (run / "model.arch").unlink()
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "eval", run, "--max-batches", 1)
    assert code == 0 and "text.txt" in out, err
    code, _, err = cli(capsys, "generate", run, "--tokens", 3, "-q")
    assert code == 0, err
    code, _, err = cli(capsys, "compress", run, "--pass", "quantize(int8_dynamic)", "-o", "small",
                       "--calibration", run)
    assert code == 0, err
    assert strata.compile(str(run)).strata_graph.graph.name == "derived"
    shutil.move(project, tmp_path / "renamed")  # as before: its spec is gone
    code, _, err = cli(capsys, "eval", tmp_path / "renamed" / "work" / "runs" / "d")
    assert code == 2 and f"its spec {project / 'work' / 'derived.arch'} is gone" in err, err


def test_compile_of_a_run_folder_never_imports_torch(project):
    """`strata compile RUN` writes source from the run's model.arch and run.json:
    it imported torch (2.6 s of a 3 s command) where `strata compile SPEC` does
    not.  The source is the spec's, named as the run's copy of it."""
    work = project / "work"
    code = ("import sys; from strata.cli import main; "
            "assert main(['compile', 'runs/d', '-o', 'run.py']) == 0; "
            "assert main(['compile', 'runs/d/model.arch', '-o', 'spec.py']) == 0; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "run.py").read_text() == (work / "spec.py").read_text()
    assert "class Derived(" in (work / "run.py").read_text()


def test_a_spec_that_cannot_stand_alone_still_trains(tmp_path, capsys, monkeypatch):
    """Should the writer fail on a spec, the run trains as runs did before they kept a
    copy (loading from the spec file), and says so."""
    import strata.train.start_record as record
    from strata.errors import UsageError

    def cannot(*a, **k):
        raise UsageError("compress: cannot find where x is written")

    monkeypatch.setattr(record, "run_spec", cannot)
    monkeypatch.chdir(tmp_path)
    Path("corpus.txt").write_text(builtin_text()[:20_000])
    Path("base.arch").write_text(BASE)
    code, _, err = cli(capsys, "train", "base.arch", "--out", "r", "--steps", 1)
    assert code == 0, err
    assert "note: r/model.arch not written (compress: cannot find where x is written); the run loads " \
           "from base.arch while it is there" in err
    assert not Path("r/model.arch").exists() and _info(Path("r"))["spec_copy"] is None
    assert cli(capsys, "generate", "r", "--tokens", 2, "-q")[0] == 0


def _distilled(proj: Path, capsys, monkeypatch) -> None:
    """proj/teacher.arch trained into proj/runs/teacher; proj/student.arch, whose
    distill("teacher.arch") names no weights, trained into proj/runs/student with
    --teacher-weights runs/teacher (from proj, the current folder after)."""
    from tests.train.helpers import GPT, text

    proj.mkdir()
    (proj / "a.txt").write_text(text())
    (proj / "teacher.arch").write_text(GPT)
    (proj / "student.arch").write_text(GPT.replace("tiny_gpt", "student").replace("d = 32", "d = 16").replace(
        "passes { fuse_qkv }", 'passes { distill("teacher.arch") }'))
    monkeypatch.chdir(proj)
    assert cli(capsys, "train", "teacher.arch", "--data", "a.txt", "--out", "runs/teacher", "--steps", 20,
               "-q")[0] == 0
    code, _, err = cli(capsys, "train", "student.arch", "--data", "a.txt", "--out", "runs/student", "--steps", 3,
                       "--teacher-weights", "runs/teacher", "-q")
    assert code == 0, err


def test_a_student_naming_its_teachers_spec_keeps_its_own_spec_from_the_first_start(tmp_path, capsys,
                                                                                   monkeypatch):
    """model.arch's distill("../../teacher.arch") was checked before the run folder
    existed, and a path through a folder not made yet resolves nowhere: a new
    student's run kept no model.arch (only --resume wrote it), so it needed its spec
    file where it was."""
    proj = tmp_path / "proj"
    _distilled(proj, capsys, monkeypatch)
    assert _info(proj / "runs" / "student")["spec_copy"] == "model.arch"
    assert 'distill("../../teacher.arch")' in (proj / "runs" / "student" / "model.arch").read_text()


def test_a_moved_student_finds_its_teachers_weights(tmp_path, capsys, monkeypatch):
    """`--teacher-weights runs/teacher` was recorded by its absolute path alone, so a
    moved project's `generate STUDENT --speculate` looked for the teacher where the
    project was.  It is recorded relative to the run folder too, found there first;
    an older run.json (the absolute path alone) loads as before; found nowhere, one
    line names both places and --teacher-weights, which then gives them."""
    proj = tmp_path / "proj"
    _distilled(proj, capsys, monkeypatch)
    info = _info(proj / "runs" / "student")
    assert info["teacher_weights"] == str((proj / "runs" / "teacher").resolve())
    assert info["teacher_weights_from_run"] == "../teacher"
    args = ["--prompt", "the cat", "--tokens", 20, "--temperature", 0]
    code, want, err = cli(capsys, "generate", "runs/teacher", *args)
    assert code == 0, err

    moved = tmp_path / "moved"
    shutil.move(proj, moved)
    monkeypatch.chdir(moved)
    code, got, err = cli(capsys, "generate", "runs/student", *args, "--speculate")
    assert code == 0 and got == want and "draft acceptance" in err, err

    run = moved / "runs" / "student"
    info = _info(run)
    del info["teacher_weights_from_run"]  # an older run.json: the absolute path alone
    info["teacher_weights"] = str(moved / "runs" / "teacher")
    (run / "run.json").write_text(json.dumps(info, indent=1))
    code, got, err = cli(capsys, "generate", "runs/student", *args, "--speculate")
    assert code == 0 and got == want, err

    info["teacher_weights_from_run"] = "../teacher"
    info["teacher_weights"] = str(proj / "runs" / "teacher")  # where the project was
    (run / "run.json").write_text(json.dumps(info, indent=1))
    shutil.move(moved / "runs" / "teacher", moved / "kept")  # gone from both places
    code, _, err = cli(capsys, "generate", "runs/student", *args, "--speculate")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err == (f"strata: error: runs/student: the file of its teacher's weights (--teacher-weights when "
                   f"it trained) is not at {moved / 'runs' / 'teacher'}, and {proj / 'runs' / 'teacher'} is "
                   "outside the run folder and the working directory, where strata reads none of a run's "
                   "files (a run.json could name any file); give --teacher-weights\n")
    code, got, err = cli(capsys, "generate", "runs/student", *args, "--speculate", "--teacher-weights", "kept")
    assert code == 0 and got == want, err
    code, _, err = cli(capsys, "generate", "runs/student", *args, "--teacher-weights", "kept")
    assert code == 2 and "--teacher-weights goes with --speculate" in err, err
