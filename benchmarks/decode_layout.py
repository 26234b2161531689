"""Linear weights stored column-major while decoding on a CPU (runtime.decode_layout)
against nn.Linear's row-major layout, side by side in one process: GPT-2 small
(random weights, imported from HF's GPT2LMHeadModel), greedy, one 16-token
prompt, strata eager with the static cache, two copies of the model, one of them
kept row-major; HF `generate` eager as the yardstick.  Both give the same tokens.

    python benchmarks/decode_layout.py [--threads 2] [--rounds 7] [--new 48 128]
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
    ap.add_argument("--new", type=int, nargs="+", default=[48, 128])
    ap.add_argument("--smoke", action="store_true", help=_smoke.HELP)
    return ap


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    hf, column, row = random_gpt2("", smoke=args.smoke)
    helpers = type(row).generate.__globals__  # the generated file's namespace: its decode_layout

    def row_major(new):
        keep = helpers["decode_layout"]
        helpers["decode_layout"] = lambda model: None
        try:
            return row.generate(prompt, new)
        finally:
            helpers["decode_layout"] = keep

    prompt = torch.randint(0, 50257, (1, 16))
    kw = dict(do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(prompt))
    for new in args.new:
        assert torch.equal(column.generate(prompt, new), row_major(new)), "the layouts give different tokens"
        assert row.decoder.lm_head.weight.is_contiguous() and not column.decoder.lm_head.weight.is_contiguous()
        t = interleaved({"column-major": lambda: column.generate(prompt, new), "row-major": lambda: row_major(new),
                         "hf eager": lambda: hf.generate(prompt, max_new_tokens=new, **kw)},
                        reps=args.rounds, inner=1, warmup=1)
        print(f"GPT-2 small greedy, 1x16 prompt, {new} new tokens, {args.threads} threads, median of {args.rounds} rounds")
        for k, v in t.items():
            print(f"  {k:16s} {v * 1e3:8.1f} ms  {new / v:6.1f} tokens/s")
        print(f"  ratio column-major / row-major: {t['column-major'] / t['row-major']:.3f}")
        print(f"  ratio column-major / hf eager: {t['column-major'] / t['hf eager']:.3f}   "
              f"row-major / hf eager: {t['row-major'] / t['hf eager']:.3f}")


if __name__ == "__main__":
    main()
