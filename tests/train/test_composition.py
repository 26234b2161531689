"""Regression tests for the joints a new user hit, each reproduced first: specs of
one's own in folders of one's own, features combined as the docs describe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.optional import require

torch = require("torch")

from strata.cli import main  # noqa: E402
from strata.compiler import build_file  # noqa: E402
from strata.train.settings import resolve_settings  # noqa: E402
from tests.matrix_specs import BASE, ENCDEC, PLAIN  # noqa: E402

TEACHER = BASE.replace("model base", "model teacher")  # with its own train section and data


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "internal error" not in err, err
    return code, out, err


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """specs/teacher.arch with its own data and train section; the user works in work/."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "specs" / "teacher.arch").write_text(TEACHER)
    from strata.train.data import builtin_text

    (tmp_path / "specs" / "corpus.txt").write_text(builtin_text()[:40_000])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_train_section_without_an_optimizer_trains(tmp_path, capsys):
    """Once: `internal error: KeyError: 'lr'` for `train { steps = 2 }` and for no train section."""
    for i, extra in enumerate(["train { steps = 2 }\n", ""]):
        spec = tmp_path / f"s{i}.arch"
        spec.write_text(PLAIN + extra)
        code, _, err = cli(capsys, "train", spec, "--out", tmp_path / f"r{i}", "--steps", 2, "-q")
        assert code == 0, err
        info = json.loads((tmp_path / f"r{i}" / "run.json").read_text())
        assert info["settings"]["optimizer"] == {"type": "adamw", "lr": 3e-4, "betas": [0.9, 0.999],
                                                 "weight_decay": 0.0, "eps": 1e-8}
        assert info["settings"]["schedule"] == {"type": "constant", "warmup": 0}


def test_train_settings_are_inherited_key_by_key_through_extends(folders):
    (folders / "work" / "student.arch").write_text(
        'import "../specs/teacher.arch"\nmodel student extends teacher { d = 16 }\ntrain { steps = 7 }\n')
    cfg = resolve_settings(build_file("work/student.arch"))
    assert cfg["steps"] == 7  # the derived file's own
    assert cfg["tokenizer"] == "byte" and cfg["batch"] == 4  # the base file's
    assert cfg["optimizer"]["lr"] == 2e-3 and cfg["schedule"]["type"] == "cosine"
    assert Path(cfg["data"]).resolve() == (folders / "specs" / "corpus.txt").resolve()


def test_passes_are_inherited_whole_and_replaced_whole(folders):
    (folders / "specs" / "q.arch").write_text(TEACHER.replace("model teacher", "model q")
                                              + "passes { quantize(int8_dynamic) }\n")
    imp = 'import "../specs/q.arch"\n'
    cases = {"": ["quantize"], "passes { fuse_qkv }\n": ["fuse_qkv"], "passes { }\n": []}
    for section, names in cases.items():
        (folders / "work" / "s.arch").write_text(imp + "model s extends q { d = 16 }\n" + section)
        assert [p["name"] for p in build_file("work/s.arch").graph["passes"]] == names


def test_distill_paths_resolve_against_the_file_that_writes_them(folders, capsys, monkeypatch):
    """In specs/lib.arch, distill("teacher.arch", weights="runs/teacher") names
    specs/teacher.arch and specs/runs/teacher, whoever extends it from work/."""
    code, _, err = cli(capsys, "train", "specs/teacher.arch", "--out", "specs/runs/teacher", "--steps", 2, "-q")
    assert code == 0, err
    (folders / "specs" / "lib.arch").write_text(
        'import "teacher.arch"\nmodel small extends teacher { d = 16 }\n'
        'passes { distill("teacher.arch", weights="runs/teacher") }\n')
    (folders / "work" / "student.arch").write_text(
        'import "../specs/lib.arch"\nmodel student extends small { d = 24 }\n')
    code, _, err = cli(capsys, "train", "work/student.arch", "--out", "work/runs/student", "--steps", 2)
    assert code == 0, err
    assert "distill: teacher teacher" in err and "specs/runs/teacher/model.safetensors" in err
    g = build_file("work/student.arch")
    assert g.graph["passes"][0]["options"]["teacher"] == "../specs/teacher.arch"
    assert g.graph["passes"][0]["options"]["weights"] == "../specs/runs/teacher"
    # from another folder, the run's spec still finds its teacher, and resumes with it
    (folders / "elsewhere").mkdir()
    monkeypatch.chdir(folders / "elsewhere")
    run = folders / "work" / "runs" / "student"
    code, _, err = cli(capsys, "eval", run, "--max-batches", 1)
    assert code == 0, err
    code, _, err = cli(capsys, "train", folders / "work" / "student.arch", "--out", run, "--resume",
                       "--steps", 3)
    assert code == 0 and "distill: teacher teacher" in err, err


def test_a_quantized_run_evaluates_and_generates(folders, capsys):
    """Once: "this model is quantized: load float weights before quantizing"."""
    (folders / "work" / "q.arch").write_text(PLAIN + "passes { quantize(int8_dynamic) }\n")
    assert cli(capsys, "train", "work/q.arch", "--out", "r", "--steps", 2, "-q")[0] == 0
    code, out, err = cli(capsys, "eval", "r", "--max-batches", 2)
    assert code == 0 and "perplexity" in out, err
    code, out, err = cli(capsys, "generate", "r", "--tokens", 5, "--temperature", 0)
    assert code == 0, err


def test_compress_of_an_encoder_decoder_and_what_it_writes(folders, capsys):
    """Once: `forward() missing 1 required positional argument: 'tgt'` and a
    half-written folder.  Now: a whole folder that eval / generate / compile take,
    and whose eval agrees with compress --eval."""
    (folders / "work" / "s2s.arch").write_text(ENCDEC)
    assert cli(capsys, "train", "work/s2s.arch", "--out", "r", "--steps", 2, "-q")[0] == 0
    code, out, err = cli(capsys, "compress", "r", "--pass", "quantize(int8_dynamic)", "-o", "small", "--eval",
                         "--max-batches", 2)
    assert code == 0, err
    report = json.loads(Path("small/report.json").read_text())
    assert report["source_run"]["objective"]["name"] == "seq2seq"
    assert sorted(p.name for p in Path("small").iterdir()) == [
        "model.arch", "report.json", "tokenizer.json", "weights.safetensors"]
    code, out, err = cli(capsys, "eval", "small", "--max-batches", 2, "--json")
    assert code == 0, err
    assert json.loads(out)["loss"] == pytest.approx(report["eval"]["compressed"]["loss"], rel=1e-6)
    assert cli(capsys, "generate", "small", "--prompt", "a b c", "--tokens", 3)[0] == 0
    assert cli(capsys, "compile", "small", "-o", "small.py")[0] == 0


def test_compress_writes_its_folder_whole_or_not_at_all(folders, capsys, monkeypatch):
    (folders / "work" / "p.arch").write_text(PLAIN)
    assert cli(capsys, "train", "work/p.arch", "--out", "r", "--steps", 2, "-q")[0] == 0
    import strata.backends.torch.workflows.compress as C

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(C, "_sqnr", broken)  # fails after model.arch and the weights are written
    assert main(["compress", "r", "--pass", "quantize(int8_dynamic)", "-o", "out"]) == 3
    assert "disk on fire" in capsys.readouterr().err
    assert not Path("out").exists()
    assert not [p for p in folders.iterdir() if p.name.startswith(".out.")]  # no temporary left
    monkeypatch.undo()
    monkeypatch.chdir(folders)
    assert cli(capsys, "compress", "r", "--pass", "quantize(int8_dynamic)", "-o", "out")[0] == 0
    before = {p.name: p.read_bytes() for p in Path("out").iterdir()}
    monkeypatch.setattr(C, "_sqnr", broken)
    assert main(["compress", "r", "--pass", "quantize(int8_weight)", "-o", "out", "--overwrite"]) == 3
    assert "disk on fire" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in Path("out").iterdir()} == before  # untouched


def test_every_command_takes_what_the_user_has(folders, capsys):
    """A run folder, a compress output folder, or a spec with --weights (any of
    them), wherever weights are read."""
    (folders / "work" / "p.arch").write_text(PLAIN)
    assert cli(capsys, "train", "work/p.arch", "--out", "r", "--steps", 2, "-q")[0] == 0
    # compress: a run folder as --weights (once "not a regular file (a directory)"), or alone
    assert cli(capsys, "compress", "work/p.arch", "--weights", "r", "--pass", "quantize(int8_dynamic)",
               "-o", "c1")[0] == 0
    assert cli(capsys, "compress", "r", "--pass", "low_rank(4)", "-o", "c2")[0] == 0
    # eval / generate: a compress output, a spec with a run or a file as weights
    for source in (["c1"], ["c2"], ["work/p.arch", "--weights", "r"],
                   ["work/p.arch", "--weights", "r/model.safetensors"]):
        code, _, err = cli(capsys, "eval", *source, "--max-batches", 1)
        assert code == 0, (source, err)
        code, _, err = cli(capsys, "generate", *source, "--tokens", 2)
        assert code == 0, (source, err)
    # a spec with weights that carry no tokenizer: eval says what is missing
    import shutil

    shutil.copy("r/model.safetensors", "bare.safetensors")
    code, _, err = cli(capsys, "generate", "work/p.arch", "--weights", "bare.safetensors")
    assert code == 2 and "no tokenizer came with these weights" in err
    assert err.startswith("strata: error: bare.safetensors: ")  # the weights named, not work/
    # compile: a run folder or a compress output is a source
    assert cli(capsys, "compile", "r", "-o", "r.py")[0] == 0
    assert cli(capsys, "compile", "c2", "-o", "c2.py")[0] == 0
    assert "low_rank" in Path("c2.py").read_text() or "LOW_RANK" in Path("c2.py").read_text()
    import strata

    net = strata.compile("c1")
    assert net(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 300)
    # train --init and distill(weights=...) take a compress output too
    code, _, err = cli(capsys, "train", "work/p.arch", "--out", "r2", "--steps", 1, "--init", "c1", "-q")
    assert code == 0, err
    (folders / "work" / "d.arch").write_text(
        PLAIN.replace("model plain", "model d") + 'passes { distill("p.arch", weights="../c1") }\n')
    code, _, err = cli(capsys, "train", "work/d.arch", "--out", "r3", "--steps", 1, "-q")
    assert code == 0, err
    # a folder that is neither says so
    Path("empty").mkdir()
    code, _, err = cli(capsys, "eval", "empty")
    assert code == 2 and "not a run folder" in err and "not a strata compress output" in err


def test_compile_of_a_run_with_no_weights_yet_writes_its_spec(tmp_path, monkeypatch, capsys):
    """A run stopped before its first checkpoint has its spec and no weights:
    `strata compile RUN` said 'no final weights yet', though it writes source only."""
    import shutil

    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN)
    assert cli(capsys, "train", "p.arch", "--out", "r", "--steps", "1", "-q")[0] == 0
    for name in ("model.safetensors", "latest.json", "best.json"):  # as if killed before step 1
        Path("r", name).unlink()
    shutil.rmtree("r/checkpoints")
    assert "no final weights yet" in cli(capsys, "eval", "r")[2]
    code, _, err = cli(capsys, "compile", "r", "-o", "r.py")
    assert code == 0, err
    assert "class Plain(" in Path("r.py").read_text()
