"""What each compression pass costs in quality, on a model trained here.

    python benchmarks/compress_quality.py [--steps 2000] [--finetune 200] [--threads 1] [--save W]

Trains specs/tiny_shakespeare.arch (809,856 parameters, character level) on
Tiny Shakespeare with a short nanoGPT-style loop (AdamW, warmup + cosine,
B=12, T=64), saves its weights in the spec's own names, then compiles the spec
with each pass through `strata.compile(spec, weights=..., passes=[...])` and
measures validation perplexity (the last 10 % of the text, fixed windows),
parameters, weight bytes as compiled, and forward latency (B=1, T=64,
interleaved).  Structured pruning and low rank are also measured after a short
recovery fine-tune of the compressed model (and the uncompressed one, as the
control: the base model is not trained to convergence, so fine-tuning alone
helps); int4 after QAT (fine-tuned with fake quantization, then converted).  The data file is read from
$STRATA_DATA, ../shared/data/ (beside the checkout) or /work/shared/data/.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch
import torch.nn.functional as F
from _timing import interleaved

import strata.api
from strata.compiler.cost import weight_bytes

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "tiny_shakespeare.arch"
CTX, BATCH = 64, 12


def data_file() -> Path:
    for p in (os.environ.get("STRATA_DATA"), ROOT.parent / "shared" / "data", "/work/shared/data"):
        if p and (Path(p) / "tinyshakespeare.txt").is_file():
            return Path(p) / "tinyshakespeare.txt"
    sys.exit("tinyshakespeare.txt not found: set STRATA_DATA to its folder")


def load_data():
    text = data_file().read_text(encoding="utf-8")
    chars = sorted(set(text))  # nanoGPT's character vocabulary: 65 symbols
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(ids))
    return ids[:n], ids[n:]


def batches(data, steps, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(len(data) - CTX - 1, (BATCH,), generator=g)
        x = torch.stack([data[j:j + CTX + 1] for j in i.tolist()])
        yield x[:, :-1], x[:, 1:]


def train(model, data, steps, lr, seed=0, warmup=100):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.1)
    model.train()
    for s, (x, y) in enumerate(batches(data, steps, seed)):
        frac = min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps))
        for group in opt.param_groups:
            group["lr"] = lr * max(frac, 0.1)
        loss = F.cross_entropy(model(x).reshape(-1, 65), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return model.eval()


@torch.no_grad()
def perplexity(model, val, windows=400):
    """exp(mean cross-entropy) over fixed, evenly spaced windows of the validation text."""
    model.eval()
    starts = torch.linspace(0, len(val) - CTX - 2, windows).long()
    total, count = 0.0, 0
    for chunk in starts.split(50):
        x = torch.stack([val[s:s + CTX] for s in chunk.tolist()])
        y = torch.stack([val[s + 1:s + CTX + 1] for s in chunk.tolist()])
        total += float(F.cross_entropy(model(x).reshape(-1, 65), y.reshape(-1), reduction="sum"))
        count += y.numel()
    return math.exp(total / count)


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--finetune", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", help="also keep the trained weights here (.safetensors)")
    ap.add_argument("--smoke", action="store_true", help="perplexity on 16 windows, latency of one "
                    "call: to test that the script runs with a few --steps (the figures mean nothing)")
    return ap


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    windows = 16 if args.smoke else 400
    timing = dict(reps=1, inner=1, warmup=0) if args.smoke else dict(reps=11, inner=20, warmup=2)
    train_ids, val = load_data()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    base = train(strata.api.compile(SPEC), train_ids, args.steps, 1e-3)
    print(f"trained {args.steps} steps in {time.perf_counter() - t0:.0f} s; val perplexity "
          f"{perplexity(base, val, windows):.3f}", flush=True)
    tmp = tempfile.mkdtemp()
    w = args.save or os.path.join(tmp, "base.safetensors")
    strata.api.save_weights(base, w)

    rank_half = 'low_rank(64, on="mlp")'  # rank 64 of the 128 x 512 MLP matrices
    variants = {
        "fp32 (as shipped)": [],
        "int8_dynamic": ['quantize(int8_dynamic, on="decoder.h.*")', 'quantize(int8_dynamic, on="decoder.lm_head")'],
        "int8_weight": ["quantize(int8_weight)"],
        "int4_weight g32": ["quantize(int4_weight, group_size=32)"],
        "int4_weight g64": ["quantize(int4_weight, group_size=64)"],
        "int4_weight g128": ["quantize(int4_weight, group_size=128)"],
        "prune 30% MLP neurons": ['prune(0.3, method=structured, on="mlp")'],
        "prune 50% magnitude": ["prune(0.5)"],
        "low rank 1/2 MLP": [rank_half],
    }
    models = {}
    for name, passes in variants.items():
        models[name] = strata.api.compile(SPEC, weights=w, passes=["fuse_qkv"] + passes).eval()
    for name, passes in (("fp32", []), ("prune 30% MLP neurons", variants["prune 30% MLP neurons"]),
                         ("low rank 1/2 MLP", [rank_half])):  # fp32 + steps: the control
        tuned = strata.api.compile(SPEC, weights=w, passes=["fuse_qkv"] + passes)
        models[f"{name} + {args.finetune} steps"] = train(tuned, train_ids, args.finetune, 3e-4, seed=1, warmup=10)
    from strata.backends.torch.workflows.qat import convert_qat, prepare_qat

    qat = strata.api.compile(SPEC, weights=w, passes=["fuse_qkv", "quantize(int4_weight, group_size=32, qat=true)"],
                             quantize=False)
    prepare_qat(qat)
    train(qat, train_ids, args.finetune, 3e-4, seed=1, warmup=10)
    models[f"int4_weight g32 + {args.finetune} QAT steps"] = convert_qat(qat).eval()

    x = torch.randint(0, 65, (1, CTX), generator=torch.Generator().manual_seed(2))

    def fwd(m):
        def step():
            with torch.no_grad():
                m(x)
        return step

    lat = interleaved({k: fwd(m) for k, m in models.items()}, **timing)
    ref = perplexity(models["fp32 (as shipped)"], val, windows)
    probe = torch.stack([val[s:s + CTX] for s in range(0, 8 * CTX, CTX)])  # 8 validation windows
    with torch.no_grad():
        base_logits = models["fp32 (as shipped)"](probe)
    print(f"\nTiny Shakespeare char model, {args.threads} thread(s); latency: forward B=1, T={CTX}; "
          "SQNR: logits against the fp32 model on 8 validation windows")
    print(f"  {'model':34s} {'parameters':>11s} {'weights':>10s} {'latency':>10s} {'SQNR':>8s} "
          f"{'val ppl':>8s} {'change':>8s}")
    for name, m in models.items():
        ppl = perplexity(m, val, windows)
        with torch.no_grad():
            got = m(probe)
        err = (base_logits - got).norm()
        q = "" if err == 0 else f"{float(20 * torch.log10(base_logits.norm() / err)):5.1f} dB"
        print(f"  {name:34s} {m.strata_graph.graph['parameters']:>11,} "
              f"{weight_bytes(m.strata_graph) / 2**20:>7.2f} MiB {lat[name] * 1e3:>7.2f} ms {q:>8s} "
              f"{ppl:>8.3f} {(ppl / ref - 1) * 100:>+7.2f}%")


if __name__ == "__main__":
    main()
