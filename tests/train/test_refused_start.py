"""A `strata train` refused before its first step leaves `--out` as it found it:
a fresh folder does not exist afterwards, and the same command with the mistake
fixed then trains without --overwrite (docs/training.md, "The run folder").
Was: refusals after the folder was claimed left run.json (and tokenizer.json,
cache/) behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.optional import require

torch = require("torch")

from strata.cli import main  # noqa: E402
from tests.train.helpers import GPT, text, write  # noqa: E402


def _spec(train: str, vocab: int = 128) -> str:
    return GPT.replace("embedding(128, d)", f"embedding({vocab}, d)").replace("batch = 8", f"{train}\n  batch = 8")


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(Path("d.txt"), text(1500))
    return tmp_path


def _refused(capsys, *args, said: str) -> str:
    assert main(["train", *args, "--steps", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert said in err and err.startswith("strata: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("train, vocab, said", [
    ("tokenizer = bpe  vocab_size = 500", 128, "vocab_size = 500 is more than the model's vocabulary (128)"),
    ("tokenizer = bpe  vocab_size = 20", 300, "vocab_size = 20 is fewer than tokenizer bpe needs: at least 256"),
    ("tokenizer = bpe", 128, "tokenizer bpe needs a vocabulary of at least 256 ids"),
    ("tokenizer = byte", 128, "tokenizer byte needs a vocabulary of at least 256 ids"),
])
def test_a_tokenizer_the_model_cannot_hold_writes_nothing(project, capsys, train, vocab, said):
    write(Path("s.arch"), _spec(train, vocab))
    _refused(capsys, "s.arch", "--data", "d.txt", "--out", "new/r", said=said)
    assert not Path("new").exists()
    write(Path("s.arch"), _spec("tokenizer = char", vocab))  # fixed: no --overwrite needed
    assert main(["train", "s.arch", "--data", "d.txt", "--out", "new/r", "--steps", "1", "-q"]) == 0
    assert Path("new/r/model.safetensors").is_file()


def test_a_freeze_that_selects_nothing_writes_nothing(project, capsys):
    write(Path("g.arch"), GPT)
    _refused(capsys, "g.arch", "--data", "d.txt", "--out", "r", "--freeze", "decoder.nothing.*",
             said='--freeze "decoder.nothing.*" matches no module')
    assert not Path("r").exists()
    assert main(["train", "g.arch", "--data", "d.txt", "--out", "r", "--freeze", "decoder.wpe", "--steps", "1",
                 "-q"]) == 0
    assert Path("r/model.safetensors").is_file()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_data_too_short_for_the_context_leaves_no_folder(project, capsys):
    """The data's length in tokens is known once it is tokenized into the run's
    cache/: the refusal removes what the start wrote (run.json, tokenizer.json, cache/)."""
    write(Path("g.arch"), GPT)
    write(Path("short.txt"), "the cat sat.\n")
    Path("empty").mkdir()
    for out in ("new/r", "empty"):
        for resume in ([], ["--resume"]):  # --resume of a folder that holds no run yet is a new run
            _refused(capsys, "g.arch", "--data", "short.txt", "--out", out, *resume, said="short.txt: too short")
    assert not Path("new").exists() and list(Path("empty").iterdir()) == []
    for out in ("new/r", "empty"):
        assert main(["train", "g.arch", "--data", "d.txt", "--out", out, "--steps", "1", "-q"]) == 0


def test_a_run_set_up_but_never_trained_keeps_its_stub_and_the_users_files(project, capsys):
    from strata.train.folder import claim

    write(Path("g.arch"), GPT)
    write(Path("short.txt"), "the cat sat.\n")
    claim(Path("r"), False, False)[0].release()  # a start killed before its first step
    write(Path("r/notes.txt"), "mine")
    before = _files(Path("r"))
    for resume in ([], ["--resume"]):
        _refused(capsys, "g.arch", "--data", "short.txt", "--out", "r", *resume, said="too short")
        assert _files(Path("r")) == before
    assert main(["train", "g.arch", "--data", "d.txt", "--out", "r", "--steps", "1", "-q"]) == 0
    assert Path("r/notes.txt").read_text() == "mine"


def test_a_resumed_run_refused_keeps_every_file(project, capsys):
    write(Path("g.arch"), GPT)
    write(Path("short.txt"), "the cat sat.\n")
    assert main(["train", "g.arch", "--data", "d.txt", "--out", "r", "--steps", "1", "-q"]) == 0
    before = _files(Path("r"))
    _refused(capsys, "g.arch", "--data", "short.txt", "--out", "r", "--resume", "--steps", "2", said="too short")
    after = _files(Path("r"))
    assert {k: v for k, v in after.items() if not k.startswith("cache/")} == \
        {k: v for k, v in before.items() if not k.startswith("cache/")}
    assert main(["train", "g.arch", "--out", "r", "--resume", "--steps", "2", "-q"]) == 0


def test_an_overwrite_refused_keeps_the_old_run(project, capsys):
    """--overwrite keeps the old run aside until the new one's first step: a refusal
    before it puts the run back as it was (was: the claim removed it, leaving a stub;
    tests/train/test_overwrite.py holds the rest)."""
    write(Path("g.arch"), GPT)
    write(Path("short.txt"), "the cat sat.\n")
    assert main(["train", "g.arch", "--data", "d.txt", "--out", "r", "--steps", "1", "-q"]) == 0
    write(Path("r/notes.txt"), "mine")
    before = _files(Path("r"))
    _refused(capsys, "g.arch", "--data", "short.txt", "--out", "r", "--overwrite", said="too short")
    assert _files(Path("r")) == before and sorted(p.name for p in Path("r").iterdir()) == sorted(
        ["best.json", "cache", "checkpoints", "latest.json", "loss.png", "metrics.jsonl", "model.arch",
         "model.safetensors", "notes.txt", "run.json", "tokenizer.json"])
    assert main(["train", "g.arch", "--data", "d.txt", "--out", "r", "--steps", "1", "--overwrite", "-q"]) == 0
    assert Path("r/notes.txt").read_text() == "mine"


def test_a_teacher_of_another_vocabulary_is_refused_before_the_folder(project, capsys):
    """Was refused at the first step, as 'cannot write the run's files (...)' (exit 1),
    leaving a run.json that only --overwrite got past."""
    write(Path("t.arch"), GPT.replace("embedding(128, d)", "embedding(200, d)").replace("tiny_gpt", "big"))
    assert main(["train", "t.arch", "--data", "d.txt", "--out", "t", "--steps", "1", "-q"]) == 0
    write(Path("s.arch"), GPT.replace("passes { fuse_qkv }", 'passes { distill("t.arch", weights="t") }'))
    _refused(capsys, "s.arch", "--data", "d.txt", "--out", "s", said="distill: the teacher predicts 200 classes, "
             "the student 128: they must share the vocabulary")
    assert not Path("s").exists()
    write(Path("t.arch"), GPT.replace("tiny_gpt", "big"))
    assert main(["train", "t.arch", "--data", "d.txt", "--out", "t", "--steps", "1", "--overwrite", "-q"]) == 0
    assert main(["train", "s.arch", "--data", "d.txt", "--out", "s", "--steps", "1", "-q"]) == 0


def test_a_folder_train_cannot_have_is_said_before_the_data_is_read(project, capsys):
    """The tokenizer is fitted before the folder is claimed (a BPE fit of a large
    corpus takes a while): a folder that already holds a run, or holds no run and
    is not empty, is refused first, as it was before the fit moved."""
    write(Path("g.arch"), GPT)
    assert main(["train", "g.arch", "--data", "d.txt", "--out", "r", "--steps", "1", "-q"]) == 0
    Path("other").mkdir()
    write(Path("other/notes.txt"), "mine")
    _refused(capsys, "g.arch", "--data", "missing.txt", "--out", "r", said="r already holds a run: --resume")
    _refused(capsys, "g.arch", "--data", "missing.txt", "--out", "other", said="holds no run (no run.json)")


def test_init_weights_of_another_dtype_write_nothing(project, capsys):
    """Refused before the folder for a new run; for a run set up but never trained
    (--resume, where --init loads after the claim) the folder keeps only its stub."""
    from safetensors.torch import load_file, save_file

    from strata.train.folder import claim

    write(Path("g.arch"), GPT)
    assert main(["train", "g.arch", "--data", "d.txt", "--out", "pre", "--steps", "1", "-q"]) == 0
    save_file({k: v.half() for k, v in load_file("pre/model.safetensors").items()}, "half.safetensors")
    said = "half.safetensors: 36 tensor(s) have another dtype than the model"
    _refused(capsys, "g.arch", "--data", "d.txt", "--out", "new/r", "--init", "half.safetensors", said=said)
    assert not Path("new").exists()
    claim(Path("stub"), False, False)[0].release()
    before = _files(Path("stub"))
    _refused(capsys, "g.arch", "--data", "d.txt", "--out", "stub", "--resume", "--init", "half.safetensors",
             said=said)
    assert _files(Path("stub")) == before
    for out in ("new/r", "stub"):
        assert main(["train", "g.arch", "--data", "d.txt", "--out", out, "--init", "pre", "--steps", "1", "-q"]) == 0
