"""Masked LM (BERT), with next-sentence prediction when the model has an nsp_head.

    head        mlm_head (+ nsp_head in a branch off the pooler)
    tokens      [PAD] [UNK] [CLS] [SEP] [MASK]
    data        text (a file, a folder, the built-in corpus) -> one token stream
    batches     `[CLS] window [SEP]` (or `[CLS] A [SEP] B [SEP]`), 15 % of tokens chosen
    loss        "mlm": cross-entropy over the chosen tokens; "nsp": over the pairs
    generates   no (`strata eval` measures it)

    >>> import numpy as np
    >>> from strata.train.tokenizer import CharTokenizer
    >>> tok = CharTokenizer(list("abcdefghij"), list(MaskedLM.specials))
    >>> s = MaskedWindows(np.arange(500) % 10 + 5, None, context=12, batch=2, seed=0, eval_steps=1,
    ...                   tok=tok, nsp=False)
    >>> b = s.train_batch(0, 0)
    >>> b["tokens"].shape, int(b["tokens"][0, 0]) == tok.special("[CLS]")
    ((2, 12), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F

from strata.train.batches import EVAL, IGNORE, TRAIN, rng
from strata.train.objectives.objective import TextObjective
from strata.train.tokenizer import Tokenizer

__all__ = ["MaskedLM", "MaskedWindows"]


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
        return self._batch(self.train, rng(self.seed, TRAIN, step, micro))

    def eval_count(self) -> int:
        return self.eval_steps

    def eval_batch(self, i: int) -> dict:
        return self._batch(self.val, rng(EVAL, i))


@dataclass(frozen=True)
class MaskedLM(TextObjective):
    nsp: str | None = None    # output of the nsp_head (next-sentence prediction)

    name = "mlm"
    head = "mlm_head"
    hint = "mlm_head (masked LM, + nsp_head in a branch for next-sentence prediction)"
    specials = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    term = "mlm"

    @classmethod
    def detect(cls, g, heads):
        nsp = next((n for n, (k, _, _) in heads.items() if k == "nsp_head"), None)
        return next((cls(output=n, nsp=nsp) for n, (kind, _, _) in heads.items() if kind == "mlm_head"),
                    None)

    @property
    def uses(self) -> set[str]:
        return {self.output} | ({self.nsp} if self.nsp else set())

    def train_sampler(self, data, tok, cfg, context):
        return MaskedWindows(data.train, data.val, tok=tok, nsp=bool(self.nsp), context=context,
                             batch=cfg["batch"], seed=cfg["seed"], eval_steps=cfg["eval_steps"])

    def eval_windows(self, ids, tok, context, batch, max_batches):
        return MaskedWindows(ids, ids, context, batch, 0, max_batches or max(1, len(ids) // (batch * context)),
                             tok, bool(self.nsp))

    @property
    def term_names(self) -> list[str]:
        return ["mlm", "nsp"] if self.nsp else ["mlm"]

    def counts(self, batch) -> dict[str, int]:
        out = super().counts(batch)
        if self.nsp:
            out["nsp"] = len(batch["labels"])
        return out

    def wants_dict(self) -> bool:
        return super().wants_dict() or bool(self.nsp)

    def terms(self, out, b):
        terms = super().terms(out, b)
        if self.nsp:
            terms["nsp"] = F.cross_entropy(out[self.nsp].float(), b["nsp_labels"], reduction="sum")
        return terms
