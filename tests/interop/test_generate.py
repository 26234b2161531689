"""Generation from imported checkpoints: strata's cached greedy decoding (static
cache and growing cache) gives the tokens of its own uncached decoding and of
Hugging Face's `generate` (greedy), for every family with an LM head, T5 included
(encoder-decoder)."""

from __future__ import annotations

import pytest

from tests.optional import require

from tests.interop.models import MODELS

torch = require("torch")
import strata.api as api

NEW = 10
LM = [n for n, (cls, _) in MODELS.items() if cls.endswith(("ForCausalLM", "LMHeadModel", "ConditionalGeneration"))]


def uncached(model, prompt, n, src=None):
    ids = prompt
    with torch.no_grad():
        for _ in range(n):
            logits = model(ids) if src is None else model(src, ids)
            ids = torch.cat([ids, logits[:, -1:].argmax(-1)], dim=1)
    return ids


# transformers 5.24 sizes T5's generation cache by num_layers, so a decoder deeper than
# the encoder fails in HF's generate: strata's cached decoding is checked against its own.
NO_HF_GENERATE = {"t5_deeper_decoder"}


@pytest.mark.parametrize("name", LM)
def test_greedy_generation_matches_hf(name, imported, monkeypatch):
    arch, weights, hf = imported(name)
    ours = api.compile(arch, weights=weights).eval()
    torch.manual_seed(2)
    # no end-of-sequence token: HF would stop there and pad
    monkeypatch.setattr(hf.generation_config, "eos_token_id", None)
    kw = dict(max_new_tokens=NEW, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        if hf.config.is_encoder_decoder:
            src = torch.randint(2, 100, (2, 9))
            start = torch.full((2, 1), hf.config.decoder_start_token_id)
            got = ours.generate(src, start, NEW)  # the static cache
            assert torch.equal(got, uncached(ours, start, NEW, src=src))
            assert torch.equal(got, ours.generate(src, start, NEW, static=False))
            if name in NO_HF_GENERATE:
                return
            want = hf.generate(src, **kw)
        else:
            prompt = torch.randint(2, 100, (2, 5))
            want = hf.generate(prompt, attention_mask=torch.ones_like(prompt), **kw)
            got = ours.generate(prompt, NEW)  # the static cache
            assert torch.equal(got, uncached(ours, prompt, NEW))
            assert torch.equal(got, ours.generate(prompt, NEW, static=False))
    assert torch.equal(got, want), f"{name}: strata {got.tolist()} vs HF {want.tolist()}"
    assert len(set(got[:, -NEW:].flatten().tolist())) >= 3  # not one token over and over


@pytest.mark.parametrize("name", ["t5", "t5_v1_1"])
def test_padded_t5_matches_hf(name, imported, monkeypatch):
    """A batch with a padded source: logits and greedy tokens as HF's with attention_mask."""
    arch, weights, hf = imported(name)
    ours = api.compile(arch, weights=weights).eval()
    monkeypatch.setattr(hf.generation_config, "eos_token_id", None)
    torch.manual_seed(3)
    src = torch.randint(2, 100, (2, 9))
    mask = torch.ones_like(src)
    src[0, 6:], mask[0, 6:] = 0, 0
    tgt = torch.randint(2, 100, (2, 5))
    start = torch.full((2, 1), hf.config.decoder_start_token_id)
    with torch.no_grad():
        want = hf(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
        torch.testing.assert_close(ours(src, tgt, attention_mask=mask), want, atol=1e-4, rtol=0)
        want = hf.generate(src, attention_mask=mask, max_new_tokens=NEW, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(src, start, NEW, attention_mask=mask), want)
