"""ONNX Runtime against strata eager and torch.compile on CPU, side by side in one
process: GPT-2 small (random weights, transformers' GPT2Config, brought in with
`import-hf`), exported with `strata export --to onnx`.

    forward   one 1x128 sequence: logits (ORT: model.onnx, which also returns the cache)
    decode    a 1x16 prompt then 64 greedy tokens with the cache (ORT: model.onnx, then
              decoder_with_past.onnx token by token; strata: its static KV cache;
              compiled: strata's one-token step under torch.compile)

Every contender must give strata eager's tokens.

    python benchmarks/export_onnx.py [--threads 2] [--rounds 3] [--int8] [--no-compile]

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

import _smoke
import numpy as np
import torch
from _timing import interleaved

import strata.api
from strata.interop import import_hf


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--int8", action="store_true", help="also time ONNX Runtime's int8 export")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile contenders")
    ap.add_argument("--smoke", action="store_true", help=_smoke.HELP)
    return ap


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    from transformers import GPT2Config, GPT2LMHeadModel

    from strata.train.onnx_runtime import OnnxModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(**(_smoke.GPT2 if args.smoke else {}))).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        arch, weights = import_hf(d, os.path.join(d, "imp"))
        ours = strata.api.compile(arch, weights=weights).eval()
        t = time.perf_counter()
        strata.api.export(arch, os.path.join(d, "onnx"), to="onnx", weights=weights)
        print(f"export --to onnx: {time.perf_counter() - t:.1f} s")
        ort = OnnxModel(os.path.join(d, "onnx"), threads=args.threads)
        ort_q = None
        if args.int8:
            strata.api.export(arch, os.path.join(d, "onnx8"), to="onnx", weights=weights, int8=True)
            ort_q = OnnxModel(os.path.join(d, "onnx8"), threads=args.threads)
    compiled = None if args.no_compile else torch.compile(ours, fullgraph=True, dynamic=False)

    x = torch.randint(0, 50257, (1, 128))
    xn = x.numpy()
    with torch.no_grad():
        want = ours(x)
        if compiled is not None:
            t = time.perf_counter()
            got = compiled(x)
            print(f"torch.compile forward, first call (compiles): {time.perf_counter() - t:.1f} s")
            assert torch.allclose(got, want, atol=1e-3)
    np.testing.assert_allclose(ort.forward(xn)[0], want.numpy(), atol=1e-3, rtol=0)
    fwd = {"strata eager": lambda: ours(x), "torch.compile": lambda: compiled(x),
           "onnxruntime": lambda: ort.forward(xn)}
    if compiled is None:
        del fwd["torch.compile"]
    if ort_q is not None:
        fwd["onnxruntime int8"] = lambda: ort_q.forward(xn)
    with torch.no_grad():
        tf = interleaved(fwd, reps=args.rounds, inner=3, warmup=1)

    prompt = torch.randint(0, 50257, (1, 16))
    new = args.new
    want_ids = ours.generate(prompt, new)
    dec = {"strata eager": lambda: ours.generate(prompt, new),
           "torch.compile": lambda: ours.generate(prompt, new, compile=True),
           "onnxruntime": lambda: ort.greedy(prompt.numpy(), new)}
    if compiled is None:
        del dec["torch.compile"]
    else:
        t = time.perf_counter()
        ours.generate(prompt, new, compile=True)
        print(f"compiled decode step, first call (compiles): {time.perf_counter() - t:.1f} s")
    for k, f in dec.items():
        got = f()
        assert np.array_equal(np.asarray(got), want_ids.numpy()), f"{k}: the tokens differ"
    if ort_q is not None:
        dec["onnxruntime int8"] = lambda: ort_q.greedy(prompt.numpy(), new)
    td = interleaved(dec, reps=args.rounds, inner=1, warmup=1)

    print(f"GPT-2 small, CPU, {args.threads} threads, median of {args.rounds} rounds")
    print("  forward 1x128:")
    for k, v in tf.items():
        print(f"    {k:18s} {v * 1e3:8.1f} ms   ratio to strata eager {v / tf['strata eager']:.3f}")
    print(f"  cached decode, 1x16 prompt + {new} tokens:")
    for k, v in td.items():
        print(f"    {k:18s} {v * 1e3:8.1f} ms   {new / v:6.1f} tokens/s   "
              f"ratio to strata eager {v / td['strata eager']:.3f}")


if __name__ == "__main__":
    main()
