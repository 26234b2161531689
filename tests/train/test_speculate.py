"""Speculative decoding from runs (strata/train/speculate.py): `strata generate
TEACHER --draft STUDENT` and `strata generate STUDENT --speculate` (the pair the
student's distill pass declares) write the teacher's greedy text, past the models'
positions too, and print the speed and the draft's acceptance; a draft with another
tokenizer, or a run without a teacher, is refused with the reason."""

from __future__ import annotations

from tests.optional import require

torch = require("torch")

import pytest

import strata
from strata.backends.torch.speculative import speculative_generate
from strata.cli import main
from strata.train.generate import GenerationStats
from tests.train.helpers import GPT, text, write
from tests.train.helpers import in_the_pairs_project  # noqa: F401 (autouse: the pair's folder is the cwd)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spec")
    data = write(tmp / "a.txt", text())
    teacher = strata.train(write(tmp / "teacher.arch", GPT), data=str(data), out=tmp / "t", steps=30,
                           progress=False)
    student = GPT.replace("tiny_gpt", "student").replace("repeat(2)", "repeat(1)").replace(
        "passes { fuse_qkv }", f'passes {{ distill("teacher.arch", weights="{teacher.path}") }}')
    student = strata.train(write(tmp / "student.arch", student), data=str(data), out=tmp / "s", steps=10,
                           progress=False)
    return teacher, student


def _generate(capsys, *argv):
    assert main(["generate", *argv]) == 0, capsys.readouterr().err
    out = capsys.readouterr()
    return out.out, out.err


def test_draft_and_speculate_write_the_teachers_greedy_text(pair, capsys):
    teacher, student = pair
    args = ["--prompt", "the cat", "--tokens", "40", "--temperature", "0"]  # ctx is 32: goes past it
    want, err = _generate(capsys, str(teacher.path), *args)
    assert "tokens/s" in err and "acceptance" not in err
    got, err = _generate(capsys, str(teacher.path), *args, "--draft", str(student.path), "--k", "3")
    assert got == want and "40 tokens in" in err and "draft acceptance" in err
    got, err = _generate(capsys, str(student.path), *args, "--speculate")
    assert got == want and "draft acceptance" in err
    stats = GenerationStats()
    assert teacher.generate("the cat", tokens=20, temperature=0, draft=str(student.path), stats=stats) == \
        teacher.generate("the cat", tokens=20, temperature=0)
    assert stats.tokens == 20 and 0 <= stats.accepted <= stats.proposed and stats.tokens_per_second > 0
    # sampling: reproducible with a seed
    a = teacher.generate("the ", tokens=15, seed=4, draft=str(student.path))
    assert a == teacher.generate("the ", tokens=15, seed=4, draft=str(student.path)) and len(a) == 19


def test_a_compress_output_drafts(pair, tmp_path, capsys):
    """--draft OUT (the student quantized by strata compress) was refused as 'not a
    run folder'; the draft opens as every source does, and the text stays the
    teacher's greedy text."""
    teacher, student = pair
    out = tmp_path / "small"
    assert main(["compress", str(student.path), "--pass", "quantize(int8_dynamic)", "-o", str(out)]) == 0
    capsys.readouterr()
    args = ["--prompt", "the cat", "--tokens", "20", "--temperature", "0"]
    want, _ = _generate(capsys, str(teacher.path), *args)
    got, err = _generate(capsys, str(teacher.path), *args, "--draft", str(out))
    assert got == want and "draft acceptance" in err


def test_a_draft_with_fewer_positions_does_not_shorten_what_the_target_reads(pair, tmp_path):
    """The draft (ctx 16) drafts while the text fits it; the target (ctx 32) goes on
    alone, still reading up to 32 tokens: its own greedy text."""
    teacher, _ = pair
    short = GPT.replace("tiny_gpt", "short").replace("position(learned, 32)", "position(learned, 16)")
    draft = strata.train(write(tmp_path / "short.arch", short), data=str(teacher.path.parent / "a.txt"),
                         out=tmp_path / "short", steps=1, progress=False)
    for prompt in ("the cat", "the cat sat on the mat and the"):  # 7 and 30 characters: under and past 16
        want = teacher.generate(prompt, tokens=30, temperature=0)
        assert teacher.generate(prompt, tokens=30, temperature=0, draft=str(draft.path)) == want
    # --compile's warm-up drafted 2k + 2 = 18 tokens whatever the draft's 16 positions (an index
    # out of bounds in the compiled kernel); it drafts within the positions both models have
    assert teacher.generate("the cat", tokens=30, temperature=0, draft=str(draft.path), compile=True, k=8) == \
        teacher.generate("the cat", tokens=30, temperature=0)


def test_refusals(pair, tmp_path, capsys):
    teacher, student = pair
    other = strata.train(write(tmp_path / "o.arch", GPT), data=str(write(tmp_path / "o.txt", "XYZ QRS.\n" * 300)),
                         out=tmp_path / "o", steps=2, progress=False)
    assert main(["generate", str(teacher.path), "--draft", str(other.path), "-q"]) == 2
    assert "use different tokenizers" in capsys.readouterr().err
    assert main(["generate", str(teacher.path), "--speculate"]) == 2
    assert "no distill(teacher, ...) pass" in capsys.readouterr().err
    assert main(["generate", str(student.path), "--speculate", "--k", "9"]) == 2
    assert "--k" in capsys.readouterr().err


def test_compiled_speculative_decoding_is_the_teachers_greedy_text(pair, capsys):
    """--compile with --draft: both models' reads compiled (the target's verify
    reads 2 .. k + 1 tokens; sizes are symbolic: a few graphs, not one per k), the
    text still the teacher's."""
    from torch._dynamo.utils import counters

    teacher, student = pair
    args = ["--prompt", "the cat", "--tokens", "24", "--temperature", "0"]
    want, _ = _generate(capsys, str(teacher.path), *args)
    counters.clear()
    got, err = _generate(capsys, str(teacher.path), *args, "--draft", str(student.path), "--compile")
    assert got == want and "compiling the decoding step took" in err and "draft acceptance" in err
    t, d = teacher.model.eval(), student.model.eval()
    ids = torch.tensor([[3, 4, 5]])
    want = speculative_generate(t, d, ids, 16, compile=False)[0]
    counters.clear()
    for k in (4, 2, 3, 1):
        assert torch.equal(speculative_generate(t, d, ids, 16, compile=True, k=k)[0], want)
    # bounded, not one graph per length: a model's one-token steps, its reads of several
    # tokens at the start and after cached ones (the attention's and the mask's branches)
    assert counters["stats"]["unique_graphs"] <= 6, dict(counters["stats"])


def test_seq2seq_pair_of_the_seed_example(tmp_path, capsys, monkeypatch):
    """The seed's encoder-decoder teacher and its distilled student: --draft and
    --speculate give the teacher's greedy reversal (each model encodes the source
    once; the student drafts the target)."""
    import shutil
    from pathlib import Path

    monkeypatch.chdir(tmp_path)  # the project: the student's run reads its teacher's weights there only
    seed = Path(__file__).resolve().parents[2] / "examples" / "seed"
    for name in ("teacher.arch", "student.arch"):
        shutil.copy(seed / name, tmp_path / name)
    small = dict(batch=4, eval_steps=1, eval_every=100)
    teacher = strata.train(tmp_path / "teacher.arch", out=tmp_path / "t", steps=12, progress=False, **small)
    student = strata.train(tmp_path / "student.arch", out=tmp_path / "s", steps=4, progress=False, **small,
                           teacher_weights=str(teacher.path))
    args = ["--prompt", "the quick brown fox", "--tokens", "30", "--temperature", "0"]
    want, _ = _generate(capsys, str(teacher.path), *args)
    got, err = _generate(capsys, str(teacher.path), *args, "--draft", str(student.path), "--k", "2")
    assert got == want and "draft acceptance" in err
    got, err = _generate(capsys, str(student.path), *args, "--speculate")
    assert got == want and "draft acceptance" in err


def test_sampling_lets_a_poor_draft_stop_only_without_a_seed(pair, monkeypatch):
    """Stopping on timings changes which random draws are made: allowed when sampling
    with no seed, not with one (the seed reproduces the text), always when greedy."""
    import strata.train.generate as gen

    teacher, student = pair
    seen = []

    def spy(*args, stop_drafting=None, **kwargs):
        seen.append(stop_drafting)
        return speculative_generate(*args, stop_drafting=stop_drafting, **kwargs)

    monkeypatch.setattr(gen, "speculative_generate", spy)
    for seed, temperature in ((None, 1.0), (4, 1.0), (4, 0.0)):
        teacher.generate("the ", tokens=6, seed=seed, temperature=temperature, draft=str(student.path))
    assert seen == [True, False, True]


def test_a_generation_too_short_to_draft_says_so():
    """Five new tokens are all plain rounds (they time the target): the line said
    'draft acceptance 0% (0 of 0 draft tokens)', a draft that never got a turn
    read as one that was always wrong."""
    line = GenerationStats(tokens=5, seconds=0.5, proposed=0, accepted=0).line()
    assert "0%" not in line and "no token drafted" in line
    line = GenerationStats(tokens=20, seconds=0.5, proposed=8, accepted=2).line()
    assert "draft acceptance 25% (2 of 8 draft tokens)" in line


def test_a_seq2seq_draft_with_fewer_positions_changes_only_the_speed(tmp_path):
    """An encoder-decoder draft of 8 positions for a target of 64: the source was cut
    to 7 tokens and the target to 7 new ones for both models, so the target's text
    depended on its draft.  The draft reads the source cut to its own positions and
    drafts while the target fits them; the target reads all of its source and goes on
    alone: its own greedy text."""
    from tests.train.helpers import SEQ2SEQ

    teacher = strata.train(write(tmp_path / "t.arch", SEQ2SEQ), out=tmp_path / "t", steps=1, progress=False)
    short = SEQ2SEQ.replace("tiny_s2s", "short").replace("position(sinusoidal, 64)", "position(sinusoidal, 8)")
    draft = strata.train(write(tmp_path / "s.arch", short), out=tmp_path / "s", steps=1, context=8,
                         progress=False)
    for prompt in ("the cat", "the cat sat on the mat and the dog ran far"):  # 7 and 42 characters: under and past 8
        want = teacher.generate(prompt, tokens=30, temperature=0)
        stats = GenerationStats()
        assert teacher.generate(prompt, tokens=30, temperature=0, draft=str(draft.path), stats=stats) == want
        assert len(want) > 7 and stats.proposed is not None  # drafted (while the text fit the draft)


# a teacher and its student in one file: the file's passes are the student's
ONE_FILE = GPT.replace("passes { fuse_qkv }", 'model student extends tiny_gpt {\n  d = 16\n}\n\n'
                       'passes {\n  fuse_qkv\n  distill(tiny_gpt, weights="runs/teacher")\n}')


def test_a_teacher_and_its_student_of_one_file_train_evaluate_and_speculate(tmp_path, monkeypatch, capsys):
    """`model tiny_gpt` and `model student extends tiny_gpt` in one file whose passes
    distill(tiny_gpt): neither trained ('a model cannot be its own teacher': the
    student's distill applied to the teacher too).  The teacher trains without the
    file's passes, the student against it; the student's run folder (its model.arch
    holding the teacher too) evaluates and decodes speculatively, also once the
    project is moved and the spec file is gone."""
    import json
    import shutil

    proj = tmp_path / "proj"
    proj.mkdir()
    write(proj / "a.txt", text())
    write(proj / "pair.arch", ONE_FILE)
    monkeypatch.chdir(proj)
    train = ["train", "pair.arch", "--data", "a.txt", "-q"]
    assert main([*train, "--model", "tiny_gpt", "--out", "runs/teacher", "--steps", "20"]) == 0, \
        capsys.readouterr().err
    assert main([*train, "--steps", "3"]) == 0, capsys.readouterr().err  # the last model: runs/student
    capsys.readouterr()
    assert "passes" not in (proj / "runs" / "teacher" / "model.arch").read_text()
    spec = (proj / "runs" / "student" / "model.arch").read_text()
    assert spec.index("model tiny_gpt {") < spec.index("model student {") and \
        'distill("tiny_gpt", weights="../teacher")' in spec, spec
    assert json.loads((proj / "runs" / "student" / "run.json").read_text())["spec_copy"] == "model.arch"
    assert main(["eval", "runs/student", "--max-batches", "1"]) == 0
    assert "a.txt (validation split): loss" in capsys.readouterr().out
    args = ["--prompt", "the cat", "--tokens", "20", "--temperature", "0"]
    want, _ = _generate(capsys, "runs/teacher", *args)
    got, err = _generate(capsys, "runs/student", *args, "--speculate")
    assert got == want and "draft acceptance" in err
    moved = tmp_path / "moved"
    shutil.move(proj, moved)
    (moved / "pair.arch").unlink()
    monkeypatch.chdir(moved)
    got, err = _generate(capsys, "runs/student", *args, "--speculate")
    assert got == want and "draft acceptance" in err


@pytest.mark.slow
def test_a_compiled_seq2seq_pair_does_not_recompile_after_its_warm_up(tmp_path, monkeypatch):
    """--compile with an encoder-decoder draft of fewer positions: the warm-up read a
    one-token source ([EOS]), a size torch.compile specializes, so the real sources
    (the target's whole, the draft's cut to its 8 positions) compiled both models'
    reads again while the clock ran.  It warms up on the sources it will read."""
    from torch._dynamo.utils import counters

    from strata.train.objectives.seq2seq import Seq2Seq
    from tests.train.helpers import SEQ2SEQ

    teacher = strata.train(write(tmp_path / "t.arch", SEQ2SEQ), out=tmp_path / "t", steps=1, progress=False)
    short = SEQ2SEQ.replace("tiny_s2s", "short").replace("position(sinusoidal, 64)", "position(sinusoidal, 8)")
    draft = strata.train(write(tmp_path / "s.arch", short), out=tmp_path / "s", steps=1, context=8,
                         progress=False)
    warm_up = Seq2Seq.warm_up

    def then_count(*args, **kwargs):  # what compiles after the warm-up
        warm_up(*args, **kwargs)
        counters.clear()

    monkeypatch.setattr(Seq2Seq, "warm_up", then_count)
    prompt = "the cat sat on the mat and the dog ran far"  # 42 characters: past the draft's 8
    want = teacher.generate(prompt, tokens=20, temperature=0)
    counters.clear()
    assert teacher.generate(prompt, tokens=20, temperature=0, draft=str(draft.path), compile=True) == want
    assert counters["stats"]["unique_graphs"] == 0 and not counters["recompiles"], dict(counters["stats"])
    # Run.generate again (another source length): the kept draft's compiled reads, none compiled anew
    monkeypatch.setattr(Seq2Seq, "warm_up", warm_up)
    counters.clear()
    want = teacher.generate("a big red dog", tokens=20, temperature=0)
    assert teacher.generate("a big red dog", tokens=20, temperature=0, draft=str(draft.path), compile=True) == want
    assert counters["stats"]["unique_graphs"] == 0 and not counters["recompiles"], dict(counters["stats"])


def test_speculate_does_not_say_whether_a_teacher_spec_outside_the_run_exists(pair, tmp_path, capsys):
    """A run folder from someone else whose model.arch names a teacher spec outside it
    and the working directory: refused the same whether a file is there or not (it
    said "the teacher's spec ... is gone" for a missing one, so a run could probe
    which files the user has).  Within first, then existence."""
    import re
    import shutil

    _, student = pair
    said = []
    for name in ("there.arch", "gone.arch"):
        run = tmp_path / f"run_{name}"
        shutil.copytree(student.path, run)
        write(tmp_path / "there.arch", "SECRET\n")
        spec = (run / "model.arch").read_text()
        (run / "model.arch").write_text(re.sub(r'distill\("[^"]*"', f'distill("{tmp_path / name}"', spec))
        assert main(["generate", str(run), "--speculate", "--tokens", "2"]) == 2
        err = capsys.readouterr().err
        assert "SECRET" not in err and "outside the run folder" in err, err
        said.append(err.replace(str(run), "RUN").replace(name, "NAME"))
    assert said[0] == said[1]
