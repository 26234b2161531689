"""Token ids of a run's data, cached as memory-mapped arrays in the run folder
(`cache/`, keyed by the data's hash and the tokenizer), split into training and
validation parts the same way every time.

Text (language-model objectives): one stream of ids, the first 1 - val_fraction
for training and the rest for validation, as nanoGPT splits its data.
Examples (JSON Lines): a fixed permutation (seed 0, whatever the run's seed)
puts ceil(val_fraction * n) of them aside for validation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from strata.errors import UsageError
from strata.io import atomic_output, open_regular, read_regular, write_atomic
from strata.train.data import DataError, TextSource
from strata.train.folder import own_folder
from strata.train.tokenizer import Tokenizer

__all__ = ["TokenStream", "Examples", "token_stream", "tokenize_examples"]


def _dtype(vocab: int):
    return np.uint16 if vocab <= 1 << 16 else np.uint32


def _key(digest: str, tok: Tokenizer, what: str) -> str:
    return hashlib.sha256(f"{what}\0{digest}\0{tok.dumps()}".encode()).hexdigest()[:20]


def _open_cached(path: Path, dtype, vocab: int, most: int) -> np.ndarray | None:
    """A cached id file, or None when it is missing or does not hold valid ids.
    Only a regular file inside the run is mapped (never through a symlink, never
    a FIFO or a device): anything else is rebuilt, and replaced when written.
    `most`: the ids the text can make; a file of more is not the text's (a run
    folder from someone else could hold a sparse file of 10**12 ids, which
    checking its ids would read whole)."""
    try:
        fd = open_regular(path, "cache file", follow=False)
    except UsageError:
        return None
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0 or size % np.dtype(dtype).itemsize or size // np.dtype(dtype).itemsize > most:
            return None
        arr = np.memmap(f, dtype=dtype, mode="r")
    if int(arr.max()) >= vocab:
        return None
    return arr




def _check_cache(cache: Path | None) -> None:
    """The run's cache/ is read and written only as a real folder inside the run."""
    if cache is not None and os.path.lexists(cache):
        own_folder(cache)


@dataclass
class TokenStream:
    """All ids of a text source, and where validation starts."""

    ids: np.ndarray        # (N,) uint16 / uint32, memory-mapped
    split: int             # ids[:split] train, ids[split:] validation

    @property
    def train(self) -> np.ndarray:
        return self.ids[:self.split]

    @property
    def val(self) -> np.ndarray:
        return self.ids[self.split:]


def token_stream(src: TextSource, tok: Tokenizer, cache: Path | None, val_fraction: float,
                 need: int, writer: bool = True) -> TokenStream:
    """Tokenize `src` (or map the cached ids); check each split holds at least
    `need` ids (one training window).  Only the `writer` (rank 0) writes the cache."""
    dtype = _dtype(tok.vocab_size)
    ids = None
    _check_cache(cache)
    path = cache / f"tokens-{_key(src.digest, tok, 'text')}.{np.dtype(dtype).name}" if cache else None
    if path is not None:
        # a token is at least one UTF-8 byte of the text, a character at most 4
        ids = _open_cached(path, dtype, tok.vocab_size, 4 * src.chars)
    if ids is None:
        parts = [tok.encode(t).astype(dtype) for t in src.texts()]
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype)
        if path is not None and writer and len(ids):
            own_folder(path.parent)
            with atomic_output(path, follow=False) as tmp:
                ids.tofile(tmp)
    n = len(ids)
    n_val = int(n * val_fraction)
    split = n - n_val
    if split < need or n_val < need:
        raise DataError(
            f"{src.name}: too short: {src.chars:,} characters make {n:,} tokens, "
            f"{split:,} for training and {n_val:,} for validation (val_fraction {val_fraction}); "
            f"each needs at least context + 1 = {need} tokens: give more text or a shorter context")
    return TokenStream(ids, split)


@dataclass
class Examples:
    """Tokenized examples: for each field a flat id array and offsets (n + 1,)."""

    fields: dict[str, tuple[np.ndarray, np.ndarray]]
    labels: np.ndarray | None    # (n,) int64 for classification
    train_idx: np.ndarray        # example indices of each split
    val_idx: np.ndarray

    def get(self, name: str, i: int) -> np.ndarray:
        flat, off = self.fields[name]
        return np.asarray(flat[off[i]:off[i + 1]], dtype=np.int64)

    def length(self, name: str, idx: np.ndarray) -> np.ndarray:
        off = self.fields[name][1]
        return off[idx + 1] - off[idx]


def tokenize_examples(records: list[dict], digest: str, objective: str, keys: tuple[str, ...],
                      tok: Tokenizer, cache: Path | None, val_fraction: float, name: str,
                      writer: bool = True, all_val: bool = False) -> Examples:
    """The text fields of `records` as ids (cached under a key of the data, the
    tokenizer and `objective`'s name), an integer "label" field as labels, and
    the train / validation split; `all_val`: every example validates (`strata
    eval --data`: a file of one example is enough)."""
    dtype = _dtype(tok.vocab_size)
    fields = {}
    _check_cache(cache)
    key = _key(digest, tok, objective)
    for fname in keys:
        if fname == "label":
            continue
        path = cache / f"{fname}-{key}.{np.dtype(dtype).name}" if cache else None
        meta = path.with_suffix(path.suffix + ".json") if path else None
        most = 4 * sum(len(r[fname]) for r in records)  # ids the field's text can make, at most
        flat = _open_cached(path, dtype, tok.vocab_size, most) if path else None
        off = None
        if flat is not None:
            try:  # one offset per example and one more, each at most 20 digits and ", "
                raw = read_regular(meta, 22 * (len(records) + 1) + 64, "cache file", follow=False)
                off = np.asarray(json.loads(raw)["offsets"], dtype=np.int64)
                if off.ndim != 1:
                    off = None
            except (UsageError, ValueError, KeyError, TypeError, OverflowError, RecursionError):
                off = None
            if off is None or len(off) != len(records) + 1 or off[0] != 0 or off[-1] != len(flat) \
                    or (np.diff(off) < 0).any():
                flat = None
        if flat is None:
            parts = [tok.encode(r[fname]).astype(dtype) for r in records]
            off = np.zeros(len(parts) + 1, dtype=np.int64)
            off[1:] = np.cumsum([len(p) for p in parts])
            flat = np.concatenate(parts) if parts else np.zeros(0, dtype)
            if path is not None and writer:
                own_folder(path.parent)
                with atomic_output(path, follow=False) as tmp:
                    flat.tofile(tmp)
                write_atomic(meta, json.dumps({"offsets": off.tolist()}), follow=False)
        fields[fname] = (flat, off)
    labels = np.array([r["label"] for r in records], dtype=np.int64) if "label" in keys else None
    n = len(records)
    if all_val and n >= 1:
        return Examples(fields, labels, train_idx=np.zeros(0, np.int64), val_idx=np.arange(n))
    if n < 2:
        raise DataError(f"{name}: {n} example; need at least 2 (one to train on, one to validate)")
    order = np.random.default_rng(0).permutation(n)
    n_val = min(n - 1, max(1, math.ceil(n * val_fraction)))
    return Examples(fields, labels, train_idx=np.sort(order[n_val:]), val_idx=np.sort(order[:n_val]))
