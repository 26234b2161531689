"""Construction time: `strata.api.compile("specs/gpt2.arch")` (parse, build the
IR, generate and exec the source, allocate and initialise) against
`GPT2LMHeadModel(GPT2Config())`.

    python benchmarks/construct.py [--reps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _smoke
import torch
from _timing import interleaved

import strata.api


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help=_smoke.HELP)
    return ap


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    from transformers import GPT2Config, GPT2LMHeadModel

    spec = os.path.join(os.path.dirname(__file__), "..", "specs", "gpt2.arch")
    if args.smoke:
        spec = _smoke.gpt2_spec()
    fns = {"strata": lambda: strata.api.compile(spec),
           "hf": lambda: GPT2LMHeadModel(GPT2Config(**(_smoke.GPT2 if args.smoke else {})))}
    t = interleaved(fns, reps=args.reps, inner=1, warmup=1)
    print(f"GPT-2 small construction (124M parameters, fp32, CPU, {args.threads} threads)")
    for k, v in t.items():
        print(f"  {k:8s} {v:7.2f} s")
    print(f"  ratio strata / hf: {t['strata'] / t['hf']:.3f}")


if __name__ == "__main__":
    main()
