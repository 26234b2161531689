"""Tokenizers a run trains on its data and keeps in its folder (`tokenizer.json`):
char (nanoGPT's: one id per character), byte (256 ids), and BPE (byte-level,
trained with the `tokenizers` library).  Each reserves the special tokens its
objective needs (`[MASK]`, `[CLS]`, ...) at the lowest ids.

    >>> tok = CharTokenizer.fit(["hello"], specials=[], limit=65)
    >>> tok.vocab_size, tok.decode(tok.encode("hole").tolist())
    (4, 'hole')
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from strata.errors import UsageError
from strata.io import read_regular

__all__ = ["Tokenizer", "Unseen", "UnseenCharacters", "CharTokenizer", "ByteTokenizer", "BPETokenizer",
           "fit_tokenizer", "load_tokenizer", "tokenizer_from_json"]

UNK = "[UNK]"
MAX_VOCAB = 1 << 24  # far past any real vocabulary; bounds what a tokenizer.json may claim


class UnseenCharacters(UsageError):
    """Text with a character a char tokenizer (without <unk>) has no id for.
    `shown`: the characters the message names (a few, sorted)."""

    def __init__(self, shown: str, vocab_size: int):
        super().__init__(f"the text has characters the tokenizer never saw: {shown}")
        self.shown, self.vocab_size = shown, vocab_size

    def within(self, what: str, instead: str) -> UsageError:
        """The same mistake said of `what` (the prompt, an --data file), and what to do."""
        return UsageError(f"{what} has characters the tokenizer never saw: {self.shown} (a char tokenizer "
                          f"of {self.vocab_size:,} ids, one per character of the text it was fitted on): "
                          f"{instead}")


@dataclass
class Unseen:
    """What a char tokenizer with `[UNK]` read as `[UNK]`: `count` characters,
    `chars` the first few distinct ones (sorted).  Causal LMs' tokenizers have no
    `[UNK]` and refuse such text (UnseenCharacters); seq2seq's and classify's
    reserve one, so these are what a command says instead of losing them in silence."""

    count: int = 0
    chars: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.count > 0

    def __add__(self, other: "Unseen") -> "Unseen":
        return Unseen(self.count + other.count, sorted(set(self.chars) | set(other.chars))[:1000])

    @property
    def shown(self) -> str:
        """`'é' 'ß'` (repr: a control character is named, not printed)."""
        return " ".join(repr(c) for c in self.chars[:SHOWN]) + (" ..." if len(self.chars) > SHOWN else "")

    def said_of(self, what: str) -> str:
        """`the prompt has 2 characters the tokenizer never saw, read as [UNK]: 'é' 'ö'`."""
        n = f"{self.count:,} character{'s' * (self.count != 1)}"
        return f"{what} has {n} the tokenizer never saw, read as {UNK}: {self.shown}"


SHOWN = 10  # distinct characters a message names


class Tokenizer(ABC):
    """text <-> ids.  `specials` occupy ids 0..len(specials)-1."""

    kind = ""

    def __init__(self, specials: list[str]):
        self.specials = list(specials)

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """How many ids it uses (specials included)."""

    def special(self, name: str) -> int:
        """The id of a special token such as "[MASK]"."""
        return self.specials.index(name)

    @property
    def unk(self) -> int | None:
        return self.specials.index(UNK) if UNK in self.specials else None

    @abstractmethod
    def encode(self, text: str) -> np.ndarray:
        """`text` as token ids."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Token ids back to text."""

    def check_covers(self, texts: Iterable[str]) -> None:
        """Raise UnseenCharacters when a text holds what this tokenizer has no id for
        (byte and BPE read any text)."""

    def unseen(self, texts: Iterable[str]) -> Unseen:
        """The characters of `texts` it reads as `[UNK]` (byte and BPE: none)."""
        return Unseen()

    @abstractmethod
    def to_json(self) -> dict:
        """What the run folder keeps to rebuild this tokenizer."""

    def dumps(self) -> str:
        return json.dumps({"format": "strata-tokenizer", "version": 1, "type": self.kind,
                           "specials": self.specials, **self.to_json()}, ensure_ascii=False)


class CharTokenizer(Tokenizer):
    """One id per character: the specials, then the characters in sorted order.
    When the data has more distinct characters than the model's vocabulary holds,
    the most frequent ones are kept and the rest read as `[UNK]`."""

    kind = "char"

    def __init__(self, chars: list[str], specials: list[str]):
        super().__init__(specials)
        self.chars = list(chars)
        k = len(self.specials)
        cps = np.array([ord(c) for c in self.chars], dtype=np.int64)
        order = np.argsort(cps)
        self._cps = cps[order]                     # sorted code points
        self._ids = (order + k).astype(np.int64)   # their ids
        self._table = [""] * k + self.chars
        if self.unk is not None:
            self._table[self.unk] = "\ufffd"

    @classmethod
    def fit(cls, texts: Iterable[str], specials: list[str], limit: int) -> "CharTokenizer":
        counts: Counter = Counter()
        for t in texts:
            counts.update(t)
        specials = list(specials)
        room = limit - len(specials)
        if len(counts) > room and UNK not in specials:
            specials.append(UNK)
            room -= 1
        kept = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max(room, 0)]]
        tok = cls(sorted(kept), specials)
        tok.dropped = len(counts) - len(kept)
        tok.dropped_count = sum(n for c, n in counts.items() if c not in set(kept))
        return tok

    @property
    def vocab_size(self) -> int:
        return len(self.specials) + len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int64)
        if not len(cps):
            return np.zeros(0, dtype=np.int64)
        pos = np.searchsorted(self._cps, cps).clip(0, max(len(self._cps) - 1, 0))
        found = self._cps[pos] == cps if len(self._cps) else np.zeros(len(cps), bool)
        ids = np.where(found, self._ids[pos] if len(self._ids) else 0, -1)
        if not found.all():
            if self.unk is None:
                missing = sorted({chr(c) for c in cps[~found][:1000]})
                raise UnseenCharacters(" ".join(repr(c) for c in missing[:10]), self.vocab_size)
            ids[~found] = self.unk
        return ids

    def check_covers(self, texts: Iterable[str]) -> None:
        if self.unk is not None:  # what it never saw reads as [UNK]
            return
        step = 1 << 22  # encoded a piece at a time: ids of a large file at once would be 8 bytes a character
        for text in texts:
            for i in range(0, len(text), step):
                self.encode(text[i:i + step])

    def unseen(self, texts: Iterable[str]) -> Unseen:
        if self.unk is None:  # encode refuses them instead
            return Unseen()
        count, missing = 0, set()
        step = 1 << 22  # a piece at a time, as check_covers reads
        for text in texts:
            for i in range(0, len(text), step):
                cps = np.frombuffer(text[i:i + step].encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int64)
                pos = np.searchsorted(self._cps, cps).clip(0, max(len(self._cps) - 1, 0))
                lost = cps[self._cps[pos] != cps] if len(self._cps) else cps
                count += len(lost)
                if len(missing) < 1000:  # bounded: which ones is for a message
                    missing.update(np.unique(lost[:1 << 16]).tolist())
        return Unseen(count, [chr(c) for c in sorted(missing)])

    def decode(self, ids: Iterable[int]) -> str:
        t = self._table
        return "".join(t[i] if 0 <= i < len(t) else "\ufffd" for i in ids)

    def to_json(self) -> dict:
        return {"chars": "".join(self.chars)}


class ByteTokenizer(Tokenizer):
    """The UTF-8 bytes: specials, then 256 ids."""

    kind = "byte"

    @property
    def vocab_size(self) -> int:
        return len(self.specials) + 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8).astype(np.int64) \
            + len(self.specials)

    def decode(self, ids: Iterable[int]) -> str:
        k = len(self.specials)
        return bytes(i - k for i in ids if k <= i < k + 256).decode("utf-8", "replace")

    def to_json(self) -> dict:
        return {}


class BPETokenizer(Tokenizer):
    """Byte-level BPE (GPT-2's scheme) from the `tokenizers` library."""

    kind = "bpe"

    def __init__(self, hf, specials: list[str]):
        super().__init__(specials)
        self.hf = hf

    @classmethod
    def fit(cls, texts: Iterable[str], specials: list[str], vocab_size: int) -> "BPETokenizer":
        from tokenizers import Tokenizer as HF  # lazy: optional
        from tokenizers import decoders, models, pre_tokenizers, trainers  # lazy: optional

        hf = HF(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf, specials)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        # Line by line: byte-level pre-tokenisation never merges across a newline,
        # so the ids are those of the whole text, and encode_batch uses every core.
        lines = text.splitlines(keepends=True)
        out = [np.asarray(e.ids, dtype=np.int64) for e in self.hf.encode_batch(lines)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=True)

    def to_json(self) -> dict:
        return {"tokenizer": json.loads(self.hf.to_str())}


def fit_tokenizer(kind: str, texts, specials, limit: int, vocab_size: int | None) -> Tokenizer:
    """Train a tokenizer of `kind` on `texts` (a callable giving a fresh iterator of
    strings) for a model whose vocabulary holds `limit` ids, the objective's
    `specials` at ids 0, 1, ... (a causal LM has none, so a char-level model's
    ids are exactly nanoGPT's: the sorted characters)."""
    specials = list(specials)
    if kind == "char":
        return CharTokenizer.fit(texts(), specials, limit)
    need = len(specials) + 256
    if kind == "byte":
        if limit < need:
            raise UsageError(f"tokenizer byte needs a vocabulary of at least {need} ids "
                             f"({len(specials)} special + 256 bytes); the model has {limit}")
        return ByteTokenizer(specials)
    size = vocab_size or limit
    if size > limit:
        raise UsageError(f"vocab_size = {size} is more than the model's vocabulary ({limit})")
    if size < need and vocab_size and limit >= need:
        raise UsageError(f"vocab_size = {size} is fewer than tokenizer bpe needs: at least {need} ids "
                         f"({len(specials)} special + 256 byte tokens); raise it (the model holds {limit})")
    if size < need:
        raise UsageError(f"tokenizer bpe needs a vocabulary of at least {need} ids "
                         f"({len(specials)} special + 256 byte tokens); the model has {limit}: "
                         "use tokenizer = char, or a larger vocab in the spec")
    return BPETokenizer.fit(texts(), specials, size)


def tokenizer_from_json(text: str, where: str) -> Tokenizer:
    """A tokenizer from its JSON (as `Tokenizer.dumps` writes it); UsageError naming
    `where` when it is not one."""
    def bad(why: str):
        return UsageError(f"{where}: not a strata tokenizer ({why})")

    try:
        d = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise bad(f"invalid JSON: {e}") from None
    if not isinstance(d, dict) or d.get("format") != "strata-tokenizer":
        raise bad("no 'format': 'strata-tokenizer'")
    specials = d.get("specials")
    if not isinstance(specials, list) or not all(isinstance(s, str) for s in specials) \
            or len(set(specials)) != len(specials) or len(specials) > 64:
        raise bad("'specials' should be a short list of distinct strings")
    if not all(_is_text(s) for s in specials):
        raise bad("'specials' holds a lone surrogate escape, which no text can hold")
    kind = d.get("type")
    if kind == "char":
        chars = d.get("chars")
        if not isinstance(chars, str) or len(set(chars)) != len(chars) or len(chars) > MAX_VOCAB:
            raise bad("'chars' should be a string of distinct characters")
        if not _is_text(chars):
            raise bad("'chars' holds a lone surrogate escape, which no text can hold")
        return CharTokenizer(list(chars), specials)
    if kind == "byte":
        return ByteTokenizer(specials)
    if kind == "bpe":
        from tokenizers import Tokenizer as HF  # lazy: optional

        _check_bpe(d.get("tokenizer"), bad)
        try:
            hf = HF.from_str(json.dumps(d.get("tokenizer")))
        except Exception as e:  # the library's own parse error, whatever its type
            raise bad(f"BPE model: {e}") from None
        if hf.get_vocab_size() > MAX_VOCAB:
            raise bad("vocabulary too large")
        return BPETokenizer(hf, specials)
    raise bad(f"unknown type {kind!r}")


# The parts of a BPE tokenizer.json that strata writes (BPETokenizer.fit): byte-level
# pre-tokenization (GPT-2's regex, built into the library) and nothing else that runs.
_BPE_PARTS = {"normalizer": (None,), "pre_tokenizer": ("ByteLevel",), "post_processor": (None, "ByteLevel"),
              "decoder": (None, "ByteLevel"), "truncation": (None,), "padding": (None,)}
MAX_ADDED = 1024  # added tokens: strata adds its specials (at most 64) only


def _check_bpe(h, bad) -> None:
    """The library's JSON of a BPE tokenizer, checked to hold only what strata writes
    before the library reads it: a `Split` or `Replace` pattern from someone else's
    file would run in the library's backtracking regex engine on every line (`(a+)+$`
    on 24 characters panics past its retry limit, a traceback), padding to a length
    of its choosing would fill memory, and a vocabulary, merges or added tokens are
    counted before they are built (the library makes a map of each)."""
    if not isinstance(h, dict):
        raise bad("'tokenizer' should be the BPE model as the tokenizers library writes it")
    model = h.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        raise bad("BPE model: 'tokenizer.model' should be a BPE model")
    for key, kinds in _BPE_PARTS.items():
        part = h.get(key)
        kind = str(part.get("type", "an object")) if isinstance(part, dict) else \
            None if part is None else type(part).__name__
        if kind not in kinds or (isinstance(part, dict) and "pattern" in part):
            said = ", ".join("none" if k is None else k for k in kinds)
            raise bad(f"its BPE's {key} is {json.dumps(kind)[:40]}: strata writes {said} only (a "
                      "tokenizer made elsewhere can run work of its choosing on every line)")
    vocab, merges, added = model.get("vocab"), model.get("merges"), h.get("added_tokens", [])
    if not isinstance(vocab, dict) or not isinstance(merges, list) or not isinstance(added, list):
        raise bad("its BPE model should have a 'vocab' object, a 'merges' list and an 'added_tokens' list")
    if len(vocab) > MAX_VOCAB or len(merges) > MAX_VOCAB or len(added) > MAX_ADDED:
        raise bad(f"vocabulary too large ({len(vocab):,} tokens, {len(merges):,} merges, {len(added):,} "
                  f"added; at most {MAX_VOCAB:,}, {MAX_VOCAB:,} and {MAX_ADDED:,})")


def _is_text(s: str) -> bool:
    """Whether `s` is text UTF-8 can hold (JSON's "\\ud800" decodes to a lone
    surrogate, which every later encode -- the run's cache key, a write -- refuses)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_tokenizer(path: str | Path, follow: bool = True) -> Tokenizer:
    """A tokenizer.json (a regular file of at most 256 MiB; follow=False, for a
    run's own, refuses a symlink too)."""
    raw = read_regular(path, 256 << 20, "tokenizer", follow=follow)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: cannot read ({e})") from None
    return tokenizer_from_json(text, str(path))
