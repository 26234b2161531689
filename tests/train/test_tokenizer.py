"""Tokenizers: nanoGPT's char ids, bytes, BPE from the tokenizers library; saved
and reloaded exactly; a hostile tokenizer.json is refused with its name."""

from __future__ import annotations

import json

from tests.optional import require

torch = require("torch")

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.errors import UsageError
from strata.train.objectives import CausalLM, MaskedLM, Seq2Seq
from strata.train.tokenizer import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    fit_tokenizer,
    load_tokenizer,
    tokenizer_from_json,
)
from tests.train.helpers import text


def test_char_ids_are_nanogpts():
    data = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    tok = CharTokenizer.fit([data], [], limit=65)
    chars = sorted(set(data))  # nanoGPT: stoi = {ch: i for i, ch in enumerate(sorted(set(data)))}
    assert tok.encode(data).tolist() == [chars.index(c) for c in data]
    assert tok.decode(tok.encode(data).tolist()) == data and tok.unk is None
    with pytest.raises(UsageError, match="never saw: 'Z'"):
        tok.encode("Zebra")


def test_char_overflow_keeps_the_most_frequent():
    tok = CharTokenizer.fit(["aaaabbbcc" + "xyz"], [], limit=4)
    assert tok.vocab_size == 4 and tok.specials == ["[UNK]"] and tok.chars == ["a", "b", "c"]
    assert tok.decode(tok.encode("abz").tolist()) == "ab\ufffd"
    assert tok.dropped == 3


def test_specials_come_first():
    tok = CharTokenizer.fit(["hello"], list(MaskedLM.specials), limit=64)
    assert [tok.special(s) for s in MaskedLM.specials] == [0, 1, 2, 3, 4]
    assert tok.encode("h").tolist() == [5 + sorted("helo").index("h")]
    assert tok.decode([2, 5, 3]) == "e"  # specials decode to nothing


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=50))
def test_byte_round_trip(s):
    tok = ByteTokenizer(list(Seq2Seq.specials))
    ids = tok.encode(s)
    assert tok.vocab_size == 260 and (ids >= 4).all() and tok.decode(ids.tolist()) == s


def test_bpe_trains_saves_and_reloads(tmp_path):
    require("tokenizers")
    tok = fit_tokenizer("bpe", lambda: iter([text(2000)]), CausalLM.specials, limit=400, vocab_size=300)
    assert isinstance(tok, BPETokenizer) and 280 < tok.vocab_size <= 300  # merges run out
    s = "the big red cat sat on the mat.\nand ran far.\n"
    ids = tok.encode(s)
    assert len(ids) < len(s) / 2 and tok.decode(ids.tolist()) == s
    (tmp_path / "t.json").write_text(tok.dumps())
    again = load_tokenizer(tmp_path / "t.json")
    assert again.encode(s).tolist() == ids.tolist()
    with pytest.raises(UsageError, match="at least 256"):
        fit_tokenizer("bpe", lambda: iter(["ab"]), CausalLM.specials, limit=100, vocab_size=None)


@pytest.mark.parametrize("kind", ["char", "byte"])
def test_save_and_load_are_exact(kind, tmp_path):
    tok = fit_tokenizer(kind, lambda: iter(["héllo wörld\n"]), MaskedLM.specials, limit=300, vocab_size=None)
    again = tokenizer_from_json(tok.dumps(), "t.json")
    assert again.specials == tok.specials and again.encode("wörld").tolist() == tok.encode("wörld").tolist()


@pytest.mark.parametrize("doc,why", [
    ("not json", "invalid JSON"),
    ("[1]", "no 'format'"),
    ('{"format": "strata-tokenizer", "type": "char", "specials": [1], "chars": "ab"}', "specials"),
    ('{"format": "strata-tokenizer", "type": "char", "specials": [], "chars": "aa"}', "distinct"),
    ('{"format": "strata-tokenizer", "type": "wordpiece", "specials": []}', "unknown type"),
    ('{"format": "strata-tokenizer", "type": "bpe", "specials": [], "tokenizer": {"x": 1}}', "BPE model"),
    # JSON's \ud800 is a lone surrogate: no text holds one (the run's cache key once crashed on it)
    ('{"format": "strata-tokenizer", "type": "char", "specials": [], "chars": "a\\ud800b"}', "'chars' holds a lone"),
    ('{"format": "strata-tokenizer", "type": "byte", "specials": ["\\udfff"]}', "'specials' holds a lone"),
])
def test_hostile_tokenizer_json(doc, why, tmp_path):
    p = tmp_path / "tokenizer.json"
    p.write_text(doc)
    with pytest.raises(UsageError, match=why) as e:
        load_tokenizer(p)
    assert str(e.value).startswith(f"{p}: not a strata tokenizer")
    deep = json.dumps({"format": "strata-tokenizer", "type": "char", "specials": [], "chars": "a"})
    assert tokenizer_from_json(deep, "t").vocab_size == 1


def _bpe_doc(**change) -> str:
    """A strata BPE tokenizer.json with parts of the library's JSON replaced."""
    d = json.loads(BPETokenizer.fit([text()], [], 300).dumps())
    for key, value in change.items():
        if key in ("vocab", "merges"):
            d["tokenizer"]["model"][key] = value
        else:
            d["tokenizer"][key] = value
    return json.dumps(d)


_SPLIT = {"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": False}


@pytest.mark.parametrize("change,why", [
    # a backtracking regex: '(a+)+$' on 'a' * 24 + '!' panicked in the library (a traceback)
    ({"pre_tokenizer": _SPLIT}, "pre_tokenizer is \"Split\""),
    ({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [_SPLIT]}}, "pre_tokenizer is \"Sequence\""),
    ({"normalizer": {"type": "Replace", "pattern": {"Regex": "(a|aa)+$"}, "content": ""}},
     "normalizer is \"Replace\""),
    # padding every line to 10**12 ids
    ({"padding": {"strategy": {"Fixed": 10 ** 12}, "direction": "Right", "pad_to_multiple_of": None,
                  "pad_id": 0, "pad_type_id": 0, "pad_token": "a"}}, "padding is"),
    ({"added_tokens": [{"id": i, "content": f"<{i}>", "single_word": False, "lstrip": False, "rstrip": False,
                        "normalized": False, "special": True} for i in range(2000)]}, "vocabulary too large"),
])
def test_a_bpe_tokenizer_runs_only_what_strata_writes(change, why, tmp_path):
    """A tokenizer.json from someone else (a run's, --init's) is refused before the
    library reads it when it holds a regex, padding, or more entries than a vocabulary."""
    require("tokenizers")
    p = tmp_path / "tokenizer.json"
    p.write_text(_bpe_doc(**change))
    with pytest.raises(UsageError, match=why) as e:
        load_tokenizer(p)
    assert str(e.value).startswith(f"{p}: not a strata tokenizer") and "\n" not in str(e.value)
    assert tokenizer_from_json(_bpe_doc(), "t").encode("a" * 24 + "!").size  # what strata writes loads
