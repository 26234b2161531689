"""GPT-2 small on CPU: fp32 against int8 dynamic quantization, side by side in
one process (weights: GPT-2's initialisation, seed 0; nothing is downloaded).

    python benchmarks/quantize_gpt2.py [--threads 2] [--seq 128] [--decode 32] [--head]

Models (all built by strata.compile from specs/gpt2.arch, float weights shared):
    fp32         no quantize pass
    int8         quantize(int8_dynamic) as strata lowers it on CPU (torch.ao's
                 dynamic int8 linear: fbgemm / x86, per-channel weights)
    int8 torchao the same linears with torchao's Int8DynamicActivationInt8WeightConfig,
                 eager (the fallback when torch.ao's path is gone)
    --head       also quantize the tied output projection (an int8 copy of the
                 embedding for the head; the embedding lookup stays float)
    --torch-compile  also fp32 and torchao int8 under torch.compile (forward only:
                 decoding would recompile for every length)

Prints the forward time on 1 x T tokens, cached greedy decoding in tokens/s,
the ratios to fp32 (goal >= 2x) and the logits SQNR (goal >= 30 dB).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _smoke
import torch
from _timing import interleaved

import strata.api

SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "specs", "gpt2.arch")


def sqnr(ref, got) -> float:
    return float(20 * torch.log10(ref.norm() / (ref - got).norm()))


def decode_rate(model, prompt, n: int) -> float:
    """Greedy tokens per second with the KV cache (prefill excluded)."""
    with torch.no_grad():
        cache = model.new_cache()
        logits = model(prompt, cache=cache)
        nxt = logits[:, -1:].argmax(-1)
        t = time.perf_counter()
        for _ in range(n):
            nxt = model(nxt, cache=cache)[:, -1:].argmax(-1)
        return n / (time.perf_counter() - t)


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--decode", type=int, default=32, help="tokens generated per decoding run")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--head", action="store_true", help="quantize the tied output projection too")
    ap.add_argument("--torch-compile", action="store_true", help="also time torch.compile'd models")
    ap.add_argument("--smoke", action="store_true", help=_smoke.HELP)
    return ap


def main() -> None:
    args = parser().parse_args()
    spec = _smoke.gpt2_spec() if args.smoke else SPEC
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    on = "" if not args.head else ', on="decoder"'
    layers = 'quantize(int8_dynamic, on="decoder.h.*")'
    passes = [layers] + (['quantize(int8_dynamic, on="decoder.lm_head")'] if args.head else [])
    fp32 = strata.api.compile(spec, passes=[]).eval()
    state = {k: v.clone() for k, v in fp32.state_dict().items()}
    int8 = strata.api.compile(spec, passes=passes, quantize=False).eval()
    int8.load_state_dict(state)
    ao = copy.deepcopy(int8)
    module = sys.modules[type(int8).__module__]
    module.quantize(int8)
    from strata.backends.torch.runtime_passes import _torchao, named_linears

    tq = _torchao()
    names = {n for n, _, _ in named_linears(ao, module.QUANTIZE)}
    tq.quantize_(ao, tq.Int8DynamicActivationInt8WeightConfig(set_inductor_config=False),
                 filter_fn=lambda m, fqn: fqn in names)
    models = {"fp32": fp32, "int8": int8, "int8 torchao": ao}
    del on
    if args.torch_compile:
        models["fp32 compiled"] = torch.compile(fp32)
        models["int8 torchao compiled"] = torch.compile(ao)

    x = torch.randint(0, 50257, (1, args.seq), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = fp32(x)
        quality = {k: sqnr(ref, m(x)) for k, m in models.items() if k != "fp32"}

    def fwd(m):
        def step():
            with torch.no_grad():
                m(x)
        return step

    t = interleaved({k: fwd(m) for k, m in models.items()}, reps=args.reps, inner=1, warmup=1)
    prompt = x[:, :16]
    eager = [k for k in models if "compiled" not in k]
    rates = {k: [] for k in eager}
    for r in range(3):  # interleaved as well
        for k in (eager if r % 2 == 0 else list(reversed(eager))):
            rates[k].append(decode_rate(models[k], prompt, args.decode))
    rate = {k: sorted(v)[1] for k, v in rates.items()}
    print(f"GPT-2 small, {args.threads} threads, forward on 1 x {args.seq} tokens, greedy decoding of "
          f"{args.decode} tokens with the KV cache; quantized: {', '.join(passes)}")
    print(f"  {'model':21s} {'forward':>10s} {'speed-up':>9s} {'decode':>12s} {'speed-up':>9s} {'logits SQNR':>12s}")
    for k in models:
        q = f"{quality[k]:9.1f} dB" if k in quality else ""
        dec = f"{rate[k]:8.1f} tok/s {rate[k] / rate['fp32']:8.2f}x" if k in rate else f"{'':>22s}"
        print(f"  {k:21s} {t[k] * 1e3:8.1f} ms {t['fp32'] / t[k]:8.2f}x {dec} {q:>12s}")
    print(f"  kernels: {'; '.join(int8.quantization)}")


if __name__ == "__main__":
    main()
