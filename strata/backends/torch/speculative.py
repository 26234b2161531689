"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023): a small draft
model proposes k tokens one at a time, the target model scores all of them in
one forward, and the longest prefix the target agrees with is kept, plus one
token of the target's own.  Greedy, the output is the target's greedy decoding;
sampled, each accepted token passes the rejection rule

    accept x ~ q with probability min(1, p(x) / q(x)), else draw from norm(max(0, p - q))

so the output is distributed as the target's own sampling (p, q: the target's and
draft's distributions after temperature and top_k).  k adapts as HF's assisted
generation does: +2 after a round with every draft token accepted, -1 otherwise.

Both models are generated strata models (their `new_cache(max_len)`: the caches
are static, and `crop` drops what the target rejected).  Not copied into
generated files: it takes two models.

    >>> ids, stats = speculative_generate(teacher, student, prompt, 64)   # doctest: +SKIP
    >>> stats.acceptance                                                  # doctest: +SKIP
    0.81
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["SpeculativeStats", "probabilities", "speculative_generate", "verify"]


@dataclass
class SpeculativeStats:
    """What one speculative decoding did: draft tokens proposed and accepted, and
    the target's forwards (each verifies a round's draft, or picks a token alone)."""

    proposed: int = 0
    accepted: int = 0
    rounds: int = 0

    @property
    def acceptance(self) -> float:
        """Accepted / proposed draft tokens (0 when none were proposed)."""
        return self.accepted / self.proposed if self.proposed else 0.0


def probabilities(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """softmax(logits / temperature) over the top_k most likely (..., vocab): what the
    sampler draws from (float32)."""
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[..., [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return F.softmax(logits, dim=-1)


def verify(draft_tokens: torch.Tensor, p: torch.Tensor, q: torch.Tensor | None,
           generator: torch.Generator | None = None) -> tuple[int, int]:
    """(how many of the k draft tokens to keep, the token that follows them).

    draft_tokens (k,); p (k + 1, vocab): the target's distributions at each draft
    position and one past; q (k, vocab): the draft's, or None for greedy (keep while
    the draft token is the target's argmax; then the target's argmax)."""
    k = draft_tokens.shape[0]
    if q is None:
        best = p.argmax(dim=-1)  # (k + 1,)
        agree = (best[:k] == draft_tokens).long()
        n = int(agree.cumprod(0).sum())
        return n, int(best[n])
    idx = torch.arange(k, device=p.device)
    ratio = p[idx, draft_tokens] / q[idx, draft_tokens]  # q > 0 where the draft sampled
    u = torch.rand(k, generator=generator, device=p.device)
    ok = (u < ratio).long()  # u < min(1, ratio)
    n = int(ok.cumprod(0).sum())
    if n == k:  # every draft token kept: the next one from the target alone
        return n, int(torch.multinomial(p[k], 1, generator=generator))
    residual = (p[n] - q[n]).clamp(min=0)
    total = residual.sum()
    # p == q at this position (rejection then has probability 0; guard rounding)
    dist = residual / total if total > 0 else p[n]
    return n, int(torch.multinomial(dist, 1, generator=generator))


def _logits(model, tokens: torch.Tensor, cache, compile: bool = False, src: tuple = ()) -> torch.Tensor:
    """(T, vocab) for tokens (1, T) read after the cache.  compile=True runs one-token
    reads through the model's compiled step (the one `model.generate(compile=True)`
    makes and keeps under the same key, so the two share one compilation); reads of
    several tokens stay eager: a generated attention chooses SDPA's is_causal from T,
    which a graph with symbolic T cannot pass on as a bool.  src: () or (an encoder-
    decoder's source,), encoded at the first read and kept in the cache."""
    if compile and tokens.shape[-1] == 1:
        if "compiled_step" not in model.__dict__:  # not a submodule: not in the model's state
            model.__dict__["compiled_step"] = torch.compile(model, fullgraph=True, dynamic=True)
        model = model.__dict__["compiled_step"]
    return model(*src, tokens, cache=cache)[0]


@torch.no_grad()
def speculative_generate(target, draft, ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                         top_k: int | None = None, k: int = 4, max_k: int = 8, adaptive: bool = True,
                         generator: torch.Generator | None = None, compile: bool = False,
                         src: torch.Tensor | None = None) -> tuple[torch.Tensor, SpeculativeStats]:
    """ids (1, T) followed by max_new_tokens tokens of the target's, drafted by `draft`;
    returns (ids, stats).  k draft tokens a round (adapting within 1 .. max_k unless
    adaptive=False).  The two must share a vocabulary (the same tokenizer).
    compile=True runs the one-token steps compiled (torch.compile, fullgraph): the
    draft's k a round, and the target's when it reads one token alone.  For two
    encoder-decoders, `src` (1, S) is the source both read and ids the target's
    start (its [BOS])."""
    if ids.dim() != 2 or ids.shape[0] != 1:
        raise ValueError(f"speculative decoding takes one sequence (1, T), not {tuple(ids.shape)}")
    if ids.shape[1] == 0:
        raise ValueError("speculative decoding needs a prompt of at least one token")
    if not 1 <= k <= max_k:
        raise ValueError(f"k should be within 1 .. max_k ({max_k}), not {k}")
    dv, tv = (getattr(getattr(m, "config", None), "vocab", None) for m in (draft, target))
    if dv is not None and tv is not None and dv != tv:  # before any compute is spent
        raise ValueError(f"the draft's vocabulary ({dv:,}) is not the target's ({tv:,}): speculative "
                         "decoding needs the same tokenizer")
    greedy = temperature == 0
    size = ids.shape[1] + max_new_tokens
    t_cache, d_cache = target.new_cache(size), draft.new_cache(size)
    # Both caches hold all tokens but the last; each round feeds the target that last
    # token and the draft's k, so it scores the k drafts and one more.
    seq = ids[0].tolist()
    first = () if src is None else (src,)
    if len(seq) > 1:
        target(*first, ids[:, :-1], cache=t_cache)
    stats = SpeculativeStats()
    while len(seq) - ids.shape[1] < max_new_tokens:
        left = max_new_tokens - (len(seq) - ids.shape[1])
        n_draft = min(k, left - 1)  # the round's own token always comes on top
        drafts, qs = [], []
        if n_draft > 0:
            feed = seq[d_cache.end:]  # what the draft has not read yet (the prompt, then 1 or 2 tokens)
            logits = _logits(draft, torch.tensor([feed], device=ids.device), d_cache, compile, first)[-1:]
            for j in range(n_draft):
                if greedy:
                    tok = logits.argmax(dim=-1)
                else:
                    q = probabilities(logits, temperature, top_k)  # (1, vocab)
                    tok = torch.multinomial(q, 1, generator=generator)[0]
                    qs.append(q[0])
                drafts.append(int(tok))
                if j + 1 < n_draft:
                    logits = _logits(draft, tok[None], d_cache, compile, first)
        fed = torch.tensor([[seq[-1]] + drafts], device=ids.device)
        t_logits = _logits(target, fed, t_cache, compile, first)  # (n_draft + 1, vocab)
        if n_draft and t_logits.shape[-1] != logits.shape[-1]:
            raise ValueError(f"the draft's vocabulary ({logits.shape[-1]:,}) is not the target's "
                             f"({t_logits.shape[-1]:,}): speculative decoding needs the same tokenizer")
        p = t_logits if greedy else probabilities(t_logits, temperature, top_k)
        kept, nxt = verify(torch.tensor(drafts, dtype=torch.long, device=ids.device), p,
                           None if greedy else torch.stack(qs) if qs else p[:0], generator)
        seq += drafts[:kept] + [nxt]
        stats.rounds += 1
        stats.proposed += n_draft
        stats.accepted += kept
        # keep what both have read of the accepted tokens (all but the newest)
        t_cache.crop(len(seq) - 1)
        d_cache.crop(min(d_cache.end, len(seq) - 1))
        if adaptive and n_draft:
            k = min(k + 2, max_k) if kept == n_draft else max(k - 1, 1)
    return torch.tensor([seq[:ids.shape[1] + max_new_tokens]], device=ids.device), stats

