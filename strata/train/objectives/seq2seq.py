"""Sequence to sequence: an encoder-decoder (T5, the original Transformer).

    head        lm_head on the decoder of a model whose stacks wire memory (cross-attention);
                the decoder's self-attention causal
    tokens      [PAD] [UNK] [BOS] [EOS]
    data        JSON Lines of {"source", "target"}, or the built-in task: reverse the
                words of a line of the built-in corpus (it needs the encoder and
                cross-attention that finds the right source position)
    batches     src = `source [EOS]`, tgt = `[BOS] target`, labels = `target [EOS]`, padded
    loss        "lm": cross-entropy over the target tokens; perplexity, token accuracy
    generates   the model's cached `generate(src, tgt, n)`, cut at the first [EOS]; drafts
                and verifies speculative decoding (two encoder-decoders)

    >>> r = Seq2Seq().builtin_examples()[0]
    >>> r["target"].split() == r["source"].split()[::-1]
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from strata.backends.torch.speculative import speculative_generate
from strata.train.batches import IGNORE, ExampleBatches
from strata.train.generate import pick
from strata.train.objectives.objective import ExampleObjective, located, noncausal
from strata.train.tasks import corpus_lines

__all__ = ["Seq2Seq", "Seq2SeqBatches"]


class Seq2SeqBatches(ExampleBatches):
    def __init__(self, ex, context: int, batch: int, seed: int, eval_steps: int, tok, accumulate: int = 1):
        super().__init__(ex, context, batch, seed, eval_steps, accumulate)
        self.pad_id, self.bos, self.eos = tok.special("[PAD]"), tok.special("[BOS]"), tok.special("[EOS]")

    def make(self, idx: np.ndarray) -> dict:
        ex = self.ex
        src = [np.concatenate([ex.get("source", i)[:self.T - 1], [self.eos]]) for i in idx]
        tgt = [ex.get("target", i)[:self.T - 1] for i in idx]
        src = self.pad(src, self.pad_id)
        return {"src": src, "attention_mask": (src != self.pad_id).astype(np.int64),
                "tgt": self.pad([np.concatenate([[self.bos], t]) for t in tgt], self.pad_id),
                "labels": self.pad([np.concatenate([t, [self.eos]]) for t in tgt], IGNORE)}


@torch.no_grad()
def generate_target(model, src: torch.Tensor, n: int, temperature: float, top_k: int | None,
                    bos: int, eos: int, ctx: int | None, compile: bool = False, draft=None, k: int = 4,
                    stats=None, stop_drafting: bool | None = None, draft_ctx: int | None = None) -> list[int]:
    """The target for one source, up to its first [EOS]: the model's own cached
    `generate(src, tgt, n)` (speculative with a `draft`: each model encodes the source
    once, the draft proposes the target), else step by step.  ctx: the model's
    positions (the target reads at most ctx - 1 new tokens after [BOS]); draft_ctx: the
    draft's, which reads the source cut to them and drafts while the target fits them
    (the model goes on alone): a smaller draft changes the speed, never the target."""
    n = n if ctx is None else min(n, ctx - 1)
    tgt = torch.tensor([[bos]], dtype=torch.long)
    drafted = n if draft_ctx is None else max(min(n, draft_ctx - 1), 0)
    if draft is not None and drafted:
        tgt, spec = speculative_generate(model, draft, tgt, drafted, temperature, top_k, k=k, compile=compile,
                                         src=src, draft_src=_cut(src, draft_ctx), stop_drafting=stop_drafting)
        n = 0 if eos in tgt[0, 1:].tolist() else n - drafted
        if stats is not None:
            stats.proposed, stats.accepted = spec.proposed, spec.accepted
            stats.stopped_drafting = spec.stopped_drafting
    if n and hasattr(model, "generate"):
        tgt = model.generate(src, tgt, n, temperature=temperature, top_k=top_k, compile=compile)
    else:
        for _ in range(n):
            tgt = torch.cat([tgt, pick(model(src, tgt)[:, -1, :], temperature, top_k)], dim=1)
    out = tgt[0, 1:].tolist()
    return out[:out.index(eos)] if eos in out else out


def _cut(src: torch.Tensor, ctx: int | None) -> torch.Tensor:
    """A source (1, S) ending in [EOS], as a model of ctx positions reads it: its first
    ctx - 1 tokens and the [EOS] (as `Seq2Seq.prompt_ids` cuts a prompt)."""
    return src if ctx is None or src.shape[1] <= ctx else torch.cat([src[:, :max(ctx - 1, 0)], src[:, -1:]], dim=1)


@dataclass(frozen=True)
class Seq2Seq(ExampleObjective):
    name = "seq2seq"
    head = "lm_head"
    hint = "lm_head on a decoder that reads an encoder's memory (seq2seq)"
    specials = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
    generates = True
    drafts = True
    fields = ("source", "target")
    builtin_task = "built-in task: reverse the words of a line of the built-in corpus"

    @classmethod
    def detect(cls, g, heads):
        if not (len(g.graph.stacks) > 1 and any(s["memory"] for s in g.graph.stacks)):
            return None
        return next((cls(output=n) for n, (kind, _, _) in heads.items() if kind == "lm_head"), None)

    def check(self, g) -> None:
        if bad := noncausal(g, g.graph.stacks[-1]["name"]):
            raise located(g, bad, f"{self.name}: the decoder's self-attention at {bad} is not causal",
                          "give it causal=true")

    def builtin_examples(self) -> list[dict]:
        return [{"source": s, "target": " ".join(s.split()[::-1])} for s in corpus_lines()]

    def batches(self, ex, context, batch, seed, eval_steps, tok, accumulate=1):
        return Seq2SeqBatches(ex, context, batch, seed, eval_steps, tok, accumulate)

    def forward(self, model, b, kwargs):
        kw = {"return_dict": True} if self.wants_dict() else {}
        if "attention_mask" in b and "attention_mask" in kwargs:
            kw["attention_mask"] = b["attention_mask"]  # the source's padding
        out = model(b["src"], b["tgt"], **kw)
        return out if isinstance(out, dict) else {"output": out}

    def prompt_ids(self, ids, tok, ctx):
        # the source: the prompt (cut to ctx - 1) and [EOS]
        return _cut(torch.tensor([[*ids, tok.special("[EOS]")]], dtype=torch.long), ctx)

    def warm_up(self, model, tok, x, ctx, draft=None, k=4):
        # on the sources the generation reads (x (1, S), S >= 2; the draft's cut to its
        # positions): a one-token source is a size torch.compile specializes, so the real
        # ones compiled every read again while the clock ran
        start = torch.tensor([[tok.special("[BOS]")]])
        if draft is not None:  # both models' one-token steps (within the positions both have)
            speculative_generate(model, draft, start, min(2 * k + 2, (ctx or 2 * k + 3) - 1), k=k, compile=True,
                                 src=x, draft_src=_cut(x, ctx))
        else:
            model.generate(x, start, 3, compile=True)

    def continue_ids(self, model, tok, x, n, temperature, top_k, ctx, compile=False, draft=None, k=4,
                     stats=None, stop_drafting=None, draft_ctx=None):
        out = generate_target(model, x, n, temperature, top_k, tok.special("[BOS]"), tok.special("[EOS]"),
                              ctx, compile, draft, k, stats, stop_drafting, draft_ctx)
        return out, out
