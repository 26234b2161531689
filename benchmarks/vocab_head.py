"""The LM head read transposed while decoding (runtime.VocabLinear) against a plain
nn.Linear head, side by side in one process: GPT-2 small (random weights, imported
from HF's GPT2LMHeadModel), greedy, one 16-token prompt, strata eager with the
static cache, the head switched per call; HF `generate` eager as the yardstick.
Both heads must give the same tokens.

    python benchmarks/vocab_head.py [--threads 2] [--rounds 7] [--new 48 128]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch
from _timing import interleaved

import strata.api
from strata.interop import import_hf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--new", type=int, nargs="+", default=[48, 128])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(attn_implementation="sdpa")).eval()
    hf.generation_config.eos_token_id = None  # always max_new_tokens
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        arch, weights = import_hf(d, os.path.join(d, "out"))
        ours = strata.api.compile(arch, weights=weights).eval()
    heads = [m for m in ours.modules() if type(m).__name__ == "VocabLinear"]
    assert heads, "no VocabLinear head in the compiled model"

    def run(new, plain):
        for m in heads:  # an instance attribute shadows the class's forward: nn.Linear's own
            if plain:
                m.forward = types.MethodType(torch.nn.Linear.forward, m)
        try:
            return ours.generate(prompt, new)
        finally:
            for m in heads:
                m.__dict__.pop("forward", None)

    prompt = torch.randint(0, 50257, (1, 16))
    kw = dict(do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(prompt))
    for new in args.new:
        assert torch.equal(run(new, False), run(new, True)), "the heads give different tokens"
        t = interleaved({"transposed head": lambda: run(new, False), "plain head": lambda: run(new, True),
                         "hf eager": lambda: hf.generate(prompt, max_new_tokens=new, **kw)},
                        reps=args.rounds, inner=1, warmup=1)
        print(f"GPT-2 small greedy, 1x16 prompt, {new} new tokens, {args.threads} threads, median of {args.rounds} rounds")
        for k, v in t.items():
            print(f"  {k:16s} {v * 1e3:8.1f} ms  {new / v:6.1f} tokens/s")
        print(f"  ratio transposed / plain head: {t['transposed head'] / t['plain head']:.3f}")
        print(f"  ratio transposed / hf eager: {t['transposed head'] / t['hf eager']:.3f}   "
              f"plain / hf eager: {t['plain head'] / t['hf eager']:.3f}")


if __name__ == "__main__":
    main()
