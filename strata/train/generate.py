"""Text generation from a trained run: the model's own KV-cached `generate` for
decoder-only models (greedy at temperature 0, else sampled from the top_k),
continued by re-reading the last ctx tokens once the prompt and the new tokens
outgrow the model's positions (as nanoGPT does); for encoder-decoder models
their cached `generate(src, tgt, n)`, cut at the first [EOS].

    >>> ids = generate_ids(model, prompt_ids, 50, temperature=0.8, top_k=40)   # doctest: +SKIP
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from strata.errors import UsageError

__all__ = ["check_sampling", "generate_ids", "generate_text", "pick", "MAX_SEED"]

MAX_SEED = 2 ** 63 - 1  # what torch.manual_seed takes


def check_sampling(tokens: int, temperature: float, top_k: int | None, seed: int | None) -> None:
    """The flags of `strata generate`, checked before anything is loaded."""
    if tokens < 0:
        raise UsageError("--tokens should be 0 or more")
    if not math.isfinite(temperature) or temperature < 0:
        raise UsageError(f"--temperature should be a finite number, 0 (greedy) or more; got {temperature}")
    if top_k is not None and top_k < 1:
        raise UsageError("--top-k should be at least 1")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed should be from 0 to 2**63 - 1 ({MAX_SEED:,})")


def pick(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """The next token for each row of logits (B, vocab) -> (B, 1), as the
    generated model's `generate` picks it."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)


@torch.no_grad()
def generate_ids(model, ids: torch.Tensor, n: int, temperature: float = 0.0,
                 top_k: int | None = None, ctx: int | None = None, cache: bool = True) -> torch.Tensor:
    """ids (B, T) followed by n new tokens.  cache=False recomputes every step
    (the reference the cached path is tested against)."""
    first = n if ctx is None else max(min(n, ctx - ids.shape[1]), 0)
    if cache and first and hasattr(model, "generate"):
        ids = model.generate(ids, first, temperature=temperature, top_k=top_k)
        n -= first
    for _ in range(n):
        window = ids if ctx is None else ids[:, -ctx:]
        ids = torch.cat([ids, pick(model(window)[:, -1, :], temperature, top_k)], dim=1)
    return ids


@torch.no_grad()
def _seq2seq(model, src: torch.Tensor, n: int, temperature: float, top_k: int | None,
             bos: int, eos: int, ctx: int | None) -> list[int]:
    """The target for one source, up to its first [EOS]: the model's own cached
    `generate(src, tgt, n)`, else step by step."""
    n = n if ctx is None else min(n, ctx - 1)
    tgt = torch.tensor([[bos]], dtype=torch.long)
    if hasattr(model, "generate"):
        out = model.generate(src, tgt, n, temperature=temperature, top_k=top_k)[0, 1:].tolist()
    else:
        for _ in range(n):
            tgt = torch.cat([tgt, pick(model(src, tgt)[:, -1, :], temperature, top_k)], dim=1)
        out = tgt[0, 1:].tolist()
    return out[:out.index(eos)] if eos in out else out


def generate_text(run, prompt: str, tokens: int, temperature: float, top_k: int | None,
                  seed: int | None) -> str:
    from strata.train.heads import model_limits

    obj = run.objective
    if obj.name not in ("causal_lm", "seq2seq"):
        raise UsageError(f"{run.path}: a {obj.name} model does not generate text; "
                         f"`strata eval {run.path}` measures it")
    check_sampling(tokens, temperature, top_k, seed)
    tok, model = run.tokenizer, run.model
    _, ctx = model_limits(model.strata_graph)
    if seed is not None:
        torch.manual_seed(seed)
    ids = tok.encode(prompt)
    if obj.name == "seq2seq":
        src = torch.tensor([[*ids[: (ctx or len(ids) + 1) - 1], tok.special("[EOS]")]], dtype=torch.long)
        out = _seq2seq(model, src, tokens, temperature, top_k, tok.special("[BOS]"),
                       tok.special("[EOS]"), ctx)
        return tok.decode(out)
    if len(ids) == 0:
        raise UsageError("the prompt is empty after tokenizing; give at least one character")
    x = torch.tensor(ids, dtype=torch.long)[None]
    if ctx is not None and x.shape[1] > ctx:
        x = x[:, -ctx:]  # the model reads at most ctx tokens
    return tok.decode(generate_ids(model, x, tokens, temperature, top_k, ctx)[0].tolist())
