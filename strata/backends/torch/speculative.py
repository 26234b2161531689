"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023): a small draft
model proposes k tokens one at a time, the target model scores all of them in
one forward, and the longest prefix the target agrees with is kept, plus one
token of the target's own.  Greedy, the output is the target's greedy decoding;
sampled, each accepted token passes the rejection rule

    accept x ~ q with probability min(1, p(x) / q(x)), else draw from norm(max(0, p - q))

so the output is distributed as the target's own sampling (p, q: the target's and
draft's distributions after temperature and top_k).  Greedy (or sampled with no
seed fixed), k adapts to what the measured step costs and acceptance predict
fastest (`RoundCosts.best_k`), and drafting stops (the target decodes alone) once
they say no k would beat plain decoding (`RoundCosts.worth_drafting`; the first
four rounds are plain, to time the target alone); otherwise k adapts as HF's
assisted generation does (+2 after a round with every draft token accepted, -1
otherwise).

Both models are generated strata models (their `new_cache(max_len)`: the caches
are static, and `crop` drops what the target rejected).  Not copied into
generated files: it takes two models.

In code::

    ids, stats = speculative_generate(teacher, student, prompt, 64)
    stats.acceptance    # 0.81
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from strata.backends.torch.runtime import decode_layout

__all__ = ["RoundCosts", "SpeculativeStats", "probabilities", "speculative_generate", "verify"]


@dataclass
class SpeculativeStats:
    """What one speculative decoding did: draft tokens proposed and accepted, and
    the target's forwards (each verifies a round's draft, or picks a token alone)."""

    proposed: int = 0
    accepted: int = 0
    rounds: int = 0
    stopped_drafting: int | None = None  # the new token at which drafting stopped (a poor draft)

    @property
    def acceptance(self) -> float:
        """Accepted / proposed draft tokens (0 when none were proposed)."""
        return self.accepted / self.proposed if self.proposed else 0.0


@dataclass
class RoundCosts:
    """Seconds of plain rounds (the target alone: a one-token forward and its pick),
    and of drafting rounds' draft steps and verify forward with bookkeeping, with the
    draft's per-token acceptance, measured round by round: what predicts whether
    drafting pays.  Minimums: waiting on a busy machine only adds time, so the
    fastest round is the best estimate of each cost (one preempted round does not decide).
    Under the usual model (Leviathan et al. 2023, section 3) each draft token is
    accepted with probability a until the first rejection, so a round of k drafts
    gives (1 - a^(k+1)) / (1 - a) tokens."""

    plain: list = field(default_factory=list)  # seconds of each plain round
    draft_step: list = field(default_factory=list)  # seconds per draft step, each drafting round
    verify: list = field(default_factory=list)  # seconds of each verify forward and its bookkeeping
    kept: int = 0
    rejected: int = 0  # rounds that ended at a rejected draft token

    def acceptance(self) -> float:
        """The per-token acceptance a: kept / (kept + rejections), the geometric model's estimate."""
        return self.kept / (self.kept + self.rejected) if self.kept + self.rejected else 1.0

    def speedup(self, k: int) -> float:
        """Predicted tokens/s of k drafts a round over the target decoding alone."""
        a = min(self.acceptance(), 0.999)
        verify = min(self.verify)
        # a plain round reads one token, a verify forward 2 .. k + 1 with the same bookkeeping: it
        # costs no more but by load, and the plain rounds are the first few only, so their minimum
        # stays inflated where the verifies' falls round by round (an untrained draft, never right,
        # was predicted to pay and drafted to the end)
        plain = min(min(self.plain), verify)
        round_s = verify + k * (min(self.draft_step) if self.draft_step else 0.0)
        return (1 - a ** (k + 1)) / (1 - a) * plain / round_s

    def best_k(self, max_k: int) -> int:
        """The k in 1 .. max_k predicted fastest (the smallest of equals: a draft not yet
        timed counts as free, and with no draft token accepted every k yields one token)."""
        return max(range(1, max_k + 1), key=lambda k: (self.speedup(k), -k))

    def worth_drafting(self, max_k: int, evidence: int = 4) -> bool:
        """False once `evidence` draft tokens have been judged over two drafting rounds or
        more and no k in 1 .. max_k is predicted faster than the target alone (True while
        less is timed: one slow first verify, on a busy machine, does not decide)."""
        if self.kept + self.rejected < evidence or not self.plain or len(self.verify) < 2:
            return True
        return max(self.speedup(k) for k in range(1, max_k + 1)) > 1.0


def probabilities(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """softmax(logits / temperature) over the top_k most likely (..., vocab): what the
    sampler draws from (float32)."""
    logits = logits.float()
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature  # max 0: a tiny temperature gives -inf, not NaN
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
    """(T, vocab) for tokens (1, T) read after the cache.  compile=True runs every read
    through the model's compiled step (the one `model.generate(compile=True)` makes
    and keeps under the same key, so the two share one compilation): lengths are
    symbolic, so a draft's k one-token steps, the target's verify reads of 2 .. k + 1
    tokens and a first read of the prompt make a few graphs (one per branch the
    attention and mask take on T > 1 and start_pos > 0), not one per length.  src: ()
    or (an encoder-decoder's source,), encoded at the first read and kept in the cache."""
    if compile:
        if "compiled_step" not in model.__dict__:  # not a submodule: not in the model's state
            model.__dict__["compiled_step"] = torch.compile(model, fullgraph=True, dynamic=True)
        model = model.__dict__["compiled_step"]
    return model(*src, tokens, cache=cache)[0]


def _decode_alone(target, last: int, n: int, cache, compile: bool, src: tuple, temperature: float,
                  top_k: int | None, generator: torch.Generator | None, device) -> list[int]:
    """n tokens of the target's after `last` (the cache holds every token before it), one
    step each, picked as a plain round picks them (the same draws when sampling)."""
    tok, out = torch.tensor([[last]], device=device), []
    for _ in range(n):
        logits = _logits(target, tok, cache, compile, src)[-1]  # (vocab,)
        if temperature == 0:
            tok = logits.argmax().view(1, 1)
        else:
            tok = torch.multinomial(probabilities(logits, temperature, top_k), 1, generator=generator).view(1, 1)
        out.append(tok)
    return torch.cat(out).flatten().tolist()


@torch.no_grad()
def speculative_generate(target, draft, ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                         top_k: int | None = None, k: int = 4, max_k: int = 8, adaptive: bool = True,
                         generator: torch.Generator | None = None, compile: bool = False,
                         src: torch.Tensor | None = None, stop_drafting: bool | None = None,
                         draft_src: torch.Tensor | None = None) -> tuple[torch.Tensor, SpeculativeStats]:
    """ids (1, T) followed by max_new_tokens tokens of the target's, drafted by `draft`;
    returns (ids, stats).  k draft tokens a round, adapting within 1 .. max_k unless
    adaptive=False; adaptive and greedy, drafting also stops when it would not pay
    (see RoundCosts; stats.stopped_drafting says at which new token).  The two must share
    a vocabulary (the same tokenizer).  stop_drafting: whether a poor draft may stop
    (None: greedy only).  Sampled, stopping keeps the target's distribution (a round
    either verifies drafts by the rejection rule or samples the target alone), but a
    choice made on timings changes which random draws are made, so a fixed seed would
    no longer give the same text: pass True only when no seed is fixed (as `strata
    generate` without --seed does).  compile=True runs the models' reads compiled
    (torch.compile, fullgraph, symbolic lengths): the draft's steps and the target's
    verify forwards.  For two
    encoder-decoders, `src` (1, S) is the source both read and ids the target's
    start (its [BOS]); `draft_src`, when given, is the draft's own (a draft with fewer
    positions reads the source cut to them: its tokens are only proposals)."""
    if ids.dim() != 2 or ids.shape[0] != 1:
        raise ValueError(f"speculative decoding takes one sequence (1, T), not {tuple(ids.shape)}")
    if ids.shape[1] == 0:
        raise ValueError("speculative decoding needs a prompt of at least one token")
    if not 1 <= k <= max_k:
        raise ValueError(f"k should be within 1 .. max_k ({max_k}), not {k}")
    if max_new_tokens < 0 or temperature < 0 or (top_k is not None and top_k < 1):
        raise ValueError(f"max_new_tokens >= 0, temperature >= 0 and top_k >= 1 or None; got {max_new_tokens}, "
                         f"{temperature}, {top_k}")
    dv, tv = (getattr(getattr(m, "config", None), "vocab", None) for m in (draft, target))
    if dv is not None and tv is not None and dv != tv:  # before any compute is spent
        raise ValueError(f"the draft's vocabulary ({dv:,}) is not the target's ({tv:,}): speculative "
                         "decoding needs the same tokenizer")
    greedy = temperature == 0
    stop_drafting = greedy if stop_drafting is None else stop_drafting
    if ids.device.type == "cpu":
        decode_layout(target)
        decode_layout(draft)
    # the rounds in inference mode (less bookkeeping per op than no_grad); the result is made outside it
    seq, stats = _rounds(target, draft, ids, max_new_tokens, temperature, top_k, k, max_k, adaptive, generator,
                         compile, src, greedy, stop_drafting, src if draft_src is None else draft_src)
    return torch.tensor([seq[:ids.shape[1] + max_new_tokens]], device=ids.device), stats


@torch.inference_mode()
def _rounds(target, draft, ids, max_new_tokens, temperature, top_k, k, max_k, adaptive, generator, compile,
            src, greedy, stop_drafting, draft_src) -> tuple[list[int], SpeculativeStats]:
    """speculative_generate's rounds, its arguments checked: (the token ids, prompt first, stats)."""
    size = ids.shape[1] + max_new_tokens
    t_cache, d_cache = target.new_cache(size), draft.new_cache(size)
    # Both caches hold all tokens but the last; each round feeds the target that last
    # token and the draft's k, so it scores the k drafts and one more.
    seq = ids[0].tolist()
    first = () if src is None else (src,)
    draft_first = () if draft_src is None else (draft_src,)
    if len(seq) > 1:
        target(*first, ids[:, :-1], cache=t_cache, logits_to_keep=1)  # the cache is what is wanted
    stats, costs = SpeculativeStats(), RoundCosts()
    # adaptive: the first four rounds are plain, to time the target alone (the first
    # may also prefill or encode: the next three's times are kept)
    probe = 4 if adaptive else 0
    while len(seq) - ids.shape[1] < max_new_tokens:
        t0 = time.perf_counter()
        left = max_new_tokens - (len(seq) - ids.shape[1])
        if stats.stopped_drafting is not None:  # the target alone from here, without the rounds' bookkeeping
            seq += _decode_alone(target, seq[-1], left, t_cache, compile, first, temperature, top_k, generator,
                                 ids.device)
            stats.rounds += left  # one target forward a token
            break
        n_draft = min(k, left - 1) if stats.rounds >= probe else 0  # the round's own token always comes on top
        drafts, qs = [], []
        if n_draft > 0:
            feed = seq[d_cache.end:]  # what the draft has not read yet (the prompt, then 1 or 2 tokens)
            logits = _logits(draft, torch.tensor([feed], device=ids.device), d_cache, compile, draft_first)[-1:]
            t_read = time.perf_counter()  # the draft's first round: its one-token steps timed from here
            for j in range(n_draft):
                if greedy:
                    tok = logits.argmax(dim=-1)
                else:
                    q = probabilities(logits, temperature, top_k)  # (1, vocab)
                    tok = torch.multinomial(q, 1, generator=generator)[0]
                    qs.append(q[0])
                drafts.append(int(tok))
                if j + 1 < n_draft:
                    logits = _logits(draft, tok[None], d_cache, compile, draft_first)
        t1 = time.perf_counter()
        fed = torch.tensor([[seq[-1]] + drafts], device=ids.device)
        t_logits = _logits(target, fed, t_cache, compile, first)  # (n_draft + 1, vocab)
        if n_draft and t_logits.shape[-1] != logits.shape[-1]:
            raise ValueError(f"the draft's vocabulary ({logits.shape[-1]:,}) is not the target's "
                             f"({t_logits.shape[-1]:,}): speculative decoding needs the same tokenizer")
        if not n_draft:  # the target alone (drafting stopped, or the last token)
            nxt = int(t_logits[-1].argmax() if greedy else torch.multinomial(
                probabilities(t_logits[-1], temperature, top_k), 1, generator=generator))
            kept = 0
        else:
            p = t_logits if greedy else probabilities(t_logits, temperature, top_k)
            kept, nxt = verify(torch.tensor(drafts, dtype=torch.long, device=ids.device), p,
                               None if greedy else torch.stack(qs), generator)
        seq += drafts[:kept] + [nxt]
        stats.rounds += 1
        stats.proposed += n_draft
        stats.accepted += kept
        # keep what both have read of the accepted tokens (all but the newest)
        t_cache.crop(len(seq) - 1)
        if n_draft:
            d_cache.crop(min(d_cache.end, len(seq) - 1))
        if adaptive and not n_draft and stats.rounds > 1:  # the first round may prefill or encode
            costs.plain.append(time.perf_counter() - t0)
        if adaptive and n_draft:
            if stats.proposed > n_draft:  # not the draft's first round: that one also read the prompt / source
                costs.draft_step.append((t1 - t0) / n_draft)
            elif n_draft > 1:  # the first: its steps after that read (an untimed draft counted as free,
                # so the second round drafted max_k tokens whatever the acceptance)
                costs.draft_step.append((t1 - t_read) / (n_draft - 1))
            costs.verify.append(time.perf_counter() - t1)
            costs.kept, costs.rejected = costs.kept + kept, costs.rejected + (kept < n_draft)
            # choices made on timings: by default greedy only (sampled, a seed must give the same
            # text at every run, and they would change which random draws are made)
            if stop_drafting:  # the k the measured costs and acceptance predict fastest
                k = costs.best_k(max_k) if costs.draft_step else k
            else:  # as HF's assisted generation
                k = min(k + 2, max_k) if kept == n_draft else max(k - 1, 1)
            if stop_drafting and not costs.worth_drafting(max_k):  # a poor draft: plain decoding from here on
                k, stats.stopped_drafting = 0, len(seq) - ids.shape[1]
    return seq, stats

