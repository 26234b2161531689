"""Every bad-data case ends in one line naming the file (and the line, for JSON
Lines), exit code 2, no traceback; good data is split the same way every time."""

from __future__ import annotations

import json

from tests.optional import require

torch = require("torch")

import numpy as np
import pytest

from strata.cli import main
from strata.train.data import BUILTIN, read_examples, text_source
from tests.train.helpers import BERT_CLASSIFY, GPT, SEQ2SEQ, text, write


def _fails(capsys, spec, data, *extra):
    code = main(["train", str(spec), "--data", str(data), "--out", str(spec.parent / "run"), "-q",
                 "--steps", "2", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("strata: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def gpt(tmp_path):
    return write(tmp_path / "g.arch", GPT)


def test_missing_path(gpt, capsys):
    line = _fails(capsys, gpt, gpt.parent / "nope.txt")
    assert f"{gpt.parent / 'nope.txt'}: no such file" in line


def test_empty_file(gpt, capsys):
    line = _fails(capsys, gpt, write(gpt.parent / "empty.txt", ""))
    assert "empty.txt: the file is empty" in line


def test_binary_file(gpt, capsys):
    p = gpt.parent / "blob.bin"
    p.write_bytes(b"hello\n" * 10 + bytes(range(256)))
    line = _fails(capsys, gpt, p)
    assert "blob.bin: not a UTF-8 text file (binary data at byte 60)" in line
    p.write_bytes(b"caf\xe9 au lait\n")  # latin-1, not UTF-8
    assert "(binary data at byte 3)" in _fails(capsys, gpt, p)


def test_text_shorter_than_context(gpt, capsys):
    line = _fails(capsys, gpt, write(gpt.parent / "short.txt", "to be or not to be\n" * 3))
    assert "short.txt: too short" in line and "context + 1 = 17" in line


def test_folder_without_files(gpt, capsys):
    (gpt.parent / "corpus").mkdir()
    assert "corpus: no files in this folder" in _fails(capsys, gpt, gpt.parent / "corpus")


def test_folder_with_a_binary_file(gpt, capsys):
    (gpt.parent / "corpus").mkdir()
    write(gpt.parent / "corpus" / "a.txt", text(500))
    (gpt.parent / "corpus" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0")
    assert "b.png: not a UTF-8 text file" in _fails(capsys, gpt, gpt.parent / "corpus")


def test_jsonl_for_a_language_model(gpt, capsys):
    line = _fails(capsys, gpt, write(gpt.parent / "x.jsonl", '{"text": "a"}\n'))
    assert "x.jsonl: JSON Lines are examples for seq2seq or classification" in line


def test_jsonl_missing_key_names_file_and_line(tmp_path, capsys):
    spec = write(tmp_path / "s.arch", SEQ2SEQ)
    rows = [{"source": "a b", "target": "A B"}] * 4 + [{"source": "c"}]
    data = write(tmp_path / "p.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    line = _fails(capsys, spec, data)
    assert f"{data}:5: missing key 'target' (seq2seq needs {{\"source\", \"target\"}})" in line


def test_jsonl_bad_json_and_bad_types(tmp_path, capsys):
    spec = write(tmp_path / "s.arch", SEQ2SEQ)
    data = write(tmp_path / "p.jsonl", '{"source": "a", "target": "b"}\n{"source": "a", \n')
    assert f"{data}:2: not valid JSON" in _fails(capsys, spec, data)
    data = write(tmp_path / "p.jsonl", '{"source": "a", "target": 3}\n')
    assert f"{data}:1: 'target' should be a string, got 3" in _fails(capsys, spec, data)
    data = write(tmp_path / "p.jsonl", '[1, 2]\n')
    assert f"{data}:1: a record should be a JSON object" in _fails(capsys, spec, data)
    data = write(tmp_path / "p.jsonl", "just text\n")
    assert f"{data}: not JSON Lines" in _fails(capsys, spec, data)


def test_labels_out_of_range(tmp_path, capsys):
    spec = write(tmp_path / "c.arch", BERT_CLASSIFY)
    rows = [{"text": "a cat", "label": 0}, {"text": "a dog", "label": 2}, {"text": "a mat", "label": 3}]
    data = write(tmp_path / "c.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    line = _fails(capsys, spec, data)
    assert f"{data}:3: label 3 is out of range: the classifier has 3 classes (0 to 2)" in line
    data = write(tmp_path / "c.jsonl", '{"text": "a", "label": "positive"}\n')
    assert "'label' should be an integer class id" in _fails(capsys, spec, data)


def test_classification_needs_jsonl(tmp_path, capsys):
    spec = write(tmp_path / "c.arch", BERT_CLASSIFY)
    assert "is a folder; classify trains on one JSON Lines file" in _fails(capsys, spec, tmp_path)
    line = _fails(capsys, spec, write(tmp_path / "a.txt", text(100)))
    assert "a.txt: not JSON Lines (line 1 is not a JSON object)" in line



def test_no_data_trains_on_the_builtin_task(tmp_path, capsys):
    """A classifier (or a seq2seq model) given no data trains on the built-in task,
    as a language model trains on the built-in corpus: nothing to download."""
    from strata.train.objectives import Classify, Seq2Seq

    spec = write(tmp_path / "c.arch", BERT_CLASSIFY)
    code = main(["train", str(spec), "--out", str(tmp_path / "r"), "-q", "--steps", "2"])
    assert code == 0, capsys.readouterr().err
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["data"]["builtin"] and info["data"]["name"].startswith("built-in task")
    records = Classify(classes=3).builtin_examples()
    assert len(records) > 1000 and {r["label"] for r in records} == {0, 1, 2}
    records = Seq2Seq().builtin_examples()
    assert all(r["target"].split() == r["source"].split()[::-1] for r in records)
    assert main(["eval", str(tmp_path / "r")]) == 0
    assert "built-in task: the length class" in capsys.readouterr().out


@pytest.mark.parametrize("spec_text, row", [
    (BERT_CLASSIFY, {"text": "a cat", "label": 0}),
    (SEQ2SEQ, {"source": "the cat", "target": "THE CAT"})])
def test_eval_on_a_file_of_one_example(tmp_path, capsys, spec_text, row):
    """`strata eval RUN --data FILE` scores every example of FILE, so one is enough:
    the two a run's own data needs (one to train on, one to validate) is no rule here."""
    spec = write(tmp_path / "m.arch", spec_text)
    assert main(["train", str(spec), "--out", str(tmp_path / "r"), "-q", "--steps", "1"]) == 0
    one = write(tmp_path / "one.jsonl", json.dumps(row) + "\n")
    capsys.readouterr()
    code = main(["eval", str(tmp_path / "r"), "--data", str(one), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["count"] >= 1
    assert main(["eval", str(tmp_path / "r"), "--data", str(one)]) == 0
    out = capsys.readouterr().out
    assert "(1 examples" not in out and ("(1 example in" in out or "predictions in" in out), out


def test_vocabulary_too_small_for_the_tokenizer(tmp_path, capsys):
    spec = write(tmp_path / "g.arch", GPT.replace("embedding(128, d)", "embedding(300, d)"))
    line = _fails(capsys, spec, write(tmp_path / "a.txt", text()), "--set", "tokenizer=bpe",
                  "--set", "vocab_size=400")
    assert "vocab_size = 400 is more than the model's vocabulary (300)" in line


def test_builtin_corpus_needs_no_file():
    src = text_source(None).check()
    assert src.builtin and src.name == BUILTIN and src.chars > 400_000
    assert src.digest == text_source(None).check().digest


def test_folder_of_files_in_sorted_order(tmp_path):
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "b.txt", "second\n")
    write(tmp_path / "d" / "a.txt", "first")
    write(tmp_path / "d" / ".hidden", "never")
    assert "".join(text_source(tmp_path / "d").texts()) == "first\nsecond\n"


def test_examples_split_is_fixed(tmp_path):
    from strata.train.dataset import tokenize_examples
    from strata.train.tokenizer import CharTokenizer

    rows = [{"text": f"example {i}", "label": i % 3} for i in range(50)]
    p = write(tmp_path / "c.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    recs, digest = read_examples(p, ("text", "label"), "classify", 3)
    tok = CharTokenizer.fit([r["text"] for r in recs], ["[PAD]", "[UNK]", "[CLS]", "[SEP]"], 100)
    a = tokenize_examples(recs, digest, "classify", ("text", "label"), tok, tmp_path / "cache", 0.1, str(p))
    b = tokenize_examples(recs, digest, "classify", ("text", "label"), tok, tmp_path / "cache", 0.1, str(p))  # cached
    assert len(a.val_idx) == 5 and len(a.train_idx) == 45
    assert np.array_equal(a.val_idx, b.val_idx) and not set(a.val_idx) & set(a.train_idx)
    assert [tok.decode(b.get("text", i)) for i in range(3)] == ["example 0", "example 1", "example 2"]


def test_a_cached_id_file_longer_than_its_text_is_not_read(tmp_path):
    """A run folder from someone else can hold a sparse cache file claiming 10**12 ids
    under the name its data's hash gives: checking the ids read it whole (4 GB of zeros
    took 6 s).  A file of more ids than the text can make (4 a character) is rebuilt
    from the text instead, as are examples' ids and an offsets file past its size."""
    import os

    from strata.train.dataset import token_stream, tokenize_examples
    from strata.train.tokenizer import CharTokenizer

    src = text_source(write(tmp_path / "a.txt", "the cat sat on the mat.\n" * 20)).check()
    tok = CharTokenizer.fit([*src.texts(), "example 0123456789"], [], 128)
    cache = tmp_path / "cache"
    want = token_stream(src, tok, cache, 0.1, 2).ids.copy()
    (made,) = cache.iterdir()
    os.truncate(made, 1 << 26)  # 32 Mi ids of 0, sparse: every id valid, far more than the text makes
    got = token_stream(src, tok, cache, 0.1, 2, writer=False).ids
    assert np.array_equal(got, want)

    rows = [{"text": f"example {i}", "label": i % 3} for i in range(20)]
    p = write(tmp_path / "c.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    recs, digest = read_examples(p, ("text", "label"), "classify", 3)
    a = tokenize_examples(recs, digest, "classify", ("text", "label"), tok, cache, 0.1, str(p))
    ids = next(f for f in cache.iterdir() if f.name.startswith("text-") and not f.name.endswith(".json"))
    os.truncate(ids, 1 << 26)
    meta = ids.with_name(ids.name + ".json")
    meta.write_text(json.dumps({"offsets": [0] * 20 + [1 << 25]}) + " " * (1 << 20))
    b = tokenize_examples(recs, digest, "classify", ("text", "label"), tok, cache, 0.1, str(p), writer=False)
    assert [tok.decode(b.get("text", i)) for i in range(20)] == [tok.decode(a.get("text", i)) for i in range(20)]
