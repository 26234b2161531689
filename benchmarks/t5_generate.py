"""Greedy generation with T5 small (60.5M parameters, random weights) on CPU:
strata's cached decoding (the encoder and cross-attention keys/values computed
once) against its uncached decoding and Hugging Face's `generate`, on the same
weights (an `import-hf` of the HF model), side by side.

    python benchmarks/t5_generate.py [--batch 1] [--src 64] [--new 32] [--threads 2]

Prints median times and the ratios cached / uncached and strata / HF (target:
<= 1.0 for both); checks first that the three give the same tokens.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _smoke
import torch
from _timing import interleaved

import strata.api
from strata.interop import import_hf

# --smoke: T5 small's vocabulary at toy width and depth (T5Config keywords)
TINY = {"d_model": 32, "d_ff": 64, "d_kv": 16, "num_heads": 2, "num_layers": 1}


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--src", type=int, default=64)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help=_smoke.HELP)
    return ap


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    hf = T5ForConditionalGeneration(T5Config(decoder_start_token_id=0, attn_implementation="sdpa", **(TINY if args.smoke else {}))).eval()
    hf.generation_config.eos_token_id = None  # always max_new_tokens
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        arch, weights = import_hf(d, os.path.join(d, "out"))
        ours = strata.api.compile(arch, weights=weights).eval()
    src = torch.randint(2, 32128, (args.batch, args.src))
    start = torch.zeros(args.batch, 1, dtype=torch.long)

    @torch.no_grad()
    def uncached():
        ids = start
        for _ in range(args.new):
            ids = torch.cat([ids, ours(src, ids)[:, -1:].argmax(-1)], dim=1)
        return ids

    runs = {"strata cached": lambda: ours.generate(src, start, args.new), "strata uncached": uncached,
            "hf generate": lambda: hf.generate(src, max_new_tokens=args.new, do_sample=False, pad_token_id=0)}
    outs = {k: f() for k, f in runs.items()}
    assert all(torch.equal(outs["strata cached"], o) for o in outs.values()), "the tokens differ"
    t = interleaved(runs, reps=args.reps, inner=1, warmup=1)
    print(f"T5 small greedy generation, B={args.batch}, source {args.src}, {args.new} new tokens, "
          f"{args.threads} threads")
    for k, v in t.items():
        print(f"  {k:16s} {v * 1e3:8.1f} ms")
    print(f"  ratio cached / uncached: {t['strata cached'] / t['strata uncached']:.3f}")
    print(f"  ratio strata cached / hf: {t['strata cached'] / t['hf generate']:.3f}")


if __name__ == "__main__":
    main()
