"""Batches as a pure function of (seed, step, micro-step): the batch of step s is
the same whether the run went straight there or was killed and resumed, and
whether one process or N draw it (each rank takes its rows of the same global
batch).  So the "data position" a checkpoint keeps is just the step.

Each sampler returns the *global* batch as numpy arrays, rows first; labels
are -100 where nothing is predicted.

    >>> import numpy as np
    >>> s = LMWindows(np.arange(1000) % 50, np.arange(200) % 50, context=8, batch=4, seed=0, eval_steps=2)
    >>> b = s.train_batch(step=0, micro=0)
    >>> b["tokens"].shape, bool((b["labels"][:, :-1] == b["tokens"][:, 1:]).all())
    ((4, 8), True)
"""

from __future__ import annotations

import math

import numpy as np

from strata.train.dataset import Examples
from strata.train.tokenizer import Tokenizer

__all__ = ["LMWindows", "MaskedWindows", "ExampleBatches", "SequentialWindows", "rows_of"]

TRAIN, EVAL, EPOCH = 1, 2, 3  # random streams
IGNORE = -100


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def rows_of(n: int, rank: int, world: int) -> slice:
    """The rows of an n-row global batch that `rank` of `world` takes."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


class LMWindows:
    """Causal LM: random windows of context + 1 ids (nanoGPT's get_batch); the
    fixed evaluation set is `eval_steps` batches of validation windows."""

    def __init__(self, train, val, context: int, batch: int, seed: int, eval_steps: int):
        self.train, self.val, self.T, self.B = train, val, context, batch
        self.seed, self.eval_steps = seed, eval_steps

    def _windows(self, data, offsets) -> dict:
        x = np.asarray(data[offsets[:, None] + np.arange(self.T + 1)], dtype=np.int64)
        return {"tokens": x[:, :-1], "labels": x[:, 1:]}

    def train_batch(self, step: int, micro: int) -> dict:
        off = _rng(self.seed, TRAIN, step, micro).integers(0, len(self.train) - self.T, size=self.B)
        return self._windows(self.train, off)

    def eval_count(self) -> int:
        return self.eval_steps

    def eval_batch(self, i: int) -> dict:
        off = _rng(EVAL, i).integers(0, len(self.val) - self.T, size=self.B)
        return self._windows(self.val, off)


class MaskedWindows:
    """Masked LM (BERT): `[CLS] window [SEP]`, 15 % of the window's tokens chosen,
    of those 80 % replaced by [MASK], 10 % by a random token, 10 % kept.  With
    next-sentence prediction: `[CLS] A [SEP] B [SEP]`, B the text that follows A
    or (half the time, label 1) a window from elsewhere."""

    def __init__(self, train, val, context: int, batch: int, seed: int, eval_steps: int,
                 tok: Tokenizer, nsp: bool, mask_prob: float = 0.15):
        self.train, self.val, self.T, self.B = train, val, context, batch
        self.seed, self.eval_steps, self.nsp, self.p = seed, eval_steps, nsp, mask_prob
        self.cls, self.sep, self.mask = tok.special("[CLS]"), tok.special("[SEP]"), tok.special("[MASK]")
        self.first, self.vocab = len(tok.specials), tok.vocab_size  # ids of ordinary tokens
        self.L = context - (3 if nsp else 2)  # content tokens per example

    def _batch(self, data, rng: np.random.Generator) -> dict:
        B, T, L = self.B, self.T, self.L
        tokens = np.empty((B, T), dtype=np.int64)
        types = np.zeros((B, T), dtype=np.int64)
        special = np.zeros((B, T), dtype=bool)
        nsp = np.zeros(B, dtype=np.int64)
        for b in range(B):
            if not self.nsp:
                o = rng.integers(0, len(data) - L)
                tokens[b] = np.concatenate([[self.cls], data[o:o + L], [self.sep]])
                special[b, [0, T - 1]] = True
                continue
            la = int(rng.integers(1, L))           # A: 1 .. L-1 tokens, B: the rest
            lb = L - la
            o = int(rng.integers(0, len(data) - L))
            is_next = rng.random() < 0.5
            ob = o + la if is_next else int(rng.integers(0, len(data) - lb))
            nsp[b] = 0 if is_next else 1
            tokens[b] = np.concatenate([[self.cls], data[o:o + la], [self.sep],
                                        data[ob:ob + lb], [self.sep]])
            types[b, la + 2:] = 1
            special[b, [0, la + 1, T - 1]] = True
        chosen = (rng.random((B, T)) < self.p) & ~special
        if not chosen.any():  # at least one prediction per batch
            chosen[0, 1] = True
        r = rng.random((B, T))
        labels = np.where(chosen, tokens, IGNORE)
        corrupt = tokens.copy()
        corrupt[chosen & (r < 0.8)] = self.mask
        swap = chosen & (r >= 0.8) & (r < 0.9)
        corrupt[swap] = rng.integers(self.first, self.vocab, size=int(swap.sum()))
        out = {"tokens": corrupt, "token_type_ids": types, "labels": labels}
        if self.nsp:
            out["nsp_labels"] = nsp
        return out

    def train_batch(self, step: int, micro: int) -> dict:
        return self._batch(self.train, _rng(self.seed, TRAIN, step, micro))

    def eval_count(self) -> int:
        return self.eval_steps

    def eval_batch(self, i: int) -> dict:
        return self._batch(self.val, _rng(EVAL, i))


class ExampleBatches:
    """Seq2seq and classification: the training examples in a fresh permutation
    each epoch, padded to the longest of the (global) batch; validation in order."""

    def __init__(self, ex: Examples, objective: str, context: int, batch: int, seed: int,
                 eval_steps: int, tok: Tokenizer, accumulate: int = 1):
        self.ex, self.objective, self.T, self.B = ex, objective, context, batch
        self.accumulate = accumulate
        self._perms: dict[int, np.ndarray] = {}
        self.seed, self.eval_steps = seed, eval_steps
        self.pad = tok.special("[PAD]")
        if objective == "seq2seq":
            self.bos, self.eos = tok.special("[BOS]"), tok.special("[EOS]")
        else:
            self.cls, self.sep = tok.special("[CLS]"), tok.special("[SEP]")

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:  # a batch spans at most two epochs
            self._perms = {e: p for e, p in self._perms.items() if e == epoch - 1}
            self._perms[epoch] = _rng(self.seed, EPOCH, epoch).permutation(self.ex.train_idx)
        return self._perms[epoch]

    def _pad(self, rows: list[np.ndarray], value: int) -> np.ndarray:
        out = np.full((len(rows), max(len(r) for r in rows)), value, dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out

    def _make(self, idx: np.ndarray) -> dict:
        ex = self.ex
        if self.objective == "classify":
            rows = [np.concatenate([[self.cls], ex.get("text", i)[:self.T - 2], [self.sep]]) for i in idx]
            tokens = self._pad(rows, self.pad)
            return {"tokens": tokens, "attention_mask": (tokens != self.pad).astype(np.int64),
                    "labels": ex.labels[idx]}
        src = [np.concatenate([ex.get("source", i)[:self.T - 1], [self.eos]]) for i in idx]
        tgt = [ex.get("target", i)[:self.T - 1] for i in idx]
        src = self._pad(src, self.pad)
        return {"src": src, "attention_mask": (src != self.pad).astype(np.int64),
                "tgt": self._pad([np.concatenate([[self.bos], t]) for t in tgt], self.pad),
                "labels": self._pad([np.concatenate([t, [self.eos]]) for t in tgt], IGNORE)}

    def train_batch(self, step: int, micro: int) -> dict:
        n = len(self.ex.train_idx)
        k = (step * self.accumulate + micro) * self.B + np.arange(self.B)
        idx = np.array([self._perm(int(e))[p] for e, p in zip(k // n, k % n)])
        return self._make(idx)

    def eval_count(self) -> int:
        return min(self.eval_steps, math.ceil(len(self.ex.val_idx) / self.B))

    def eval_batch(self, i: int) -> dict:
        return self._make(self.ex.val_idx[i * self.B:(i + 1) * self.B])


class SequentialWindows:
    """Every non-overlapping window of a token array, in order (`strata eval`:
    the whole validation split, each token predicted once)."""

    def __init__(self, data, context: int, batch: int, max_batches: int | None = None):
        self.data, self.T, self.B = data, context, batch
        self.n = max((len(data) - 1) // context, 0)
        if max_batches is not None:
            self.n = min(self.n, max_batches * batch)

    def eval_count(self) -> int:
        return math.ceil(self.n / self.B)

    def eval_batch(self, i: int) -> dict:
        starts = np.arange(i * self.B, min((i + 1) * self.B, self.n)) * self.T
        x = np.asarray(self.data[starts[:, None] + np.arange(self.T + 1)], dtype=np.int64)
        return {"tokens": x[:, :-1], "labels": x[:, 1:]}
