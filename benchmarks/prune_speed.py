"""Structured pruning on CPU: GPT-2 small with 30 % of its MLP neurons removed
(prune(0.3, method=structured, on="mlp"): hidden 3072 -> 2150 in every layer)
against the dense model, forward on 1 x T tokens, side by side in one process.

    python benchmarks/prune_speed.py [--threads 1] [--seq 128] [--heads]

--heads also removes a quarter of the attention heads (12 -> 9).  Weights are
GPT-2's initialisation (seed 0); the pruned model keeps the largest neurons.
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
from strata.compiler.cost import analyze

SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "specs", "gpt2.arch")


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--heads", action="store_true", help="also prune 25 %% of the attention heads")
    ap.add_argument("--smoke", action="store_true", help=_smoke.HELP)
    return ap


def main() -> None:
    args = parser().parse_args()
    spec = _smoke.gpt2_spec() if args.smoke else SPEC
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dense = strata.api.compile(spec, passes=[]).eval()
    passes = ['prune(0.3, method=structured, on="mlp")'] + \
        (['prune(0.25, method=structured, on="attention")'] if args.heads else [])
    with tempfile.TemporaryDirectory() as d:
        w = os.path.join(d, "w.safetensors")
        strata.api.save_weights(dense, w)
        pruned = strata.api.compile(spec, passes=passes, weights=w).eval()
    x = torch.randint(0, 50257, (1, args.seq), generator=torch.Generator().manual_seed(1))

    def fwd(m):
        def step():
            with torch.no_grad():
                m(x)
        return step

    t = interleaved({"dense": fwd(dense), "pruned": fwd(pruned)}, reps=args.reps, inner=1, warmup=1)
    a, b = analyze(dense.strata_graph), analyze(pruned.strata_graph)
    print(f"GPT-2 small forward, 1 x {args.seq} tokens, {args.threads} thread(s); pruned: {', '.join(passes)}")
    for k, m, s in (("dense", dense, a), ("pruned", pruned, b)):
        print(f"  {k:7s} {t[k] * 1e3:8.1f} ms   {s['parameters']:>12,} parameters   "
              f"{s['flops_per_token'] / 1e6:7.1f} MFLOPs/token")
    print(f"  speed-up dense / pruned: {t['dense'] / t['pruned']:.3f}x   "
          f"(FLOPs ratio {a['flops_per_token'] / b['flops_per_token']:.3f})")
    for line in pruned.strata_report:
        print(f"  {line}")


if __name__ == "__main__":
    main()
