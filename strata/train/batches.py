"""Batches as a pure function of (seed, step, micro-step): the batch of step s is
the same whether the run went straight there or was killed and resumed, and
whether one process or N draw it (each rank takes its rows of the same global
batch).  So the "data position" a checkpoint keeps is just the step.

Each sampler returns the *global* batch as numpy arrays, rows first; labels
are -100 where nothing is predicted.  The samplers each objective draws its
batches with live in its module (strata/train/objectives/); here are the
parts they share: the random streams, the rows of a rank, examples in
epochs, and every window in order.

    >>> import numpy as np
    >>> s = SequentialWindows(np.arange(100) % 50, context=8, batch=4)
    >>> b = s.eval_batch(0)
    >>> s.eval_count(), b["tokens"].shape, bool((b["labels"][:, :-1] == b["tokens"][:, 1:]).all())
    (3, (4, 8), True)
"""

from __future__ import annotations

import math

import numpy as np

from strata.train.dataset import Examples

__all__ = ["ExampleBatches", "SequentialWindows", "rng", "rows_of", "IGNORE", "TRAIN", "EVAL", "EPOCH"]

TRAIN, EVAL, EPOCH = 1, 2, 3  # random streams
IGNORE = -100


def rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def rows_of(n: int, rank: int, world: int) -> slice:
    """The rows of an n-row global batch that `rank` of `world` takes."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


class ExampleBatches:
    """Examples (JSON Lines): the training examples in a fresh permutation each
    epoch, validation in order; a subclass makes the padded rows of a batch
    (`make(idx)`)."""

    def __init__(self, ex: Examples, context: int, batch: int, seed: int, eval_steps: int,
                 accumulate: int = 1):
        self.ex, self.T, self.B = ex, context, batch
        self.accumulate = accumulate
        self._perms: dict[int, np.ndarray] = {}
        self.seed, self.eval_steps = seed, eval_steps

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:  # a batch spans at most two epochs
            self._perms = {e: p for e, p in self._perms.items() if e == epoch - 1}
            self._perms[epoch] = rng(self.seed, EPOCH, epoch).permutation(self.ex.train_idx)
        return self._perms[epoch]

    @staticmethod
    def pad(rows: list[np.ndarray], value: int) -> np.ndarray:
        """Rows of ids padded with `value` to the longest, (len(rows), longest)."""
        out = np.full((len(rows), max(len(r) for r in rows)), value, dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out

    def make(self, idx: np.ndarray) -> dict:
        """The batch of examples `idx`."""
        raise NotImplementedError

    def train_batch(self, step: int, micro: int) -> dict:
        n = len(self.ex.train_idx)
        k = (step * self.accumulate + micro) * self.B + np.arange(self.B)
        idx = np.array([self._perm(int(e))[p] for e, p in zip(k // n, k % n)])
        return self.make(idx)

    def eval_count(self) -> int:
        return min(self.eval_steps, math.ceil(len(self.ex.val_idx) / self.B))

    def eval_batch(self, i: int) -> dict:
        return self.make(self.ex.val_idx[i * self.B:(i + 1) * self.B])


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
