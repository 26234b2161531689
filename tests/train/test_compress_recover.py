"""strata compress on a trained run with a calibrated method calibrated on the
run's own data (--calibration RUN), --finetune from that data and tokenizer, and
--eval: one folder, every figure in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.optional import require

torch = require("torch")

import strata  # noqa: E402
from strata.cli import main  # noqa: E402
from strata.errors import UsageError  # noqa: E402
from tests.matrix_specs import PLAIN  # noqa: E402


def test_calibrated_finetuned_and_evaluated_from_a_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN)
    assert main(["train", "p.arch", "--out", "r", "--steps", "2", "-q"]) == 0
    capsys.readouterr()
    code = main(["compress", "r", "--calibration", "r", "--pass", "prune(0.5, method=sparsegpt)",
                 "--finetune", "3", "--eval", "--max-batches", "2", "-o", "small"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "sparsegpt" in out and "finetune 3 steps" in out and "perplexity" in out
    report = json.loads(Path("small/report.json").read_text())
    f = report["finetune"]  # the run's data (the built-in corpus) read with its tokenizer
    assert f["steps"] == 3 and f["held"]["masked_linears"] > 0
    assert {"loss", "perplexity", "kl_to_original"} <= f["after"].keys()
    ev = report["eval"]
    assert ev["original"]["perplexity"] > 0 and ev["compressed"]["perplexity"] > 0
    assert report["passes"][0]["density"]


def test_calibration_text_in_characters_the_tokenizer_never_saw_is_named(tmp_path):
    """--calibration text with characters the run's char tokenizer has no id for said
    only 'the text has characters the tokenizer never saw', not which file."""
    import pytest

    from strata.errors import UsageError
    from strata.train.recover import calibration_ids
    from strata.train.tokenizer import CharTokenizer

    tok = tmp_path / "tokenizer.json"
    tok.write_text(CharTokenizer.fit(["abc "], [], 64).dumps())
    f = tmp_path / "calib.txt"
    f.write_text("abc abd\n")
    with pytest.raises(UsageError) as e:
        calibration_ids(f, tok, max_chars=1000)
    assert str(e.value) == (f"{f} has characters the tokenizer never saw: '\\n' 'd' (a char tokenizer of 4 ids, "
                            "one per character of the text it was fitted on): give --calibration text in the "
                            "characters the model trained on")


def test_calibration_text_is_sampled_from_start_to_end(tmp_path):
    """A text longer than asked for is read in pieces spread over all of it (bytes
    read bounded), not cut at its start; a short one is read whole."""
    from strata.io import spread_text
    from strata.train.recover import PIECES, calibration_ids
    from strata.train.tokenizer import ByteTokenizer

    tok = tmp_path / "tokenizer.json"
    tok.write_text(ByteTokenizer([]).dumps())
    lines = "".join(f"line {i:05d} é\n" for i in range(4000))  # 64 KB, a 2-byte character a line
    f = tmp_path / "big.txt"
    f.write_text(lines, encoding="utf-8")
    ids = calibration_ids(f, tok, max_chars=PIECES * 40)
    text = bytes(ids.tolist()).decode("utf-8")  # the byte tokenizer: ids are the bytes
    assert len(ids) <= PIECES * 41 and "\ufffd" not in text  # bounded; cut characters dropped
    seen = sorted({int(w) for w in text.replace("\n", " ").split() if w.isdigit() and len(w) == 5})
    assert seen[0] == 0 and seen[-1] == 3999 and len(seen) >= PIECES  # start, end and between
    small = tmp_path / "small.txt"
    small.write_text(lines[:3000], encoding="utf-8")
    assert bytes(calibration_ids(small, tok, max_chars=PIECES * 40).tolist()).decode() == lines[:3000]
    spread = spread_text(lines, PIECES * 40, PIECES)  # a run's text, in memory
    assert spread.startswith("line 00000") and spread.endswith("line 03999 é\n") and len(spread) < PIECES * 41
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(UsageError, match="empty.txt: no text to calibrate on"):
        calibration_ids(empty, tok, max_chars=PIECES * 40)



def test_finetune_and_calibration_rows_have_the_length_the_run_trained_at(tmp_path, monkeypatch, capsys):
    """A run trained at context 16 on a spec whose ctx is 32: fine-tuning and
    calibration read rows of 16 tokens (rows of 32 would read positions the
    weights never trained at), 2,048 tokens a step; --finetune-lr is used."""
    from strata.backends.torch.workflows.calibration import load_calibration, row_length, trained_context
    from strata.compiler import build_file

    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN)
    assert main(["train", "p.arch", "--out", "r", "--steps", "2", "--set", "context=16", "-q"]) == 0
    capsys.readouterr()
    code = main(["compress", "r", "--pass", 'prune(0.5, method=structured, on="mlp")',
                 "--finetune", "2", "--finetune-lr", "1e-3", "-o", "small"])
    assert code == 0, capsys.readouterr().err
    f = json.loads(Path("small/report.json").read_text())["finetune"]
    assert f["batch"] == {"rows": 128, "tokens": 16} and f["lr"] == 1e-3
    assert f["held_out"]["tokens"] == 16
    run = json.loads(Path("r/run.json").read_text())
    assert trained_context(run) == 16
    g = build_file("p.arch")
    assert row_length(g, 16) == 16 and row_length(g, None) == 32 and row_length(g, 64) == 32
    assert load_calibration(torch.zeros(3, 40, dtype=torch.long), g, trained=16).shape == (3, 16)


def test_finetune_lr_goes_with_finetune(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN)
    assert main(["train", "p.arch", "--out", "r", "--steps", "1", "-q"]) == 0
    capsys.readouterr()
    assert main(["compress", "r", "--pass", "prune(0.5)", "--finetune-lr", "1e-3", "-o", "o"]) != 0
    assert "--finetune-lr goes with --finetune STEPS" in capsys.readouterr().err
    assert main(["compress", "r", "--pass", "prune(0.5)", "--finetune", "2", "--finetune-lr", "0",
                 "-o", "o"]) != 0
    assert "--finetune-lr 0" in capsys.readouterr().err


def test_finetune_steps_are_bounded_before_anything_is_spent(tmp_path, monkeypatch, capsys):
    """--finetune 10**18 compressed the model, then trained without end; it is refused
    first, as 0 steps are (2**53: the most a report, like a run, records exactly)."""
    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN)
    assert main(["train", "p.arch", "--out", "r", "--steps", "1", "-q"]) == 0
    capsys.readouterr()
    for steps in (10 ** 18, 2 ** 53 + 1, 0):
        assert main(["compress", "r", "--pass", "prune(0.5)", "--finetune", str(steps), "-o", "o"]) == 2
        err = capsys.readouterr().err
        assert f"--finetune {steps:,}: give a number of steps from 1 to 2**53" in err
        assert len(err.strip().splitlines()) == 1 and not Path("o").exists()


def test_a_compress_output_compressed_again_evaluates_with_its_runs_tokenizer_and_data(
        tmp_path, monkeypatch, capsys):
    """`strata compress OUT --eval` opened the original as OUT/model.arch with the
    weights file alone ("no tokenizer came with these weights"), and `strata eval
    OUT/model.arch --weights OUT` read the built-in corpus, not the run's --data."""
    from tests.train.helpers import text, write

    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN)
    write(tmp_path / "mine.txt", text(1500))
    assert main(["train", "p.arch", "--data", "mine.txt", "--out", "r", "--steps", "2", "-q"]) == 0
    assert main(["compress", "r", "--pass", 'prune(0.5, method=structured, on="mlp")', "-o", "a"]) == 0
    capsys.readouterr()
    assert main(["eval", "a/model.arch", "--weights", "a", "--max-batches", "1"]) == 0
    assert "mine.txt (validation split)" in capsys.readouterr().out
    code = main(["compress", "a", "--pass", "quantize(int8_dynamic)", "--eval", "--max-batches", "1",
                 "-o", "b"])
    out, err = capsys.readouterr()
    assert code == 0, err
    ev = json.loads(Path("b/report.json").read_text())["eval"]
    assert "mine.txt" in ev["original"]["data"] and ev["original"]["data"] == ev["compressed"]["data"]


def test_eval_compares_with_the_weights_that_were_compressed(tmp_path, monkeypatch, capsys):
    """`compress SPEC --weights RUN/checkpoints/step-N/model.safetensors --eval`
    measured the run's final weights as the "original": a checkpoint's own
    difference from the final read as the compression's loss."""
    from safetensors.torch import load_file, save_file

    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN)
    assert main(["train", "p.arch", "--out", "r", "--steps", "2", "-q"]) == 0
    other = Path("r/checkpoints/mine.safetensors")  # weights of the run that are not its final ones
    save_file({k: v * 0.5 if k.endswith("weight") else v for k, v in load_file("r/model.safetensors").items()},
              str(other))
    capsys.readouterr()
    assert main(["eval", "p.arch", "--weights", str(other), "--max-batches", "1", "--json"]) == 0
    want = json.loads(capsys.readouterr().out)["loss"]
    assert main(["compress", "p.arch", "--weights", str(other), "--pass", "fuse_qkv", "--eval",
                 "--max-batches", "1", "-o", "small"]) == 0
    ev = json.loads(Path("small/report.json").read_text())["eval"]
    assert ev["original"]["loss"] == pytest.approx(want, abs=1e-6)
    assert ev["compressed"]["loss"] == pytest.approx(want, abs=1e-4)  # fuse_qkv is exact


def test_eval_data_that_cannot_be_read_stops_before_anything_is_written(tmp_path, monkeypatch, capsys):
    """`compress ... --eval MISSING` wrote OUT and then failed on the data, so the
    same command again needed --overwrite; the original is measured first."""
    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN)
    assert main(["train", "p.arch", "--out", "r", "--steps", "1", "-q"]) == 0
    Path("bin.txt").write_bytes(b"\x00\xff" * 50)
    for data, why in (("missing.txt", "no such file"), ("bin.txt", "not a UTF-8 text file")):
        capsys.readouterr()
        assert main(["compress", "r", "--pass", "quantize(int8_dynamic)", "--eval", data, "-o", "small"]) == 2
        assert why in capsys.readouterr().err
        assert not Path("small").exists()


def test_an_ir_graph_with_a_run_as_its_weights_calibrates_as_the_run_does(tmp_path, monkeypatch, capsys):
    """strata.compile(graph, weights=RUN) refused the folder ("not a regular
    file"), so the run's weights, tokenizer and trained context (16, the spec's
    ctx is 32) never reached it: it now compiles what compile(RUN) does."""
    import strata
    from strata.compiler import build_file

    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN)
    assert main(["train", "p.arch", "--out", "r", "--steps", "2", "--set", "context=16", "-q"]) == 0
    capsys.readouterr()
    gptq, x = "quantize(int4_weight, method=gptq)", torch.randint(0, 300, (2, 16))
    for calibration in (torch.randint(0, 300, (8, 32)), "r"):  # ids cut to 16; text read with its tokenizer
        graph = strata.compile(build_file("p.arch"), weights="r", passes=[gptq], calibration=calibration)
        path = strata.compile("r", passes=[gptq], calibration=calibration)
        with torch.no_grad():
            assert torch.equal(graph(x), path(x))
    plain = strata.compile(build_file("p.arch"), weights="r").eval()
    with torch.no_grad():
        assert torch.equal(plain(x), strata.compile("r").eval()(x))


def test_the_api_calibrates_on_the_rows_strata_compress_does(tmp_path, monkeypatch, capsys):
    """strata.compile(RUN, passes=[GPTQ], calibration=...) calibrated on rows of the
    spec's ctx (32) where strata compress cut them to the run's context (16), and
    could not read text at all: the two now give the same model, ids or text."""
    import strata
    from safetensors.torch import save_file

    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN)
    assert main(["train", "p.arch", "--out", "r", "--steps", "2", "--set", "context=16", "-q"]) == 0
    ids = torch.randint(0, 300, (8, 32), generator=torch.Generator().manual_seed(0))
    save_file({"tokens": ids}, "ids.safetensors")
    gptq, x = "quantize(int4_weight, method=gptq)", ids[:2, :16]
    for calibration, out in ((ids, "a"), ("r", "b")):  # token ids; text: the run's data, its tokenizer
        src = "ids.safetensors" if out == "a" else "r"
        assert main(["compress", "r", "--calibration", src, "--pass", gptq, "-o", out]) == 0
        api = strata.compile("r", passes=[gptq], calibration=calibration, device="cpu")
        cli = strata.compile(out, device="cpu")
        with torch.no_grad():
            assert torch.equal(api(x), cli(x)), out


def test_finetune_distills_an_encoder_decoder_run_over_its_decoder_positions(tmp_path, monkeypatch, capsys):
    """An encoder-decoder (seq2seq) run was refused ('--finetune distills next-token
    logits'); it is distilled on its own (source, target) examples, teacher and
    student reading the same source and target: the KL to the original falls, the
    quality before and after is reported, and the pruned weights stay zero."""
    from safetensors.torch import load_file

    from tests.matrix_specs import ENCDEC

    monkeypatch.chdir(tmp_path)
    Path("s.arch").write_text(ENCDEC)
    assert main(["train", "s.arch", "--out", "r", "--steps", "30", "-q"]) == 0
    capsys.readouterr()
    code = main(["compress", "r", "--pass", "prune(0.7)", "--finetune", "20", "-o", "small"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "finetune 20 steps" in out
    f = json.loads(Path("small/report.json").read_text())["finetune"]
    assert f["objective"] == "seq2seq" and f["held"]["masked_linears"] > 0
    assert {"loss", "perplexity", "kl_to_original"} <= f["before"].keys() and f["teacher"]["loss"] > 0
    assert f["after"]["kl_to_original"] < f["before"]["kl_to_original"]
    assert f["distill_loss"]["last"] < f["distill_loss"]["first"]
    w = strata.compile("small", device="cpu").state_dict()  # the file stores them sparse (bitmask)
    fc = [k for k in w if k.endswith("mlp.fc.weight") or k.endswith("mlp.up.weight")]
    assert fc and all(abs(float((w[k] == 0).float().mean()) - 0.7) < 0.02 for k in fc)
    assert any(k.endswith(".bitmask") for k in load_file("small/weights.safetensors"))
    # --data of one example: refused in one line saying why two (it said "need at least 10"
    # only for a split that never comes out empty, and the split's own "one to validate" first)
    Path("one.jsonl").write_text(json.dumps({"source": "the cat", "target": "cat the"}) + "\n")
    assert main(["compress", "r", "--pass", "prune(0.7)", "--finetune", "2", "--data", "one.jsonl",
                 "-o", "one"]) == 2
    err = capsys.readouterr().err
    assert "--finetune data: 1 example; need at least 2 (one to fine-tune on, one to measure" in err, err
    assert not Path("one").exists()


def test_a_runs_own_data_is_found_from_any_folder(tmp_path, monkeypatch, capsys):
    """A run trained with `--data t.txt` from its own folder, compressed from another:
    --finetune and --calibration RUN read the run's text (its recorded absolute path),
    not the built-in corpus (the relative name did not exist from there, and the
    built-in corpus's characters were refused by the run's char tokenizer, or, with
    a tokenizer that took them, tuned the model on text it never trained on); data
    that is gone is one line naming it."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    Path("p.arch").write_text(PLAIN)
    Path("t.txt").write_text("abba baab " * 400)
    assert main(["train", "p.arch", "--data", "t.txt", "--out", "r", "--steps", "1", "-q"]) == 0
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = main(["compress", "work/r", "--calibration", "work/r", "--pass", "prune(0.5, method=sparsegpt)",
                 "--finetune", "2", "-o", "small"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert json.loads(Path("small/report.json").read_text())["finetune"]["steps"] == 2
    (work / "t.txt").unlink()
    assert main(["compress", "work/r", "--pass", "prune(0.5)", "--finetune", "2", "-o", "small2"]) == 2
    err = capsys.readouterr().err
    assert "the data the weights were trained on (t.txt) is gone" in err and not Path("small2").exists()


def test_finetune_text_is_read_only_as_far_as_the_sample_needs(tmp_path, monkeypatch):
    """_text read and hashed every byte of the data (TextSource.check) before taking
    its first MAX_CHARS characters: a 100 GB corpus was read whole for 16 MiB.  Now
    reading stops at the bound; what lies past it (here a NUL, so a check would
    refuse the file) is never read."""
    from strata.train import data as data_module
    from strata.train import recover

    monkeypatch.setattr(recover, "MAX_CHARS", 1000)
    monkeypatch.setattr(data_module, "CHUNK", 256)
    read = []
    real_open = data_module._open

    class Counted:
        def __init__(self, f):
            self.f = f

        def read(self, n):
            raw = self.f.read(n)
            read.append(len(raw))
            return raw

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(data_module, "_open", lambda path: Counted(real_open(path)))
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"the cat sat.\n" * 10_000 + b"\0")  # 130 kB, then not text
    (folder / "b.txt").write_bytes(b"\0")  # never opened
    text = recover._text(str(folder), None)
    assert len(text) == 1000 and text.startswith("the cat sat.\n")
    assert sum(read) <= 1000 + 2 * 256, sum(read)
