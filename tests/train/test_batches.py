"""Batches are a pure function of (seed, step, micro-step): any world size sees
the same global batch; masking follows BERT's 15 % / 80-10-10."""

from __future__ import annotations

import numpy as np
import pytest

from tests.optional import require

torch = require("torch")

from strata.train.batches import SequentialWindows, rows_of
from strata.train.objectives import Classify, MaskedLM
from strata.train.objectives.causal_lm import LMWindows
from strata.train.objectives.classify import ClassifyBatches
from strata.train.objectives.masked_lm import MaskedWindows
from strata.train.dataset import Examples
from strata.train.tokenizer import CharTokenizer


def test_rows_partition_any_world_size():
    for n in (1, 7, 12):
        for world in range(1, n + 1):
            rows = [rows_of(n, r, world) for r in range(world)]
            assert [i for s in rows for i in range(n)[s]] == list(range(n))


def test_lm_windows_are_next_token_pairs_and_step_keyed():
    data = np.arange(5000) % 97
    s = LMWindows(data, data, context=16, batch=6, seed=3, eval_steps=2)
    a, b = s.train_batch(10, 0), s.train_batch(10, 0)
    assert np.array_equal(a["tokens"], b["tokens"])                    # same step, same batch
    assert not np.array_equal(a["tokens"], s.train_batch(11, 0)["tokens"])
    assert not np.array_equal(a["tokens"], s.train_batch(10, 1)["tokens"])
    assert np.array_equal((a["tokens"] + 1) % 97, a["labels"])
    assert np.array_equal(s.eval_batch(1)["tokens"],
                          LMWindows(data, data, 16, 6, seed=99, eval_steps=2).eval_batch(1)["tokens"])


def test_sequential_windows_cover_each_token_once():
    data = np.arange(100)
    s = SequentialWindows(data, context=8, batch=5)
    labels = np.concatenate([s.eval_batch(i)["labels"].ravel() for i in range(s.eval_count())])
    assert s.eval_count() == 3 and np.array_equal(labels, np.arange(1, 97))


@pytest.mark.parametrize("nsp", [False, True])
def test_masking_statistics(nsp):
    tok = CharTokenizer(list("abcdefghij"), list(MaskedLM.specials))
    data = np.random.default_rng(0).integers(5, 15, 20000)
    s = MaskedWindows(data, data, context=32, batch=512, seed=0, eval_steps=1, tok=tok, nsp=nsp)
    b = s.train_batch(0, 0)
    chosen = b["labels"] != -100
    special = np.isin(b["tokens"], [tok.special("[CLS]"), tok.special("[SEP]")]) & ~chosen
    assert not (chosen & special).any()
    assert abs(chosen.sum() / (~special).sum() - 0.15) < 0.01
    masked = (b["tokens"] == tok.special("[MASK]")) & chosen
    kept = (b["tokens"] == b["labels"]) & chosen
    assert abs(masked.sum() / chosen.sum() - 0.8) < 0.03
    assert abs(kept.sum() / chosen.sum() - 0.1 - 0.1 / 10) < 0.03  # 10 % kept, + random hits
    assert b["tokens"].shape == (512, 32) and (b["tokens"][:, 0] == tok.special("[CLS]")).all()
    if nsp:
        assert abs(b["nsp_labels"].mean() - 0.5) < 0.07
        seps = (b["tokens"] == tok.special("[SEP]")).sum(1)
        assert (seps == 2).all() and ((b["token_type_ids"] == 1).sum(1) > 0).all()


def test_next_sentence_pairs_continue_or_jump():
    tok = CharTokenizer([chr(i) for i in range(200)], list(MaskedLM.specials))
    data = np.arange(5, 205)  # every id once: a continuation is visible as consecutive ids
    s = MaskedWindows(data, data, context=20, batch=64, seed=1, eval_steps=1, tok=tok, nsp=True,
                      mask_prob=1e-9)
    b = s.train_batch(0, 0)
    for row, label, types in zip(b["tokens"], b["nsp_labels"], b["token_type_ids"]):
        end_a, start_b = row[types.argmax() - 2], row[types.argmax()]
        assert (start_b == end_a + 1) == (label == 0)


def test_example_batches_visit_every_example_each_epoch():
    n = 10
    tok = CharTokenizer([chr(65 + i) for i in range(n)], list(Classify.specials))
    flat = np.arange(n) + 4                       # example i is the single token i + 4
    ex = Examples({"text": (flat, np.arange(n + 1))}, np.arange(n) % 3,
                  train_idx=np.arange(n), val_idx=np.arange(0))
    s = ClassifyBatches(ex, context=8, batch=4, seed=0, eval_steps=1, tok=tok)
    seen = [int(i) for step in range(5) for i in s.train_batch(step, 0)["tokens"][:, 1] - 4]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert seen[:10] != seen[10:20]               # a fresh order each epoch
    b = s.train_batch(0, 0)
    assert b["tokens"].shape == (4, 3) and (b["tokens"][:, 0] == tok.special("[CLS]")).all()
    assert (b["attention_mask"] == 1).all() and np.array_equal(b["labels"], (b["tokens"][:, 1] - 4) % 3)
