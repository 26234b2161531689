"""GPT-2 small bf16 training throughput on CUDA: strata's generated model,
eager and torch.compile'd (tokens/s and MFU) — one bare training step, and
`strata train`'s whole loop (data, bf16 autocast, clipping, AdamW, logging).

    python benchmarks/gpu.py [--batch 16] [--seq 1024] [--steps 20] [--peak-tflops 989]

Without a CUDA GPU it says so and exits 0.  MFU uses the 6 * N * tokens
(+ attention 12 * L * d * T * tokens) estimate of nanoGPT; --peak-tflops is the
GPU's dense bf16 peak (H100 SXM: 989; A100: 312).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
import torch.nn.functional as F

import strata.api


def bench(model, batch, seq, steps, vocab):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)
    x = torch.randint(0, vocab, (batch, seq), device="cuda")
    y = torch.randint(0, vocab, (batch, seq), device="cuda")

    def step():
        logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):  # warm up (and compile)
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    return ap


def main() -> int:
    args = parser().parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU here; nothing to measure.")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = True
    spec = os.path.join(os.path.dirname(__file__), "..", "specs", "gpt2.arch")
    g = strata.api.build_graph(spec)
    L, d, vocab = g.graph["vars"]["depth"], g.graph["vars"]["d"], g.graph["vars"]["vocab"]
    n_params = g.graph["parameters"]
    tokens = args.batch * args.seq
    flops = (6 * n_params + 12 * L * d * args.seq) * tokens
    print(f"GPT-2 small, bf16, B={args.batch}, T={args.seq}, {torch.cuda.get_device_name()}")
    for mode in ("eager", "torch.compile"):
        torch.manual_seed(0)
        model = strata.api.compile(spec, device="cuda", dtype=torch.bfloat16)
        if mode == "torch.compile":
            model = torch.compile(model, fullgraph=True)
        dt = bench(model, args.batch, args.seq, args.steps, vocab)
        mfu = flops / dt / (args.peak_tflops * 1e12)
        print(f"  {mode:14s} {dt * 1e3:8.1f} ms/step  {tokens / dt:10,.0f} tokens/s  MFU {mfu:6.1%}")
        del model
        torch.cuda.empty_cache()
    print(f"strata train (whole loop), GPT-2 small, bf16 autocast, B={args.batch}, T={args.seq}")
    for compiled in (False, True):
        tps = train_loop(spec, args, compiled)
        mfu = (6 * n_params + 12 * L * d * args.seq) * tps / (args.peak_tflops * 1e12)
        mode = "torch.compile" if compiled else "eager"
        print(f"  {mode:14s} {tokens / tps * 1e3:8.1f} ms/step  {tps:10,.0f} tokens/s  MFU {mfu:6.1%}")
        torch.cuda.empty_cache()
    return 0


def train_loop(spec, args, compiled: bool) -> float:
    """Median tokens/s of `strata.train` steps after warm-up (and compilation),
    on the built-in corpus with the char tokenizer (the loop's speed does not
    depend on the tokenizer)."""
    import statistics
    import tempfile

    import strata.train

    steps = args.steps + 10
    run = strata.train(spec, steps=steps, batch=args.batch, context=args.seq, tokenizer="char",
                       dtype="bfloat16", eval_every=steps, eval_steps=1, checkpoint_every=steps,
                       device="cuda", compile=compiled, progress=False,
                       out=tempfile.mkdtemp(prefix="strata-gpu-"))
    rates = [m["tokens_per_s"] for m in run.metrics if m.get("tokens_per_s")][10:]
    return statistics.median(rates)


if __name__ == "__main__":
    sys.exit(main())
