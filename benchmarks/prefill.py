"""The prompt's read (prefill) with the LM head on its last position only
(`logits_to_keep=1`, what `generate` passes) against the head on every position
(`logits_to_keep=0`, a plain forward), side by side in one process: GPT-2 small
(random weights, imported from HF's GPT2LMHeadModel), one prompt of each length,
a static cache; and HF's own prefill (its forward with `logits_to_keep=1`, as
its `generate` calls it) as the yardstick.  The kept logits are equal.

    python benchmarks/prefill.py [--threads 2] [--rounds 7] [--prompt 16 128 512]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _smoke
import torch
from _gpt2 import random_gpt2
from _timing import interleaved


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--prompt", type=int, nargs="+", default=[16, 128, 512])
    ap.add_argument("--smoke", action="store_true", help=_smoke.HELP)
    return ap


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    hf, ours = random_gpt2(smoke=args.smoke)

    def read(ids, keep):
        return ours(ids, cache=ours.new_cache(ids.shape[1] + 1), logits_to_keep=keep)

    for T in args.prompt:
        ids = torch.randint(0, 50257, (1, T))
        with torch.inference_mode():
            last, every = read(ids, 1), read(ids, 0)
            assert last.shape[1] == 1 and torch.allclose(last[:, -1], every[:, -1], atol=1e-4)
            t = interleaved({"every position": lambda: read(ids, 0), "last only": lambda: read(ids, 1),
                             "hf (last only)": lambda: hf(ids, use_cache=True, logits_to_keep=1)},
                            reps=args.rounds, inner=1, warmup=1)
        print(f"GPT-2 small prefill, 1x{T} prompt, {args.threads} threads, median of {args.rounds} rounds")
        for k, v in t.items():
            print(f"  {k:16s} {v * 1e3:8.1f} ms")
        print(f"  ratio last only / every position: {t['last only'] / t['every position']:.3f}; "
              f"strata last only / hf: {t['last only'] / t['hf (last only)']:.3f}")


if __name__ == "__main__":
    main()
