"""GPT-2 small forward + backward on CPU: strata's generated model against
Hugging Face's GPT2LMHeadModel (config attn_implementation="sdpa"), side by side.

    python benchmarks/gpt2_cpu.py [--batch 1] [--seq 128] [--threads 2]

Prints median times and the ratio strata / HF (target: <= 1.0).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _smoke
import torch
import torch.nn.functional as F
from _timing import interleaved

import strata.api


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--inner", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help=_smoke.HELP)
    return ap


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    spec = _smoke.gpt2_spec() if args.smoke else os.path.join(os.path.dirname(__file__), "..", "specs", "gpt2.arch")
    models = {"strata": strata.api.compile(spec).eval(),
              "hf": GPT2LMHeadModel(GPT2Config(attn_implementation="sdpa", **(_smoke.GPT2 if args.smoke else {}))).eval()}
    x = torch.randint(0, 50257, (args.batch, args.seq))

    def run(m, logits_of):
        def step():
            logits = logits_of(m(x))
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), x.view(-1))
            loss.backward()
            m.zero_grad(set_to_none=True)
        return step

    steps = {"strata": run(models["strata"], lambda o: o),
             "hf": run(models["hf"], lambda o: o.logits)}
    t = interleaved(steps, reps=args.reps, inner=args.inner, warmup=2)
    print(f"GPT-2 small forward+backward, B={args.batch}, T={args.seq}, {args.threads} threads, "
          "dropout off (eval)")
    for k, v in t.items():
        print(f"  {k:8s} {v * 1e3:8.1f} ms")
    print(f"  ratio strata / hf: {t['strata'] / t['hf']:.3f}")


if __name__ == "__main__":
    main()
