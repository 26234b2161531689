"""strata/backends/torch/speculative.py: greedy speculative decoding gives the target's
greedy tokens whatever the draft proposes (k = 1..8, every draft rejected, every one
accepted); sampled, the rejection rule keeps the target's distribution (chi-square
over many draws on a toy vocabulary); a draft with another vocabulary is refused."""

from __future__ import annotations

import time

import pytest

from tests.optional import require

torch = require("torch")

import strata.api as api
from strata.backends.torch.runtime import KVCache
from strata.backends.torch.speculative import RoundCosts, speculative_generate, verify

SPEC = """
model tiny {{
  vocab = {vocab}
  d = 16
  block layer {{
    residual {{ layernorm; attention(2, causal=true) }}
    residual {{ layernorm; mlp(4 * d) }}
  }}
  stack decoder(tokens) {{
    embedding(vocab, d) as wte
    position(learned, 64) as wpe
    repeat({depth}) layer as h
    layernorm as ln_f
    lm_head(vocab)
  }}
}}
"""


def tiny(seed: int, depth: int = 2, vocab: int = 23):
    torch.manual_seed(seed)
    model = api.compile(SPEC.format(vocab=vocab, depth=depth)).eval()
    with torch.no_grad():  # sharper than N(0, 0.02): greedy tokens that vary
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.8)
    return model


class Scripted(torch.nn.Module):
    """A draft that proposes, at every position, `table[position + 1] + shift` (mod vocab):
    shift 0 with the target's own tokens as table = every draft accepted; shift 1 = none."""

    def __init__(self, table: list[int], vocab: int, shift: int, pause: float = 0.0):
        super().__init__()
        self.table, self.vocab, self.shift, self.pause = table, vocab, shift, pause  # pause: seconds a step

    def new_cache(self, max_len=None):
        return KVCache(max_len)

    def forward(self, tokens, cache=None, logits_to_keep=0):  # as a strata model's: 0 = every position
        start, T = cache.start(), tokens.shape[1]
        if self.pause:  # a draft step that costs something (a real draft does); sleep(0) would yield the CPU
            time.sleep(self.pause)
        cache.update(torch.zeros(1, 1, T, 1), torch.zeros(1, 1, T, 1))  # only its length counts
        nxt = [(self.table[min(start + j + 1, len(self.table) - 1)] + self.shift) % self.vocab for j in range(T)]
        out = torch.nn.functional.one_hot(torch.tensor([nxt]), self.vocab).float() * 10  # (1, T, vocab)
        return out[:, -logits_to_keep:]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Hundreds of tiny forwards: one thread (two wait on each other on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pair():
    return tiny(0, depth=2), tiny(1, depth=1)


@pytest.mark.parametrize("k", range(1, 9))
def test_greedy_equals_the_targets_greedy(pair, k):
    target, draft = pair
    prompt = torch.randint(0, 23, (1, 4), generator=torch.Generator().manual_seed(k))
    want = target.generate(prompt, 20)
    assert len(set(want[0, 4:].tolist())) >= 2  # not one token over and over
    for adaptive in (True, False):
        got, stats = speculative_generate(target, draft, prompt, 20, k=k, adaptive=adaptive)
        assert torch.equal(got, want) and not got.is_inference(), (k, adaptive)
        assert stats.accepted <= stats.proposed and stats.rounds >= 20 / (8 + 1)
    table = want[0].tolist()
    for shift, rate in ((0, 1.0), (1, 0.0)):  # every draft token accepted; every one rejected
        got, stats = speculative_generate(target, Scripted(table, 23, shift), prompt, 20, k=k, adaptive=False)
        assert torch.equal(got, want) and stats.acceptance == rate, (k, shift, stats)
        if shift == 0:  # k drafts and the target's own token a round
            assert stats.rounds == -(-20 // (k + 1))
        else:
            assert stats.rounds == 20 and stats.proposed == sum(min(k, left - 1) for left in range(1, 21))


def test_growing_caches_and_a_one_token_prompt(pair):
    target, draft = pair
    prompt = torch.tensor([[3]])
    want = target.generate(prompt, 12, static=False)
    assert torch.equal(want, target.generate(prompt, 12))
    got, _ = speculative_generate(target, draft, prompt, 12, k=3)
    assert torch.equal(got, want)
    assert torch.equal(speculative_generate(target, draft, prompt, 0)[0], prompt)


def test_a_tiny_temperature_samples_the_targets_greedy_tokens(pair):
    target, draft = pair
    prompt = torch.tensor([[3, 5]])
    got, _ = speculative_generate(target, draft, prompt, 12, temperature=1e-44, k=3)
    assert torch.equal(got, target.generate(prompt, 12))


def test_arguments_it_cannot_use_are_refused(pair):
    """max_new_tokens=-1 returned the prompt less its last token; top_k=0 raised an IndexError."""
    target, draft = pair
    for n, kw in ((-1, {}), (3, {"temperature": 1.0, "top_k": 0}), (3, {"temperature": -0.5})):
        with pytest.raises(ValueError, match="max_new_tokens >= 0"):
            speculative_generate(target, draft, torch.tensor([[3, 5]]), n, **kw)


def test_a_poor_draft_stops_drafting_and_a_good_one_does_not(pair):
    """Adaptive k falls back to the target alone once the measured acceptance says no
    k pays (every draft rejected, each step 5 ms: after the 4 rejections it needs as evidence), and
    keeps drafting when every draft token is accepted; the output is the target's."""
    target, _ = pair
    prompt = torch.tensor([[1, 2, 3]])
    want = target.generate(prompt, 40)
    table = want[0].tolist()
    got, stats = speculative_generate(target, Scripted(table, 23, 1, pause=0.005), prompt, 40, k=4)
    assert torch.equal(got, want)
    assert stats.accepted == 0 and stats.stopped_drafting is not None and stats.proposed <= 4 + 3 + 2 + 1 + 1
    assert stats.rounds == 40  # one token a round, drafted or not
    got, stats = speculative_generate(target, Scripted(table, 23, 0), prompt, 40, k=4)
    assert torch.equal(got, want) and stats.stopped_drafting is None and stats.acceptance == 1.0


class EveryOther(Scripted):
    """A draft right at even positions only (about half its tokens accepted)."""

    def forward(self, tokens, cache=None, logits_to_keep=0):
        start = cache.end
        out = super().forward(tokens, cache, logits_to_keep)  # (1, T, vocab): the target's tokens
        for j in range(out.shape[1]):
            if (start + tokens.shape[1] - out.shape[1] + j) % 2:
                out[0, j] = out[0, j].roll(1)
        return out


def test_a_costly_half_right_draft_is_not_given_more_tokens_before_it_is_timed(pair):
    """The first drafting round's steps were not timed (its first read also takes in the
    prompt), so the second round counted the draft as free and drafted max_k = 8
    tokens, whatever a step cost: a poor draft's share of a short output.  The first
    round's steps after that read are timed: a draft step 50 ms against the target's
    few, right half the time, gets k = 1 and stops within a few rounds."""
    target, _ = pair
    prompt = torch.tensor([[1, 2, 3]])
    want = target.generate(prompt, 30)
    got, stats = speculative_generate(target, EveryOther(want[0].tolist(), 23, 0, pause=0.05), prompt, 30, k=4)
    assert torch.equal(got, want)
    assert stats.stopped_drafting is not None and 0 < stats.accepted and stats.proposed <= 4 + 1 + 1 + 1 + 1, stats


def test_round_costs_predict_the_speedup():
    """(1 - a^(k+1)) / (1 - a) tokens for a verify forward and k draft steps, against a
    plain round's time a token (the fastest rounds: one slow round does not decide)."""
    costs = RoundCosts(plain=[1.0, 9.0, 1.0], draft_step=[0.1, 0.1, 5.0], verify=[1.0, 1.0, 8.0], kept=8, rejected=2)
    a = 0.8  # 8 kept, 2 rounds ended by a rejection
    assert costs.acceptance() == pytest.approx(a)
    assert costs.speedup(3) == pytest.approx((1 - a ** 4) / (1 - a) / (1 + 3 * 0.1))
    assert costs.worth_drafting(8)
    costly = RoundCosts(plain=[1.0], draft_step=[0.6], verify=[1.0, 1.0], kept=4, rejected=6)
    assert max(costly.speedup(k) for k in range(1, 9)) < 1 and not costly.worth_drafting(8)
    assert RoundCosts(plain=[1.0], verify=[1.0], kept=0, rejected=3).worth_drafting(8)  # too little evidence
    assert RoundCosts(verify=[1.0, 1.0], kept=0, rejected=9).worth_drafting(8)  # no plain round timed yet
    assert RoundCosts(plain=[1.0], verify=[20.0], kept=4, rejected=0).worth_drafting(8)  # one drafting round
    assert costs.best_k(8) == max(range(1, 9), key=costs.speedup)
    # plain rounds timed on a busy moment (3 s) and the verifies since on a quiet one: a draft
    # never right does not pay whatever the plain rounds' minimum says (it was predicted 2.7x)
    never = RoundCosts(plain=[3.0, 3.5], draft_step=[0.1], verify=[1.0, 1.0], kept=0, rejected=5)
    assert never.speedup(1) == pytest.approx(1 / 1.1) and not never.worth_drafting(8)
    assert RoundCosts(plain=[1.0], verify=[1.0], kept=0, rejected=1).best_k(8) == 1  # nothing accepted: k = 1
    assert RoundCosts(plain=[1.0], draft_step=[0.01], verify=[1.0], kept=20, rejected=0).best_k(8) == 8


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


# chi-square critical value, 4 degrees of freedom, p = 0.001: a correct sampler fails 1 time in 1000
CRITICAL_4 = 18.47


def test_the_rejection_rule_keeps_the_targets_distribution():
    """One round with k = 3 on a 5-token vocabulary: the first token out (a kept draft
    token, or one from the residual max(0, p - q)) is distributed as p."""
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]] * 4)   # (k + 1, vocab): the target
    q = torch.tensor([[0.1, 0.1, 0.2, 0.3, 0.3]] * 3)     # (k, vocab): a poor draft
    counts = torch.zeros(5)
    n = 10000
    for _ in range(n):
        drafts = torch.multinomial(q[0], 3, replacement=True, generator=g)
        kept, nxt = verify(drafts, p, q, g)
        counts[int(drafts[0]) if kept > 0 else nxt] += 1
    assert chi_square(counts, p[0]) < CRITICAL_4
    # the draft distribution itself is far off: the test can fail
    assert chi_square(torch.bincount(torch.multinomial(q[0], n, replacement=True, generator=g), minlength=5).float(),
                      p[0]) > 100 * CRITICAL_4


class Unigram(torch.nn.Module):
    """A model whose next-token distribution is softmax(logits) whatever the context."""

    def __init__(self, logits: list[float], pause: float = 0.0):
        super().__init__()
        self.logits, self.pause = torch.tensor(logits), pause  # pause: seconds a step

    def new_cache(self, max_len=None):
        return KVCache(max_len)

    def forward(self, tokens, cache=None, logits_to_keep=0):
        cache.start()
        if self.pause:
            time.sleep(self.pause)
        cache.update(torch.zeros(1, 1, tokens.shape[1], 1), torch.zeros(1, 1, tokens.shape[1], 1))
        return self.logits.expand(1, tokens.shape[1], -1)[:, -logits_to_keep:]


def test_speculative_sampling_draws_from_the_target():
    target, draft = Unigram([2.0, 1.0, 0.5, 0.0, -1.0]), Unigram([-1.0, 0.0, 0.5, 1.0, 2.0])
    g = torch.Generator().manual_seed(1)
    counts = torch.zeros(5)
    for _ in range(300):
        out, _ = speculative_generate(target, draft, torch.tensor([[0]]), 12, temperature=1.0, k=4, generator=g)
        counts += torch.bincount(out[0, 1:], minlength=5)
    assert chi_square(counts, torch.softmax(target.logits, -1)) < CRITICAL_4
    # temperature and top_k shape both distributions: top_k=2 keeps the target's two likeliest
    out, stats = speculative_generate(target, draft, torch.tensor([[0]]), 40, temperature=0.7, top_k=2,
                                      generator=g)
    assert set(out[0, 1:].tolist()) <= {0, 1} and stats.proposed > 0


def test_sampling_stops_a_poor_draft_only_when_asked_and_keeps_the_targets_distribution():
    """Sampled, a poor draft (slow, and far from the target) stops drafting only with
    stop_drafting=True (by default a seed reproduces the text, so no choice is made on
    timings); the tokens are still distributed as the target's."""
    target, poor = Unigram([2.0, 1.0, 0.5, 0.0, -1.0]), Unigram([-1.0, 0.0, 0.5, 1.0, 2.0], pause=0.002)
    g = torch.Generator().manual_seed(2)
    _, stats = speculative_generate(target, poor, torch.tensor([[0]]), 40, temperature=1.0, generator=g)
    assert stats.stopped_drafting is None and stats.proposed > 20
    counts, stopped = torch.zeros(5), 0
    for _ in range(150):
        out, stats = speculative_generate(target, poor, torch.tensor([[0]]), 24, temperature=1.0, generator=g,
                                          stop_drafting=True)
        counts += torch.bincount(out[0, 1:], minlength=5)
        stopped += stats.stopped_drafting is not None
    assert stopped > 100  # each run judges a few draft tokens, then the target samples alone
    assert chi_square(counts, torch.softmax(target.logits, -1)) < CRITICAL_4


def test_a_draft_with_another_vocabulary_is_refused(pair):
    target, _ = pair
    with pytest.raises(ValueError, match=r"draft's vocabulary \(31\) is not the target's \(23\)"):
        speculative_generate(target, tiny(2, depth=1, vocab=31), torch.tensor([[1, 2]]), 5)
    with pytest.raises(ValueError, match="one sequence"):
        speculative_generate(target, target, torch.zeros(2, 3, dtype=torch.long), 5)
