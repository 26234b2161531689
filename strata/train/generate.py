"""Text generation from a trained run: the model's own KV-cached `generate` for
decoder-only models (greedy at temperature 0, else sampled from the top_k),
continued by re-reading the last ctx tokens once the prompt and the new tokens
outgrow the model's positions (as nanoGPT does).  Optionally the one-token step
compiled, or speculative decoding with a draft model
(strata.backends.torch.speculative); `GenerationStats` says how fast it went.
`generate_text` asks the run's objective whether and how it generates
(strata/train/objectives/: `prompt_ids`, `warm_up`, `continue_ids`).

In code::

    ids = generate_ids(model, prompt_ids, 50, temperature=0.8, top_k=40)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from strata.backends.torch.speculative import speculative_generate
from strata.compiler.cost import analyze
from strata.errors import UsageError
from strata.resources import check_fits
from strata.train.limits import model_limits
from strata.train.tokenizer import Unseen, UnseenCharacters

__all__ = ["GenerationStats", "check_sampling", "generate_ids", "generate_text", "pick", "MAX_SEED"]

MAX_SEED = 2 ** 63 - 1  # what torch.manual_seed takes
# Below this a temperature samples as greedy decoding picks (a logit gap of 1e-4 is
# e**-100 apart), and below float32's least number (1.4e-45) it is 0 in the division.
MIN_TEMPERATURE = 1e-6
# Bytes a generated token id takes at the least: int64 in the ids tensor, and a pointer
# in the list of ids that is decoded (a Python int and its characters come on top).
OUTPUT_BYTES = 16


def check_sampling(tokens: int, temperature: float, top_k: int | None, seed: int | None) -> None:
    """The flags of `strata generate`, checked before anything is loaded."""
    if tokens < 0:
        raise UsageError("--tokens should be 0 or more")
    if not math.isfinite(temperature) or temperature < 0:
        raise UsageError(f"--temperature should be a finite number, 0 (greedy) or more; got {temperature}")
    if 0 < temperature < MIN_TEMPERATURE:
        raise UsageError(f"--temperature should be 0 (greedy) or at least {MIN_TEMPERATURE:g}; got {temperature:g}")
    if top_k is not None and top_k < 1:
        raise UsageError("--top-k should be at least 1")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed should be from 0 to 2**63 - 1 ({MAX_SEED:,})")


@dataclass
class GenerationStats:
    """How one generation went: new tokens, seconds (compilation excluded), the
    compilation's seconds, and speculative decoding's draft tokens."""

    tokens: int = 0
    seconds: float = 0.0
    compile_seconds: float | None = None
    proposed: int | None = None
    accepted: int | None = None
    stopped_drafting: int | None = None  # the new token where a poor draft stopped drafting
    # the prompt's characters a tokenizer with [UNK] (seq2seq's) never saw: read as [UNK],
    # which `strata generate` says (a causal LM's char tokenizer refuses them instead)
    unseen: Unseen | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """`48 tokens in 1.20 s, 40.0 tokens/s; ...` (what `strata generate` prints to stderr)."""
        out = f"{self.tokens} tokens in {self.seconds:.2f} s, {self.tokens_per_second:.1f} tokens/s"
        if self.compile_seconds is not None:
            out += f"; compiling the decoding step took {self.compile_seconds:.1f} s (not counted)"
        if self.proposed == 0:  # not "0% (0 of 0)": nothing was drafted to accept
            out += "; no token drafted (too few new tokens: the first rounds time the target alone)"
        elif self.proposed is not None:
            rate = self.accepted / self.proposed
            out += f"; draft acceptance {rate:.0%} ({self.accepted} of {self.proposed} draft tokens)"
        if self.stopped_drafting is not None:
            out += (f"; drafting stopped at new token {self.stopped_drafting} (at this acceptance the draft "
                    "was slower than the target alone)")
        return out


def pick(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """The next token for each row of logits (B, vocab) -> (B, 1), as the
    generated model's `generate` picks it."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature  # max 0: a tiny temperature gives -inf, not NaN
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)


@torch.no_grad()
def generate_ids(model, ids: torch.Tensor, n: int, temperature: float = 0.0,
                 top_k: int | None = None, ctx: int | None = None, cache: bool = True, *,
                 compile: bool = False, draft=None, draft_ctx: int | None = None, k: int = 4,
                 stats: GenerationStats | None = None, stop_drafting: bool | None = None) -> torch.Tensor:
    """ids (B, T) followed by n new tokens; ctx: the model's positions (past them it
    re-reads the last ctx tokens).  cache=False recomputes every step
    (the reference the cached path is tested against); compile=True compiles the
    one-token step; `draft` (a smaller model with the same vocabulary, draft_ctx
    positions) drafts k tokens a round for speculative decoding (B = 1) while the text
    fits both models, which fills `stats`; stop_drafting: whether a poor draft may stop
    drafting (None: greedy only; see speculative_generate)."""
    both = min((c for c in (ctx, draft_ctx) if c is not None), default=None)
    first = n if both is None else max(min(n, both - ids.shape[1]), 0)
    if draft is not None and first:
        ids, spec = speculative_generate(model, draft, ids, first, temperature, top_k, k=k, compile=compile,
                                         stop_drafting=stop_drafting)
        n -= first
        if stats is not None:
            stats.proposed, stats.accepted = spec.proposed, spec.accepted
            stats.stopped_drafting = spec.stopped_drafting
    first = n if ctx is None else max(min(n, ctx - ids.shape[1]), 0)  # the model alone, up to its positions
    if cache and first and hasattr(model, "generate"):
        ids = model.generate(ids, first, temperature=temperature, top_k=top_k, compile=compile)
        n -= first
    if not n:
        return ids
    # the rest one token a step, each reading the last ctx tokens (all without ctx), written
    # into one buffer: not the whole sequence copied at each token (quadratic past the positions)
    out = torch.cat([ids, ids.new_empty(ids.shape[0], n)], dim=1)  # (B, T + n)
    for t in range(ids.shape[1], out.shape[1]):
        window = out[:, (0 if ctx is None else max(t - ctx, 0)):t]
        out[:, t:t + 1] = pick(model(window)[:, -1, :], temperature, top_k)
    return out


def _check_finite(model, where) -> None:
    """Weights holding NaN or infinity (a diverged run) make every next-token
    probability NaN: said in one line before generating, not a sampler's RuntimeError."""
    bad = [k for k, v in model.named_parameters()  # plain float tensors (not a quantized kernel's)
           if type(v.data) is torch.Tensor and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UsageError(f"{where}: {len(bad)} weight tensor(s) hold NaN or infinity ({', '.join(bad[:3])}"
                         f"{', ...' if len(bad) > 3 else ''}); such a model cannot generate (did its training diverge?)")


def _check_memory(models, positions: int, tokens: int, total: int) -> None:
    """Generation preallocates each model's keys and values for every position: a
    model without a position limit asked for 10**8 tokens would allocate them all
    (25 GB for a 2-layer toy); and every model holds the text it writes, past its
    positions too: `total` token ids, at OUTPUT_BYTES each at the least.  Refused
    first when that cannot fit, as strata.compile refuses weights."""
    need = OUTPUT_BYTES * total
    for m in models:
        p = next(m.parameters(), None)
        if p is None or p.device.type != "cpu":
            continue  # another device's memory is its own to refuse
        per_token = analyze(m.strata_graph)["memory"]["kv_cache_bf16_bytes_per_token"] // 2 * p.element_size()
        need += per_token * positions
    check_fits(need, f"--tokens {tokens:,}: the KV cache of {positions:,} positions and {total:,} token ids",
               "generate fewer tokens")


def generate_text(run, prompt: str, tokens: int, temperature: float, top_k: int | None,
                  seed: int | None, *, compile: bool = False, draft: str | None = None,
                  speculate: bool = False, k: int = 4, stats: GenerationStats | None = None,
                  teacher_weights: str | None = None, pair=None) -> str:
    """The run's text after `prompt`; with `draft` (another run) or `speculate` (the
    spec's distill teacher verifies, this run drafts), by speculative decoding.
    `stats`, when given, receives the speed (and the draft's acceptance);
    `teacher_weights` (with speculate): the teacher's, instead of the run's.  pair:
    (run, draft, speculate, teacher_weights) -> (target, draft model), what `Run.generate` passes
    (strata.train.speculate.speculative_pair, a layer above this module)."""
    obj = run.objective
    if not obj.generates:
        raise UsageError(f"{run.path}: a model of the {obj.name} objective does not generate text; "
                         f"`strata eval {run.path}` measures it")
    check_sampling(tokens, temperature, top_k, seed)
    if not 1 <= k <= 8:
        raise UsageError("--k (draft tokens a round, to start with) should be within 1 .. 8")
    stats = GenerationStats() if stats is None else stats
    tok, model, drafter = run.tokenizer, run.model, None
    if draft is not None or speculate or teacher_weights is not None:
        model, drafter = pair(run, draft, speculate, teacher_weights)
    for m, name in ((model, run.path), (drafter, "the draft model")):
        if m is not None:
            _check_finite(m, name)
    own, draft_ctx = (None if m is None else model_limits(m.strata_graph)[1] for m in (model, drafter))
    try:
        ids = tok.encode(prompt)
    except UnseenCharacters as e:
        raise e.within("the prompt", "write the prompt in the characters the model trained on") from None
    stats.unseen = tok.unseen([prompt])
    if len(ids) == 0:  # nothing to continue, and no source to translate (training refuses an empty one)
        raise UsageError("the prompt is empty after tokenizing; give at least one character")
    x = obj.prompt_ids(ids, tok, own)  # as the model reads it (a draft with fewer positions reads less)
    # the static KV cache holds prompt + new positions (up to the model's ctx where its positions end)
    positions = x.shape[-1] + (tokens if own is None else min(tokens, own))
    written = x.shape[-1] + (tokens if own is None or obj.past_positions else min(tokens, own))
    _check_memory([m for m in (model, drafter) if m is not None], positions, tokens, written)
    if compile and hasattr(model, "generate"):  # compile (greedy, a few tokens) before the seed and the clock
        t = time.perf_counter()
        both = min((c for c in (own, draft_ctx) if c is not None), default=None)  # positions both models have
        obj.warm_up(model, tok, x, both, draft=drafter, k=k)
        stats.compile_seconds = time.perf_counter() - t
    if seed is not None:
        torch.manual_seed(seed)
    t = time.perf_counter()
    # a poor draft stops drafting when greedy, or sampled with no seed fixed (a choice made on
    # timings changes which random draws are made: a seed would no longer reproduce the text)
    # the model reads its own positions (`own`); a draft with fewer drafts only while the text fits it
    out, new = obj.continue_ids(model, tok, x, tokens, temperature, top_k, own, compile=compile,
                                draft=drafter, draft_ctx=draft_ctx, k=k, stats=stats,
                                stop_drafting=temperature == 0 or seed is None)
    stats.seconds, stats.tokens = time.perf_counter() - t, len(new)
    return tok.decode(out)
