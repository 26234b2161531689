"""Training step (forward + backward + AdamW) of specs/tiny_shakespeare.arch,
compiled by strata, against a hand-written nanoGPT-style model of the same config.

    python benchmarks/train_step.py [--reps 9] [--threads 2]

Prints the median step time of each and the ratio strata / hand-written
(target: <= 1.0), for the spec as shipped (its passes section fuses q, k, v into
one matmul, as nanoGPT's c_attn) and with its passes switched off (three q, k, v
matmuls).  A second hand-written instance is timed too: its ratio is the noise
floor of the measurement.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch
import torch.nn.functional as F
from _timing import interleaved
from handwritten_gpt import GPT, GPTConfig

import strata.api


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--inner", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=12)
    return ap


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = os.path.join(os.path.dirname(__file__), "..", "specs", "tiny_shakespeare.arch")
    models = {"strata": strata.api.compile(spec),
              "strata, no passes": strata.api.compile(spec, passes=[]),
              "handwritten": GPT(GPTConfig()),
              "handwritten copy": GPT(GPTConfig())}  # control: the noise floor
    n = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    assert len(set(n.values())) == 1, n
    T = 64
    x = torch.randint(0, 65, (args.batch, T))
    y = torch.randint(0, 65, (args.batch, T))
    steps = {}
    for name, m in models.items():
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)

        def step(m=m, opt=opt):
            logits = m(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        steps[name] = step
    t = interleaved(steps, reps=args.reps, inner=args.inner)
    print(f"tiny_shakespeare train step (B={args.batch}, T={T}, {n['strata']:,} params, "
          f"{args.threads} threads)")
    for k, v in t.items():
        print(f"  {k:18s} {v * 1e3:8.2f} ms/step")
    for k in ("strata", "strata, no passes", "handwritten copy"):
        print(f"  ratio {k} / handwritten: {t[k] / t['handwritten']:.3f}")


if __name__ == "__main__":
    main()
