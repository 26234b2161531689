"""Characters a char tokenizer never saw: a causal LM's has no [UNK] and refuses
them (tests/train/test_generate.py); seq2seq's and classify's reserve one and
read them as [UNK], which `generate` and `eval --data` now say (a one-line
warning naming them, the count in eval's --json) instead of losing them in silence."""

from __future__ import annotations

import json

from tests.optional import require

torch = require("torch")

import pytest  # noqa: E402

import strata  # noqa: E402
from strata.cli import main  # noqa: E402
from strata.train.tokenizer import CharTokenizer, Unseen  # noqa: E402
from tests.train.helpers import BERT_CLASSIFY, SEQ2SEQ, labels_jsonl, write  # noqa: E402

NEW = "ß☃"  # in no built-in corpus line nor any helper's data


def test_unseen_counts_what_reads_as_unk():
    tok = CharTokenizer.fit(["hello world"], specials=["[PAD]", "[UNK]"], limit=64)
    u = tok.unseen(["hello ☃ wörld", "ö"])
    assert (u.count, u.chars) == (3, ["ö", "☃"])
    assert u.said_of("the prompt") == "the prompt has 3 characters the tokenizer never saw, read as [UNK]: 'ö' '☃'"
    assert not tok.unseen(["hello"]) and not CharTokenizer.fit(["ab"], [], 64).unseen(["abc"])  # no [UNK]: refused
    assert Unseen(1, ["a"]) + Unseen(2, ["b", "a"]) == Unseen(3, ["a", "b"])


@pytest.fixture(scope="module")
def s2s(tmp_path_factory):
    d = tmp_path_factory.mktemp("s2s")
    return strata.train(write(d / "s.arch", SEQ2SEQ), out=d / "run", steps=1, progress=False)


def test_a_seq2seq_prompt_says_what_it_read_as_unk(s2s, capsys):
    """`generate` on a seq2seq run translated 'the ß☃ cat' as 'the [UNK][UNK] cat' without a word."""
    for quiet in ([], ["-q"]):  # a warning, not one of the figures -q leaves out
        assert main(["generate", str(s2s.path), "--prompt", f"the {NEW} cat", "--tokens", "3",
                     "--temperature", "0", *quiet]) == 0
        err = capsys.readouterr().err
        assert err.startswith("strata: warning: the prompt has 2 characters the tokenizer never saw, read as "
                              "[UNK]: 'ß' '☃'\n"), err
    assert main(["generate", str(s2s.path), "--prompt", "the cat", "--tokens", "3", "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_eval_on_examples_counts_what_it_read_as_unk(s2s, tmp_path, capsys):
    data = write(tmp_path / "d.jsonl", json.dumps({"source": f"the {NEW}", "target": f"{NEW} the ß"}) + "\n"
                 + json.dumps({"source": "the cat", "target": "cat the"}) + "\n")
    assert main(["eval", str(s2s.path), "--data", str(data), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["unseen"] == {"characters": 5, "distinct": ["ß", "☃"]}
    assert err == f"strata: warning: {data} has 5 characters the tokenizer never saw, read as [UNK]: 'ß' '☃'\n"
    assert main(["eval", str(s2s.path)]) == 0  # its own validation split: nothing to say
    assert "warning" not in capsys.readouterr().err


def test_classify_eval_counts_what_it_read_as_unk(tmp_path, capsys):
    labels = labels_jsonl(tmp_path / "l.jsonl")
    run = strata.train(write(tmp_path / "c.arch", BERT_CLASSIFY), out=tmp_path / "run", data=str(labels),
                       steps=1, progress=False)
    data = write(tmp_path / "d.jsonl", json.dumps({"text": f"cat {NEW}", "label": 0}) + "\n"
                 + json.dumps({"text": "dog sat", "label": 1}) + "\n")
    assert main(["eval", str(run.path), "--data", str(data)]) == 0
    assert capsys.readouterr().err == (f"strata: warning: {data} has 2 characters the tokenizer never saw, "
                                       "read as [UNK]: 'ß' '☃'\n")


def test_a_masked_lm_eval_on_text_counts_what_it_read_as_unk(tmp_path, capsys):
    """The token-stream objectives' --data reading (a masked LM's tokenizer reserves [UNK])."""
    from tests.train.helpers import BERT_PRETRAIN, text

    run = strata.train(write(tmp_path / "b.arch", BERT_PRETRAIN), out=tmp_path / "run",
                       data=str(write(tmp_path / "a.txt", text())), steps=1, progress=False)
    data = write(tmp_path / "other.txt", (f"the cat {NEW} sat " * 200))
    assert main(["eval", str(run.path), "--data", str(data), "--max-batches", "1"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"strata: warning: {data} has ") and "read as [UNK]: 'ß' '☃'\n" in err, err


def test_fine_tuning_with_a_reused_tokenizer_says_what_it_reads_as_unk(tmp_path, capsys):
    """A classifier fine-tuned from a masked LM (`--init`: its tokenizer, which reserves
    [UNK]) trained on its data's new characters as [UNK] in silence; docs/training.md
    said such data is refused, as it is with a causal LM's tokenizer."""
    from tests.train.helpers import BERT_PRETRAIN, text

    pre = strata.train(write(tmp_path / "b.arch", BERT_PRETRAIN), out=tmp_path / "pre",
                       data=str(write(tmp_path / "a.txt", text())), steps=1, progress=False)
    data = write(tmp_path / "l.jsonl", json.dumps({"text": f"the cat {NEW}", "label": 0}) + "\n"
                 + json.dumps({"text": "the dog", "label": 1}) + "\n")
    capsys.readouterr()
    strata.train(write(tmp_path / "c.arch", BERT_CLASSIFY), out=tmp_path / "cls", data=str(data),
                 init=str(pre.path), steps=1, progress=False)
    assert capsys.readouterr().err == (f"strata: warning: {data} has 2 characters the tokenizer never saw, read "
                                       f"as [UNK]: 'ß' '☃' (the tokenizer --init {pre.path} came with)\n")


def _compress(capsys, source, out, *args) -> tuple[int, str]:
    code = main(["compress", str(source), "-o", str(out), *map(str, args)])
    return code, capsys.readouterr().err


def test_compress_calibration_and_finetune_data_say_what_they_read_as_unk(s2s, tmp_path, capsys):
    """`strata compress --calibration FILE` and `--finetune N --data FILE` read a
    seq2seq run's text with its tokenizer, which reserves [UNK]: new characters
    were read as [UNK] in silence; now one warning line each names them."""
    cal = write(tmp_path / "cal.txt", f"the cat {NEW} sat " * 50)
    code, err = _compress(capsys, s2s.path, tmp_path / "a", "--pass", "quantize(int8_static)", "--calibration", cal)
    assert code == 0, err
    assert f"strata: warning: {cal} has 100 characters the tokenizer never saw, read as [UNK]: 'ß' '☃'\n" in err, err
    pairs = write(tmp_path / "p.jsonl", "".join(json.dumps({"source": f"the cat {NEW}", "target": "cat the"}) + "\n"
                                                 for _ in range(20)))
    code, err = _compress(capsys, s2s.path, tmp_path / "b", "--pass", "quantize(int8_dynamic)",
                          "--finetune", 1, "--data", pairs)
    assert code == 0, err
    assert f"strata: warning: {pairs} has 40 characters the tokenizer never saw, read as [UNK]: 'ß' '☃'\n" in err, err
    code, err = _compress(capsys, s2s.path, tmp_path / "c", "--pass", "quantize(int8_static)")
    assert code == 0 and "warning" not in err, err  # the run's own data: nothing to say


def test_compress_text_a_causal_lm_tokenizer_never_saw_is_refused_naming_it(tmp_path, capsys):
    """A causal LM's char tokenizer has no [UNK]: `--finetune N --data FILE` refused with
    'the text has characters ...' (which text?), `--calibration builtin` likewise;
    now one line naming the input and what to give, as --calibration FILE said."""
    from tests.train.helpers import GPT

    run = strata.train(write(tmp_path / "g.arch", GPT), out=tmp_path / "run", steps=1, progress=False,
                       data=str(write(tmp_path / "a.txt", "the cat sat on the mat. " * 100)))
    data = write(tmp_path / "d.txt", f"the cat {NEW} sat " * 100)
    code, err = _compress(capsys, run.path, tmp_path / "a", "--pass", "quantize(int8_dynamic)",
                          "--finetune", 1, "--data", data)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"strata: error: {data} has characters the tokenizer never saw: 'ß' '☃' (a char "), err
    assert err.endswith("give --data text in the characters the model trained on\n"), err
    code, err = _compress(capsys, run.path, tmp_path / "b", "--pass", "quantize(int8_static)",
                          "--calibration", "builtin")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("strata: error: the built-in corpus has characters the tokenizer never saw: "), err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
