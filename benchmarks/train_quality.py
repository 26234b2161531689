"""Validation loss after 2000 steps on Tiny Shakespeare: `strata train
specs/tiny_shakespeare.arch` (batch 12 x context 64, its train section) against
the figure nanoGPT publishes for this CPU configuration, 1.88.

    python benchmarks/train_quality.py [--data PATH] [--steps 2000] [--threads 2] [--reference [nanogpt]]

Prints the validation loss strata logs at the end of training (its fixed
evaluation set: 20 batches of 12 x 64 tokens, like nanoGPT's eval_iters=20),
the loss over the whole validation split (`strata eval`, every token once),
and with --reference the hand-written nanoGPT-style loop's (eval_iters=200),
trained with the spec's recipe or, with --reference nanogpt, with nanoGPT's
shakespeare_char settings (lr 1e-3, the spec's before it was tuned).
Needs ../shared/data/tinyshakespeare.txt (or --data); says so and exits 0
without it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _smoke
import torch
from train_loop import NANOGPT, SPEC, char_bins, nanogpt_loop, shakespeare, spec_recipe

import strata
import strata.train

TARGET = 1.88
SMOKE = {"n_embd": 32, "n_layer": 1}  # --smoke: GPTConfig keywords, and the spec's d and depth alike


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    ap.add_argument("--reference", nargs="?", const="spec", choices=["spec", "nanogpt"],
                    help="also train the hand-written loop, with the spec's recipe or nanoGPT's")
    ap.add_argument("--smoke", action="store_true", help="both models at d=32 and one layer, the reference's "
                    "loss on 2 batches: to test that the script runs with a few --steps (the figures mean nothing)")
    return ap


def main() -> int:
    args = parser().parse_args()
    data = args.data or shakespeare()
    if data is None:
        print("benchmarks/train_quality.py: no tinyshakespeare.txt in ../shared/data; give --data")
        return 0
    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="strata-quality-")) / "run"
    t = time.perf_counter()
    spec = _smoke.shrunk("tiny_shakespeare", d=SMOKE["n_embd"], depth=SMOKE["n_layer"]) if args.smoke else SPEC
    run = strata.train(str(spec), data=str(data), steps=args.steps, out=out, overwrite=True)
    wall = time.perf_counter() - t
    full = run.evaluate()
    print(f"tiny_shakespeare, {args.steps} steps, B=12, T=64, {args.threads} threads, {data}")
    print(f"  strata       val loss {run.val_loss:.4f} (20 batches)   {full['loss']:.4f} (whole split, "
          f"{full['count']:,} tokens)   {wall:.0f} s")
    if args.reference:
        tmp = Path(tempfile.mkdtemp(prefix="strata-quality-ref-"))
        train_bin, val_bin, vocab = char_bins(data, tmp)
        t = time.perf_counter()
        recipe = spec_recipe() if args.reference == "spec" else NANOGPT
        smoke = dict(model=SMOKE, eval_iters=2) if args.smoke else {}
        ref = nanogpt_loop(train_bin, args.steps, vocab, val_bin=val_bin, **recipe, **smoke)
        print(f"  handwritten  val loss {ref['val']:.4f} (200 batches)   {time.perf_counter() - t:.0f} s   "
              f"({args.reference}'s recipe: lr {recipe['lr']:g})")
    ok = run.val_loss <= TARGET and full["loss"] <= TARGET
    print(f"  target <= {TARGET}: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
