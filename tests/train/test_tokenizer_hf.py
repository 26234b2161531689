"""strata's tokenizers as Hugging Face fast tokenizers: AutoTokenizer loads the
exported files alone, and ids and text are strata's."""

from __future__ import annotations

import pytest

from strata.train.objectives import CausalLM, MaskedLM, Seq2Seq
from strata.train.tokenizer import fit_tokenizer
from strata.train.tokenizer_hf import tokenizer_files
from tests.optional import require

transformers = require("transformers")

TEXTS = ["First Citizen:\nBefore we proceed any further, hear me speak.\n",
         "All: Speak, speak. — café ☃\n\nSecond line\twith a tab  and spaces "]


@pytest.mark.parametrize("kind,objective", [("char", CausalLM), ("byte", CausalLM), ("bpe", CausalLM),
                                            ("char", MaskedLM), ("bpe", Seq2Seq)])
def test_round_trip(kind, objective, tmp_path):
    tok = fit_tokenizer(kind, lambda: iter(TEXTS), objective.specials, 400, 300 if kind == "bpe" else None)
    for name, text in tokenizer_files(tok, 64).items():
        (tmp_path / name).write_text(text)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert len(hf) == tok.vocab_size
    for text in TEXTS:
        ids = tok.encode(text).tolist()
        assert hf.encode(text, add_special_tokens=False) == ids
        assert hf.decode(ids) == tok.decode(ids) == text
    for s in tok.specials:  # the specials keep their ids and roles
        assert hf.convert_tokens_to_ids(s) == tok.special(s)
    if "[MASK]" in tok.specials:
        assert hf.mask_token == "[MASK]" and hf.pad_token == "[PAD]"


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
@pytest.mark.parametrize("objective", [CausalLM, Seq2Seq], ids=["causal_builtin_corpus", "seq2seq_builtin_task"])
def test_every_training_text_round_trips(kind, objective, tmp_path):
    """Every text a run with no --data fits its tokenizer on and trains on (the
    built-in corpus: 465k characters, 103 distinct, typographic quotes and
    dashes among them; or the built-in sequence-to-sequence task's fields): the
    exported tokenizer gives strata's ids and decodes them back to the text."""
    obj = objective()
    texts, _, _ = obj.read_data(None)
    tok = fit_tokenizer(kind, texts, obj.specials, 4096, 500 if kind == "bpe" else None)
    for name, text in tokenizer_files(tok, 64).items():
        (tmp_path / name).write_text(text)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    seen = 0
    for text in texts():
        ids = tok.encode(text).tolist()
        assert hf.encode(text, add_special_tokens=False) == ids
        assert hf.decode(ids) == text
        seen += 1
    assert seen >= 1
