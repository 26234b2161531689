"""Causal LM: next-token prediction on text (GPT, nanoGPT).

    head        lm_head on a model with one stack (every attention causal)
    tokens      none special: a char-level model's ids are nanoGPT's
    data        text (a file, a folder, the built-in corpus) -> one token stream
    batches     random windows of context + 1 ids (nanoGPT's get_batch); `strata eval`
                reads every non-overlapping window of the validation split once
    loss        "lm": cross-entropy summed over every token; perplexity, token accuracy
    generates   the model's KV-cached `generate`, re-reading the last ctx tokens once
                the text outgrows the positions; drafts and verifies speculative decoding

    >>> import numpy as np
    >>> s = LMWindows(np.arange(1000) % 50, np.arange(200) % 50, context=8, batch=4, seed=0, eval_steps=2)
    >>> b = s.train_batch(step=0, micro=0)
    >>> b["tokens"].shape, bool((b["labels"][:, :-1] == b["tokens"][:, 1:]).all())
    ((4, 8), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from strata.backends.torch.speculative import speculative_generate
from strata.train.batches import EVAL, TRAIN, SequentialWindows, rng
from strata.train.generate import generate_ids
from strata.train.objectives.objective import TextObjective, located, noncausal

__all__ = ["CausalLM", "LMWindows"]


class LMWindows:
    """Random windows of context + 1 ids; the fixed evaluation set is
    `eval_steps` batches of validation windows."""

    def __init__(self, train, val, context: int, batch: int, seed: int, eval_steps: int):
        self.train, self.val, self.T, self.B = train, val, context, batch
        self.seed, self.eval_steps = seed, eval_steps

    def _windows(self, data, offsets) -> dict:
        x = np.asarray(data[offsets[:, None] + np.arange(self.T + 1)], dtype=np.int64)
        return {"tokens": x[:, :-1], "labels": x[:, 1:]}

    def train_batch(self, step: int, micro: int) -> dict:
        off = rng(self.seed, TRAIN, step, micro).integers(0, len(self.train) - self.T, size=self.B)
        return self._windows(self.train, off)

    def eval_count(self) -> int:
        return self.eval_steps

    def eval_batch(self, i: int) -> dict:
        off = rng(EVAL, i).integers(0, len(self.val) - self.T, size=self.B)
        return self._windows(self.val, off)


@dataclass(frozen=True)
class CausalLM(TextObjective):
    name = "causal_lm"
    head = "lm_head"
    hint = "lm_head (causal LM)"
    window_extra = 1      # the window's next token is the last label
    generates = True
    drafts = True
    past_positions = True

    @classmethod
    def detect(cls, g, heads):
        if len(g.graph.stacks) > 1 and any(s["memory"] for s in g.graph.stacks):
            return None  # an encoder-decoder: seq2seq
        return next((cls(output=n) for n, (kind, _, _) in heads.items() if kind == "lm_head"), None)

    def check(self, g) -> None:
        if bad := noncausal(g):
            raise located(g, bad, f"{self.name}: the attention at {bad} is not causal, so the model "
                          "would see the tokens it is asked to predict",
                          "give it causal=true, or train a masked LM with mlm_head")

    def train_sampler(self, data, tok, cfg, context):
        return LMWindows(data.train, data.val, context=context, batch=cfg["batch"], seed=cfg["seed"],
                         eval_steps=cfg["eval_steps"])

    def eval_windows(self, ids, tok, context, batch, max_batches):
        return SequentialWindows(ids, context, batch, max_batches)

    def eval_tokens(self, context, batch, max_batches):
        return None if max_batches is None else max_batches * batch * context + 1

    def prompt_ids(self, ids, tok, ctx):
        return torch.tensor(ids, dtype=torch.long)[None]  # all of it: the text printed starts with it

    def warm_up(self, model, tok, x, ctx, draft=None, k=4):
        if draft is not None:  # both models' one-token steps (within the positions both have)
            speculative_generate(model, draft, x[:, -1:], min(2 * k + 2, (ctx or 2 * k + 3) - 1), k=k, compile=True)
        else:
            model.generate(x[:, max(0, x.shape[1] + 3 - ctx):] if ctx else x, 3, compile=True)

    def continue_ids(self, model, tok, x, n, temperature, top_k, ctx, **options):
        cut = x.shape[1] - ctx if ctx is not None and x.shape[1] > ctx else 0  # the model reads at most ctx
        new = generate_ids(model, x[:, cut:], n, temperature, top_k, ctx, **options)[0, x.shape[1] - cut:].tolist()
        return x[0].tolist() + new, new
