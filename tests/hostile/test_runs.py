"""Issue 20: runs under faults and hostile input — no clobbered files, no hangs,
no internal errors, for train, --resume, generate and eval.

One tiny run is trained once (`trained`); each case copies it into its own
folder, plants what it plants (links to files outside the run, FIFOs, links to
/dev/zero, wrong types in run.json) and runs the real command line under the
harness's memory limit and per-case alarm."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile.harness import (
    ROOT,
    check_all,
    ok,
    run_batch,
    snapshot,
    spec_error,
    usage_error,
)
from tests.optional import require

torch = require("torch")

SPEC = """model t {
  stack s(tokens) { embedding(128, 8) as wte; position(learned, 8); lm_head(tie=wte) }
}
train { batch = 2  context = 8  steps = 2  eval_every = 1  eval_steps = 1  checkpoint_every = 1
        optimizer = adamw(lr=1e-3) }
"""
TEXT = "the cat sat on the mat.\n" * 40
INPUTS = {"t.arch": SPEC, "a.txt": TEXT}
RESUME = ["train", "t.arch", "--data", "a.txt", "--out", "run", "--resume", "--steps", "3", "-q"]
STEP = "checkpoints/step-00000002"
REFUSED = r"(symlink|not a regular file)"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-step run (checkpoints at steps 1 and 2; step 2 kept)."""
    from strata.train import train

    base = tmp_path_factory.mktemp("base")
    for name, text in INPUTS.items():
        (base / name).write_text(text)
    train(base / "t.arch", data=str(base / "a.txt"), out=base / "run", progress=False)
    assert not (base / "run" / "run.lock").exists()  # the lock lives as long as the run
    return base / "run"


def with_run(trained, *then):
    """A setup: a copy of the trained run in CASE/run, then each of `then`."""
    def setup(folder):
        shutil.copytree(trained, folder / "run", symlinks=True)
        for step in then:
            step(folder)
    return setup


def moved_out(name):
    """RUN/name moved to CASE/outside/name and replaced by a symlink to it (so the
    link holds what strata would read there)."""
    def step(folder):
        target = folder / "outside" / name.replace("/", "_")
        target.parent.mkdir(exist_ok=True)
        shutil.move(str(folder / "run" / name), target)
        os.symlink(target, folder / "run" / name)
    return step


def planted(name, how):
    def step(folder):
        p = folder / "run" / name
        if os.path.lexists(p):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        if how == "fifo":
            os.mkfifo(p)
        else:
            os.symlink(how, p)
    return step


def edit_run_json(**changes):
    def step(folder):
        p = folder / "run" / "run.json"
        info = json.loads(p.read_text())
        for key, value in changes.items():
            obj = info
            *path, last = key.split("__")
            for k in path:
                obj = obj[k]
            obj[last] = value
        p.write_text(json.dumps(info))
    return step


def nothing_outside_changed(c) -> list[str]:
    """For a command that succeeds: it wrote only inside the run, and each planted
    link was replaced by a file (its target outside untouched)."""
    out = [] if c.result["code"] == 0 else [f"exit {c.result['code']}: {c.result['err'][:300]}"]
    before = {k: v for k, v in c.before.items() if k.startswith("outside")}
    after = {k: v for k, v in snapshot(c.folder).items() if k.startswith("outside")}
    if before != after:
        out.append(f"changed outside the run: {sorted(set(before.items()) ^ set(after.items()))}")
    return out


def test_planted_symlinks_change_nothing_outside_the_run(trained, tmp_path):
    written = ("model.safetensors", "loss.png", "model.arch")  # only written: the link is replaced
    read = ("run.json", "tokenizer.json", "metrics.jsonl", "latest.json", "checkpoints", "cache",
            STEP, f"{STEP}/state.json", f"{STEP}/optimizer.safetensors", f"{STEP}/model.safetensors")
    cases = [ok(f"resume_{n}", RESUME, files=INPUTS, setup=with_run(trained, moved_out(n)))
             for n in written]
    cases.append(ok("overwrite_links", ["train", "t.arch", "--data", "a.txt", "--out", "run",
                                        "--overwrite", "-q"], files=INPUTS,
                    setup=with_run(trained, moved_out("model.safetensors"), moved_out("best.json"))))
    refused = [usage_error(f"resume_{n.replace('/', '_')}", RESUME, "", files=INPUTS,
                           setup=with_run(trained, moved_out(n))) for n in read]
    for c in refused:
        c.first = rf"^strata: error: .*{REFUSED}"
    run_batch(cases + refused, tmp_path)
    check_all(refused)  # refused in one line, and nothing at all changed
    bad = {c.name: p for c in cases if (p := nothing_outside_changed(c))}
    assert not bad, bad
    for c in cases:
        for name in ("model.safetensors", "best.json") if c.name == "overwrite_links" else written:
            p = c.folder / "run" / name
            assert p.is_file() and not p.is_symlink(), (c.name, name)


@pytest.mark.slow
def test_two_writers_exactly_one_runs(trained, tmp_path):
    from strata.train.folder import RunLock

    for name, text in INPUTS.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "held").mkdir()
    lock = RunLock.acquire(tmp_path / "held")
    cases = [usage_error("held", ["train", str(tmp_path / "t.arch"), "--data", str(tmp_path / "a.txt"),
                                  "--out", str(tmp_path / "held"), "-q"],
                         f"in use by another strata train (pid {os.getpid()})")]
    try:
        run_batch(cases, tmp_path / "cases")
    finally:
        lock.release()
    check_all(cases)
    assert os.listdir(tmp_path / "held") == []

    # two real processes started together on one folder: one trains, one is refused
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "strata", "train", "t.arch", "--data", "a.txt", "--out", "run1",
            "--steps", "20", "--eval-every", "20", "--checkpoint-every", "20", "-q"]
    procs = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=240), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    err = next(e for code, e in results if code == 2)
    assert re.fullmatch(r"strata: error: run1(: in use by another strata train \(pid \d+\)| already "
                        r"holds a run).*\n", err), err
    assert json.loads((tmp_path / "run1" / "latest.json").read_text())["step"] == 20


def test_overwrite_never_touches_the_users_files(trained, tmp_path):
    mine = {"mine/model.safetensors": b"my weights", "mine/metrics.jsonl": "my numbers\n"}
    cases = [
        usage_error(f"{flag}_user_folder", ["train", "t.arch", "--data", "a.txt", "--out", "mine",
                                            flag, "-q"],
                    "mine: the folder is not empty and holds no run", files={**INPUTS, **mine})
        for flag in ("--overwrite", "--resume")
    ]
    cases.append(ok("overwrite_run_with_user_files", ["train", "t.arch", "--data", "a.txt", "--out",
                                                      "run", "--overwrite", "-q"], files=INPUTS,
                    setup=with_run(trained, lambda f: (f / "run" / "notes.txt").write_text("mine"),
                                   lambda f: (f / "run" / "checkpoints" / "mine.txt").write_text("x"))))
    cases.append(ok("overwrite_empty_folder", ["train", "t.arch", "--data", "a.txt", "--out", "e",
                                               "--overwrite", "-q"], files=INPUTS,
                    setup=lambda f: (f / "e").mkdir()))
    run_batch(cases, tmp_path)
    check_all(cases[:2])
    for c in cases[2:]:
        assert c.result["code"] == 0, c.result["err"]
    run = cases[2].folder / "run"
    assert (run / "notes.txt").read_text() == "mine" and (run / "checkpoints" / "mine.txt").exists()
    assert json.loads((run / "latest.json").read_text())["step"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["mine.txt", "step-00000002"]


def test_a_run_stopped_before_its_first_step_resumes(tmp_path, capsys, monkeypatch):
    from strata.cli import main
    from strata.train.folder import claim

    for name, text in {**INPUTS, "short.txt": "too short\n"}.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    base = ["train", "t.arch", "--out", "run", "-q"]
    assert main([*base, "--data", "short.txt"]) == 2
    assert "too short" in capsys.readouterr().err
    assert not os.path.exists("run")  # a start refused before its first step leaves nothing
    # killed before its first step: the run.json stub, nothing trained
    claim(Path("run"), False, False)[0].release()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "started"
    assert main(["generate", "run"]) == 2
    assert "never trained" in capsys.readouterr().err
    assert main([*base, "--data", "a.txt", "--resume"]) == 0
    assert json.loads((tmp_path / "run" / "latest.json").read_text())["step"] == 2

    # stopped again before the stub, and once more after it: the same command starts it, and
    # removes the temporary file of the half-written stub (a user's .notes.tmp stays)
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "run.lock").write_text("12345\n")          # its holder died
    (tmp_path / "again" / ".run.json.x1y2.tmp").write_text("{")      # a half-written stub
    (tmp_path / "again" / ".notes.tmp").write_text("mine")
    assert main(["train", "t.arch", "--out", "again", "-q", "--data", "a.txt"]) == 0
    assert sorted(os.listdir("again")) == sorted(
        ["best.json", "cache", "checkpoints", "latest.json", "loss.png", "metrics.jsonl", "model.arch",
         "model.safetensors", "run.json", "tokenizer.json", ".notes.tmp"])
    assert main([*base, "--data", "short.txt", "--overwrite"]) == 2  # the run it would replace is kept
    capsys.readouterr()
    assert main([*base, "--data", "a.txt"]) == 2
    assert "run already holds a run" in capsys.readouterr().err
    assert main([*base, "--data", "a.txt", "--overwrite"]) == 0


def test_special_files_a_run_reads_are_refused(trained, tmp_path):
    reads = {
        "run.json": (["generate", "run"], ["eval", "run"], RESUME),
        "tokenizer.json": (["generate", "run"], ["eval", "run"], RESUME),
        "model.safetensors": (["generate", "run"], ["eval", "run"]),
        "model.arch": (["generate", "run"], ["eval", "run"]),
        "latest.json": (RESUME, ["eval", "run", "--checkpoint", "latest"]),
        "best.json": (["eval", "run", "--checkpoint", "best"],),
        "metrics.jsonl": (RESUME,),
        f"{STEP}/state.json": (RESUME,),
        f"{STEP}/optimizer.safetensors": (RESUME,),
    }
    cases = []
    for name, commands in reads.items():
        for how in ("fifo", "/dev/zero"):
            for argv in commands:
                c = usage_error(f"{argv[0]}_{name.replace('/', '_')}_{how.strip('/').replace('/', '_')}",
                                argv, "", files=INPUTS, setup=with_run(trained, planted(name, how)),
                                seconds=20)
                c.first = rf"^strata: error: .*{REFUSED}"
                cases.append(c)
    for how, setup in (("fifo", lambda f: os.mkfifo(f / "d.txt")),
                       ("dev_zero", lambda f: os.symlink("/dev/zero", f / "d.txt"))):
        cases.append(usage_error(f"train_data_{how}", ["train", "t.arch", "--data", "d.txt", "--out",
                                                       "new", "-q"], "d.txt: not a regular file",
                                 files=INPUTS, setup=setup, seconds=20))
        cases.append(usage_error(f"eval_data_{how}", ["eval", "run", "--data", "d.txt"],
                                 "d.txt: not a regular file", files=INPUTS, seconds=20,
                                 setup=with_run(trained, lambda f, s=setup: s(f))))
    run_batch(cases, tmp_path, timeout=600)
    check_all(cases)


def test_weights_that_do_not_load_are_one_line(trained, tmp_path):
    """load_model's weights error had its hint "(has the spec changed since the run?)"
    on a second line, so eval and generate printed two lines for one usage error."""
    def damaged(folder):
        (folder / "run" / "model.safetensors").write_bytes(b"hello: a text file, not weights\n")

    def other_spec(folder):  # the run's model.arch now builds a wider model than its weights
        arch = folder / "run" / "model.arch"
        arch.write_text(arch.read_text().replace("embedding(128, 8)", "embedding(128, 16)"))

    cases = [usage_error(f"{argv[0]}_{name}", argv, hint, files=INPUTS, setup=with_run(trained, setup))
             for argv in (["eval", "run"], ["generate", "run", "--tokens", "4"])
             for name, setup, hint in (
                 ("text_weights", damaged, "not a safetensors file (it does not start with a header length"),
                 ("spec_changed", other_spec, "run/model.safetensors: the checkpoint does not fit the model: "
                  "s.wte.weight is [128, 16] in the model, [128, 8] in the checkpoint (and 1 more) "
                  "(has the spec changed since the run?)"))]
    run_batch(cases, tmp_path, timeout=300)
    check_all(cases)


def test_internal_errors_are_one_line_errors(trained, tmp_path):
    from tests.train.helpers import BERT_CLASSIFY

    tok200 = json.dumps({"format": "strata-tokenizer", "version": 1, "type": "char", "specials": [],
                         "chars": "".join(chr(0x100 + i) for i in range(200))})
    wrong_types = {"objective__classes": "3", "settings__batch": "8", "data": ["a.txt"],
                   "tokenizer__vocab_size": 1.5, "history": "yesterday", "parameters": True,
                   "spec": 7}
    train = ["train", "t.arch", "--data", "a.txt", "--out", "new", "-q"]
    cases = [
        usage_error("train_seed_negative", [*train, "--seed", "-1"], "train setting 'seed'",
                    files=INPUTS),
        usage_error("train_seed_huge", [*train, "--seed", str(2 ** 63)], "train setting 'seed'",
                    files=INPUTS),
        # once a RuntimeError / AssertionError from torch after the data was read
        usage_error("train_device_unknown", [*train, "--device", "quantum"],
                    "--device quantum: not a device (cpu, cuda, cuda:1, mps)", files=INPUTS),
        usage_error("train_device_missing_gpu", [*train, "--device", "cuda:99"], "--device cuda:99: this machine has",
                    files=INPUTS),
        spec_error("train_betas", [*train, "--set", "optimizer=adamw(betas=(0.9, 1.5))"], "--set:1:",
                   "betas.1 Input should be less than 1", files=INPUTS),
        spec_error("spec_betas", train, "t.arch:5:21", "betas.0 Input should be greater than or equal to 0",
                   files={**INPUTS, "t.arch": SPEC.replace("lr=1e-3", "lr=1e-3, betas=(-0.1, 0.9)")}),
        usage_error("label_5000_digits", ["train", "c.arch", "--data", "d.jsonl", "--out", "new", "-q"],
                    "d.jsonl:1: a number with too many digits",
                    files={"c.arch": BERT_CLASSIFY, "d.jsonl": '{"text": "a b", "label": 1' + "0" * 5000
                           + '}\n'}),
        usage_error("label_4000_digits", ["train", "c.arch", "--data", "d.jsonl", "--out", "new", "-q"],
                    "d.jsonl:1: label 10000000... (4001 digits) is out of range",
                    files={"c.arch": BERT_CLASSIFY, "d.jsonl": '{"text": "a b", "label": 1' + "0" * 4000
                           + '}\n'}),
        usage_error("generate_seed_1e23", ["generate", "run", "--seed", str(10 ** 23)],
                    "--seed should be from 0 to 2**63 - 1", setup=with_run(trained)),
        usage_error("generate_seed_negative", ["generate", "run", "--seed", "-1"],
                    "--seed should be from 0", setup=with_run(trained)),
        usage_error("eval_max_batches_negative", ["eval", "run", "--max-batches", "-1"],
                    "--max-batches should be at least 1", setup=with_run(trained)),
        usage_error("eval_max_batches_zero", ["eval", "run", "--max-batches", "0"],
                    "--max-batches should be at least 1", setup=with_run(trained)),
    ]
    for t in ("nan", "inf", "-1"):
        cases.append(usage_error(f"generate_temperature_{t}", ["generate", "run", "--temperature", t],
                                 "--temperature should be a finite number", setup=with_run(trained)))
    for key, value in wrong_types.items():
        for cmd in ("generate", "eval"):
            cases.append(usage_error(f"{cmd}_run_json_{key}", [cmd, "run"],
                                     f"run.json: damaged: '{key.replace('__', '.')}",
                                     setup=with_run(trained, edit_run_json(**{key: value}))))
    for cmd in ("generate", "eval"):
        cases.append(usage_error(f"{cmd}_tokenizer_too_large", [cmd, "run"],
                                 "tokenizer.json: 200 ids; the model's vocabulary holds 128",
                                 setup=with_run(trained, lambda f: (f / "run" / "tokenizer.json")
                                                .write_text(tok200))))
        # a lone surrogate (JSON "\\ud800") in the characters: once a UnicodeEncodeError in eval
        cases.append(usage_error(f"{cmd}_tokenizer_lone_surrogate", [cmd, "run"],
                                 "tokenizer.json: not a strata tokenizer ('chars' holds a lone surrogate",
                                 setup=with_run(trained, lambda f: (f / "run" / "tokenizer.json").write_text(
                                     tok200.replace('"chars": "', '"chars": "\\ud800')))))
    run_batch(cases, tmp_path, timeout=600)
    check_all(cases)


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_names_the_checkpoint_kept(trained, tmp_path):
    """`ulimit -f` (EFBIG) as a full disk (ENOSPC) would: one line, exit 1, the last
    complete checkpoint kept and named, no half-written one left; --resume continues."""
    import resource

    shutil.copytree(trained, tmp_path / "run")
    for name, text in INPUTS.items():
        (tmp_path / name).write_text(text)
    size = (tmp_path / "run" / STEP / "optimizer.safetensors").stat().st_size

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "strata", *RESUME[:-3], "--steps", "4", "-q"]
    r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
                       preexec_fn=limit)
    assert r.returncode == 1, r.stderr
    assert re.fullmatch(r"strata: error: run: cannot write the run's files \(File too large\); the "
                        rf"last complete checkpoint, step 2 \(run/{STEP}\), is kept: free some space "
                        r"\(or raise the file-size limit\) and continue with --resume\n", r.stderr), \
        r.stderr
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["step-00000002"]
    r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "run" / "latest.json").read_text())["step"] == 4


def test_a_full_disk_names_the_checkpoint_kept(trained, tmp_path, monkeypatch):
    """ENOSPC from safetensors' writer, in process: the same one line."""
    import errno

    import safetensors.torch as st

    from strata.errors import TrainingError
    from strata.train import train

    shutil.copytree(trained, tmp_path / "run")

    def full(*_, **__):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(st, "save_file", full)
    with pytest.raises(TrainingError) as e:
        train(trained.parent / "t.arch", data=str(trained.parent / "a.txt"), out=tmp_path / "run",
              resume=True, steps=3, progress=False)
    assert str(e.value) == (f"{tmp_path / 'run'}: cannot write the run's files (No space left on "
                            f"device); the last complete checkpoint, step 2 ({tmp_path / 'run' / STEP}"
                            "), is kept: free some space (or raise the file-size limit) and continue "
                            "with --resume")
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["step-00000002"]
    assert not (tmp_path / "run" / "run.lock").exists()


def test_a_mistake_found_in_the_loop_keeps_its_own_message(trained, tmp_path, monkeypatch):
    """A UsageError raised inside the loop (here the distillation teacher's vocabulary,
    which the loss checks at each step) was said as 'cannot write the run's files
    (distill: ...); the last complete checkpoint ... is kept' (exit 1); only a failed
    write is (strata.errors.WriteError: a full disk through strata.io's writer too)."""
    import errno
    import tempfile

    from strata.errors import TrainingError, UsageError
    from strata.train import train
    from strata.train.loop import Loop

    said = "distill: the teacher predicts 200 classes, the student 128: they must share the vocabulary"

    def mistake(*_, **__):
        raise UsageError(said)

    shutil.copytree(trained, tmp_path / "run")
    args = dict(data=str(trained.parent / "a.txt"), out=tmp_path / "run", resume=True, steps=3, progress=False)
    with monkeypatch.context() as m:
        m.setattr(Loop, "step", mistake)
        with pytest.raises(UsageError) as e:
            train(trained.parent / "t.arch", **args)
    assert type(e.value) is UsageError and str(e.value) == said

    mkstemp = tempfile.mkstemp

    def full(*a, prefix="", **k):  # the checkpoint's state.json, through strata.io.write_atomic
        if prefix.startswith(".state.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return mkstemp(*a, prefix=prefix, **k)

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(TrainingError) as e:
        train(trained.parent / "t.arch", **args)
    assert str(e.value).startswith(f"{tmp_path / 'run'}: cannot write the run's files (No space left on "
                                   "device); the last complete checkpoint, step 2"), e.value
    assert not (tmp_path / "run" / "run.lock").exists()


def test_names_a_run_records_reach_the_terminal_escaped(tmp_path):
    """The data's name goes from run.json (or a compress report.json, hand-edited
    or not) into eval's figures and compress's `calibrated ... on RUN's data (NAME)`
    line: once printed raw, so a file name holding ESC drove the user's terminal."""
    from strata.train import train
    from tests.train.helpers import GPT, text

    base = tmp_path / "base"
    base.mkdir()
    (base / "t.arch").write_text(GPT)
    data = base / "d\x1b]0;owned\x07\x1b[2J.txt"
    data.write_text(text())
    train(base / "t.arch", data=str(data), out=base / "run", steps=2, eval_every=2, progress=False)
    setup = lambda f: shutil.copytree(base, f, dirs_exist_ok=True)  # noqa: E731
    cases = [ok("eval", ["eval", "run"], setup=setup),
             ok("compress", ["compress", "run", "-o", "small", "--pass", "prune(0.5, method=wanda)"],
                setup=setup, outputs=("small", "small/model.arch", "small/weights.safetensors",
                                      "small/report.json", "small/tokenizer.json"))]
    run_batch(cases, tmp_path / "cases", timeout=600)
    check_all(cases)
    for c in cases:
        said = c.result["out"] + c.result["err"]
        assert "d\\x1b]0;owned\\x07\\x1b[2J.txt" in said and "\x1b" not in said and "\x07" not in said, said


def test_a_runs_model_arch_that_imports_is_refused_before_reading_it(trained, tmp_path):
    """RUN/model.arch is written standing alone; one that imports reaches out of the
    run (and once printed the imported file's first line in its error)."""
    def plant(folder):
        (folder / "secret.txt").write_text("root:x:0:0:SECRET\n")
        (folder / "run" / "model.arch").write_text('import "../secret.txt"\n' + SPEC.split("train")[0])

    cases = [spec_error(argv[0], argv, "run/model.arch:1:1", "a run's copy of its spec imports nothing",
                        setup=with_run(trained, plant))
             for argv in (["generate", "run"], ["eval", "run"], ["compress", "run", "-o", "c", "--pass",
                                                                  "prune(0.5)"], ["compile", "run"])]
    run_batch(cases, tmp_path)
    check_all(cases)
    assert not any("SECRET" in c.result["err"] + c.result["out"] for c in cases)


def test_a_damaged_compress_report_is_one_line(tmp_path):
    """report.json's "source_run" (the run the weights came from) feeds eval, generate and
    a second compress as a run.json would, but was read unchecked: a hand-edited
    objective without its name was an internal KeyError.  It is read through the
    run.json schema now; JSON nested past json's depth is one line too."""
    from strata.cli import main
    from strata.train import train
    from tests.train.helpers import GPT, text

    base = tmp_path / "base"
    base.mkdir()
    (base / "t.arch").write_text(GPT)
    (base / "a.txt").write_text(text())
    train(base / "t.arch", data=str(base / "a.txt"), out=base / "run", steps=2, eval_every=2, progress=False)
    assert main(["compress", str(base / "run"), "-o", str(base / "c"), "--pass", "prune(0.5)"]) == 0
    report = json.loads((base / "c" / "report.json").read_text())

    def edited(edit):
        def setup(folder):
            shutil.copytree(base / "c", folder / "c")
            rep = json.loads(json.dumps(report))
            edit(rep)
            (folder / "c" / "report.json").write_text(rep if isinstance(rep, str) else json.dumps(rep))
        return setup

    damage = {
        "objective_unnamed": (lambda r: r["source_run"].update(objective={}), "'source_run.objective.name'"),
        "settings_text": (lambda r: r["source_run"].update(settings="x"), "'source_run.settings'"),
        "batch_text": (lambda r: r["source_run"]["settings"].update(batch="8"), "'source_run.settings.batch'"),
        "data_list": (lambda r: r["source_run"].update(data=[1]), "'source_run.data'"),
        "not_an_object": (lambda r: r.update(source_run=5), "'source_run': should be"),
    }
    cases = [usage_error(f"{cmd}_{name}", argv, f"c/report.json: damaged: {message}", setup=edited(edit))
             for name, (edit, message) in damage.items()
             for cmd, argv in (("eval", ["eval", "c"]), ("generate", ["generate", "c"]),
                               ("compress", ["compress", "c", "-o", "d", "--pass", "prune(0.6)"]))]
    # weights from no run (source_run null): eval reads the built-in corpus, once named "None"
    cases.append(usage_error("eval_no_source_run", ["eval", "c"], "the built-in corpus has characters the "
                             "tokenizer never saw", setup=edited(lambda r: r.update(source_run=None))))
    cases.append(usage_error("eval_deep", ["eval", "c"], "c/report.json: unreadable (maximum recursion",
                             setup=lambda f: (shutil.copytree(base / "c", f / "c"),
                                              (f / "c" / "report.json").write_text("[" * 100000))))
    run_batch(cases, tmp_path / "cases", timeout=600)
    check_all(cases)


def test_paths_a_run_records_are_read_only_inside_it_or_with_their_content(trained, tmp_path):
    """run.json names the run's data (absolute, and relative to the run), an older
    run's spec and a student's teacher weights; eval, generate, compress and --resume
    read them.  A run folder from someone else could name any file (`/etc/passwd`, a
    secret beside the folder, `.ssh/` in the working directory): one outside the run
    and the working directory is read only when its content is what the run
    recorded (sha256), else refused in one line before it is read; a file named on
    the command line is read wherever it is."""
    secret = "root:x:0:0:SECRET\n" * 40

    def outside(folder) -> Path:  # beside the case folder: outside the run and the working directory
        p = folder.parent / f"{folder.name}.outside.txt"
        p.write_text(secret)
        return p

    def data_at(where):
        def step(folder):
            path = where(folder)
            edit_run_json(data__path=str(path), data__from_run=None)(folder)
        return step

    def hidden(folder) -> Path:
        (folder / ".ssh").mkdir()
        (folder / ".ssh" / "id").write_text(secret)
        return folder / ".ssh" / "id"

    def same_content(folder) -> Path:  # the run's own data, moved beside the case folder: its content
        p = folder.parent / f"{folder.name}.moved.txt"
        p.write_text(TEXT)
        (folder / "a.txt").unlink()
        return p

    refused = "outside the run folder and the working directory"
    calibrated = ["compress", "run", "-o", "c", "--pass", "quantize(int8_static)"]
    cases = [
        usage_error("eval_secret", ["eval", "run"], refused, files=INPUTS,
                    setup=with_run(trained, data_at(outside))),
        usage_error("eval_etc_passwd", ["eval", "run"], refused, files=INPUTS,
                    setup=with_run(trained, data_at(lambda f: Path("/etc/passwd")))),
        # a folder elsewhere is not hashed (its files read whole: the case's parent holds them all)
        usage_error("eval_folder_outside", ["eval", "run"], refused, files=INPUTS,
                    setup=with_run(trained, data_at(lambda f: f.parent))),
        usage_error("eval_hidden_in_cwd", ["eval", "run"], refused, files=INPUTS,
                    setup=with_run(trained, data_at(hidden))),
        usage_error("eval_from_run_escapes", ["eval", "run"], refused, files=INPUTS,
                    setup=with_run(trained, lambda f: (outside(f), edit_run_json(
                        data__path=None, data__name="gone.txt",
                        data__from_run=f"../../{f.name}.outside.txt")(f)))),
        usage_error("compress_calibrates_on_secret", calibrated, refused, files=INPUTS,
                    setup=with_run(trained, data_at(outside))),
        usage_error("resume_secret", RESUME[:2] + RESUME[4:], refused, files={"t.arch": SPEC},
                    setup=with_run(trained, data_at(outside))),
        # the spec's own data is there, but is not read in place of the run's refused one
        usage_error("resume_secret_spec_names_data", RESUME[:2] + RESUME[4:], refused,
                    files={"t.arch": SPEC.replace("train { ", 'train { data = "a.txt"  '), "a.txt": TEXT},
                    setup=with_run(trained, data_at(outside))),
        usage_error("old_run_spec_secret", ["eval", "run"], "its spec is recorded at", files=INPUTS,
                    setup=with_run(trained, lambda f: (os.unlink(f / "run" / "model.arch"), edit_run_json(
                        spec_copy=None, spec=str(outside(f)))(f)))),
        # its model.arch's distill pass names a teacher spec beside the case folder, which
        # `generate --speculate` parsed, showing its line
        usage_error("speculate_teacher_spec_secret", ["generate", "run", "--speculate", "--tokens", "2"],
                    "its distill pass names its teacher spec at", files=INPUTS,
                    setup=with_run(trained, lambda f: (
                        (f.parent / f"{f.name}.teacher.arch").write_text(secret),
                        (f / "run" / "model.arch").write_text(
                            SPEC.split("train")[0] + f'passes {{ distill("{f.parent / f.name}.teacher.arch", '
                            f'weights="{f / "run"}") }}\n')))),
        # the run's own data, moved: read, since its content is the run's
        ok("eval_moved_data", ["eval", "run", "--max-batches", "1"], files=INPUTS,
           setup=with_run(trained, data_at(same_content))),
        # named on the command line: read wherever it is
        ok("eval_named", ["eval", "run", "--max-batches", "1", "--data", "../named.txt"], files=INPUTS,
           setup=with_run(trained, data_at(outside), lambda f: (f.parent / "named.txt").write_text(TEXT))),
    ]
    run_batch(cases, tmp_path / "cases", timeout=600)
    check_all(cases)
    assert not any("SECRET" in c.result["err"] + c.result["out"] for c in cases)


def test_a_compress_reports_source_run_reaches_out_of_nothing(trained, tmp_path):
    """report.json's "source_run" names the run the weights came from; its path is where
    the data's "from_run" was looked for, so a report saying `/` and `etc/passwd` named
    any file: that path is kept only inside the output or the working directory, and
    "from_run" is dropped (relative to that run's folder, not to this one)."""
    from strata.train.sources import compress_report

    info = json.loads((trained / "run.json").read_text())
    out = tmp_path / "c"
    out.mkdir()
    src = {"path": "/", "objective": info["objective"], "settings": info["settings"],
           "data": {**info["data"], "from_run": "etc/passwd"}}
    (out / "report.json").write_text(json.dumps({"source_run": src}))
    got = compress_report(out)["source_run"]
    assert got["path"] is None and "from_run" not in got["data"]
    (out / "run").mkdir()
    (out / "report.json").write_text(json.dumps({"source_run": {**src, "path": str(out / "run")}}))
    assert compress_report(out)["source_run"]["path"] == str(out / "run")
