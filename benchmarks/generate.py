"""Generation speed on CPU, side by side in one process.

Part 1, GPT-2 small (random weights; HF's GPT2LMHeadModel and its `import-hf`, so
the same weights), greedy, one 16-token prompt, 48 and 256 new tokens: strata
eager with the static cache, strata with its growing cache, strata with the
compiled one-token step, HF `generate` eager, and HF with a static cache and
torch.compile.  Every contender must give the same tokens as strata eager.

Part 2, speculative decoding: a 12-layer teacher and a 2-layer student trained
(briefly) on the built-in corpus, the student distilled from the teacher; the
teacher's greedy decoding against speculative decoding with the student as draft
(output checked identical).

    python benchmarks/generate.py [--threads 2] [--rounds 3] [--part gpt2|speculative|all]

Prints median times over the rounds (the contenders take turns) and the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch
from _timing import interleaved

import strata.api
from strata.interop import import_hf


def gpt2(args) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(attn_implementation="sdpa")).eval()
    hf.generation_config.eos_token_id = None  # always max_new_tokens
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        arch, weights = import_hf(d, os.path.join(d, "out"))
        ours = strata.api.compile(arch, weights=weights).eval()
    prompt = torch.randint(0, 50257, (1, 16))
    kw = dict(do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(prompt))
    hf_compiled = None
    if not args.no_compile:
        hf_compiled = GPT2LMHeadModel(hf.config).eval()
        hf_compiled.load_state_dict(hf.state_dict())
        hf_compiled.generation_config.eos_token_id = None
        hf_compiled.forward = torch.compile(hf_compiled.forward, fullgraph=True)
    for new in args.new:
        runs = {"strata static": lambda: ours.generate(prompt, new),
                "strata growing": lambda: ours.generate(prompt, new, static=False),
                "hf eager": lambda: hf.generate(prompt, max_new_tokens=new, **kw)}
        if not args.no_compile:
            runs["strata compiled"] = lambda: ours.generate(prompt, new, compile=True)
            runs["hf compiled"] = lambda: hf_compiled.generate(prompt, max_new_tokens=new,
                                                              cache_implementation="static", **kw)
        want = runs["strata static"]()
        for k, f in runs.items():  # the first call of a compiled one compiles: timed apart
            t = time.perf_counter()
            got = f()
            first = time.perf_counter() - t
            assert torch.equal(got, want), f"{k}: the tokens differ"
            if "compiled" in k:
                print(f"  {k}: first call (compiles) {first:.1f} s")
        t = interleaved(runs, reps=args.rounds, inner=1, warmup=1)
        print(f"GPT-2 small greedy, 1x16 prompt, {new} new tokens, {args.threads} threads, "
              f"median of {args.rounds} rounds")
        for k, v in t.items():
            print(f"  {k:16s} {v * 1e3:8.1f} ms  {new / v:6.1f} tokens/s")
        for ours_k, hf_k in (("strata static", "hf eager"), ("strata compiled", "hf eager"),
                             ("strata compiled", "hf compiled"), ("strata growing", "hf eager")):
            if ours_k in t and hf_k in t:
                print(f"  ratio {ours_k} / {hf_k}: {t[ours_k] / t[hf_k]:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new", type=int, nargs="+", default=[48, 256])
    ap.add_argument("--part", choices=["gpt2", "speculative", "all"], default="all")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile contenders")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.part in ("gpt2", "all"):
        gpt2(args)


if __name__ == "__main__":
    main()
