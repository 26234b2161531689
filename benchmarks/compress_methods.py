"""Calibrated compression methods against round to nearest / magnitude, on a
model trained here.

    python benchmarks/compress_methods.py [--train-seconds 600] [--threads 1] [--cache DIR]

Trains a small Llama-like model (RMSNorm, rotary, SwiGLU; 4 layers, d=128,
1.1 M parameters, BPE vocabulary of 1024 from the `tokenizers` library, context
64) on Tiny Shakespeare for
a fixed time, caches it (DIR, default ~/.cache/strata-bench/compress_methods),
then compiles it with each method through `strata.compile(spec, weights=...,
passes=[...], calibration=ids)` and prints one table: validation perplexity
and its change, the method's increase over the plain method's, logits SQNR
against the float model, calibration seconds per block and forward latency
relative to the plain method.  The data file is read from $STRATA_DATA,
../shared/data/ (beside the checkout) or /work/shared/data/.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch
import torch.nn.functional as F
from _timing import interleaved

import strata.api

ROOT = Path(__file__).resolve().parents[1]
VOCAB, CTX, BATCH = 1024, 64, 16
SPEC = f"""
model bench_llama {{
  vocab = {VOCAB}
  d     = 128
  heads = 4
  depth = 4
  block layer {{
    residual {{ rmsnorm; attention(heads, causal=true, bias=false) }}
    residual {{ rmsnorm; mlp(384, act=swiglu, bias=false) }}
  }}
  stack decoder(tokens) {{
    embedding(vocab, d) as embed
    position(rotary)
    repeat(depth) layer as layers
    rmsnorm as norm
    lm_head(vocab)
  }}
}}
"""


def data_file() -> Path:
    for p in (os.environ.get("STRATA_DATA"), ROOT.parent / "shared" / "data", "/work/shared/data"):
        if p and (Path(p) / "tinyshakespeare.txt").is_file():
            return Path(p) / "tinyshakespeare.txt"
    sys.exit("tinyshakespeare.txt not found: set STRATA_DATA to its folder")


def tokenize(cache: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    text = data_file().read_text(encoding="utf-8")
    path = cache / "tokenizer.json"
    if path.is_file():
        tok = Tokenizer.from_file(str(path))
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator([text], trainers.BpeTrainer(vocab_size=VOCAB, show_progress=False,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tok.save(str(path))
    ids = torch.tensor(tok.encode(text).ids, dtype=torch.long)
    n = int(0.9 * len(ids))
    return ids[:n], ids[n:]


def train(model, data, seconds, lr=1e-3):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    model.train()
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        frac = (time.perf_counter() - start) / seconds
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (steps + 1) / 50) * max(0.1, 0.5 * (1 + math.cos(math.pi * frac)))
        i = torch.randint(len(data) - CTX - 1, (BATCH,), generator=g)
        x = torch.stack([data[j:j + CTX + 1] for j in i.tolist()])
        loss = F.cross_entropy(model(x[:, :-1]).reshape(-1, VOCAB), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        steps += 1
    return model.eval(), steps


def windows(val, n):
    starts = torch.linspace(0, len(val) - CTX - 2, n).long().tolist()
    return torch.stack([val[s:s + CTX + 1] for s in starts])


@torch.no_grad()
def perplexity(model, batch):
    total = 0.0
    for chunk in batch.split(16):
        total += float(F.cross_entropy(model(chunk[:, :-1]).reshape(-1, VOCAB).float(),
                                       chunk[:, 1:].reshape(-1), reduction="sum"))
    return math.exp(total / (batch.shape[0] * CTX))


def as_stored(spec, w, p, calib):
    """The model with float32 weights exactly on the scheme's grid (what a packed
    checkpoint computes): GPTQ's weights as it chose them, the others rounded to
    nearest here; None for int8_dynamic (its activations are rounded too)."""
    from strata.passes.methods.grid import Grid

    if "int8_dynamic" in p:
        return None
    m = strata.api.compile(spec, weights=w, passes=[p], calibration=calib, quantize=False).eval()
    if "method=gptq" in p:
        return m
    with torch.no_grad():
        for n, d in m.strata_graph.nodes(data=True):
            a = d["attrs"]
            if a.get("quant_scheme"):
                lin = m.get_submodule(n)
                lin.weight.copy_(Grid(a["quant_scheme"], a.get("group_size")).rtn(lin.weight).weight)
    return m


def ratio(inc: float, plain: float) -> str:
    """The method's perplexity increase over the plain method's (meaningless when
    the plain method does not raise perplexity)."""
    return f"{inc / plain:.2f}x" if plain > 1e-4 else "n/a (plain: no increase)"


def sqnr(ref, got) -> float:
    return float(20 * torch.log10(ref.norm() / (ref - got.float()).norm()))


# (row label, passes, the plain method it is measured against)
ROWS = [
    ("int4 g128 rtn", "quantize(int4_weight, group_size=128)", None),
    ("int4 g128 gptq", "quantize(int4_weight, group_size=128, method=gptq, act_order=true)", "int4 g128 rtn"),
    ("int4 g128 awq", "quantize(int4_weight, group_size=128, method=awq)", "int4 g128 rtn"),
    ("int4 g32 rtn", "quantize(int4_weight, group_size=32)", None),
    ("int4 g32 gptq", "quantize(int4_weight, group_size=32, method=gptq, act_order=true)", "int4 g32 rtn"),
    ("int4 g32 awq", "quantize(int4_weight, group_size=32, method=awq)", "int4 g32 rtn"),
    ("int8 weight rtn", "quantize(int8_weight)", None),
    ("int8 weight gptq", "quantize(int8_weight, method=gptq)", "int8 weight rtn"),
    ("int8 dynamic", "quantize(int8_dynamic)", None),
    ("int8 dynamic smooth 0.5", "quantize(int8_dynamic, smooth=0.5)", "int8 dynamic"),
    ("prune 50% magnitude", "prune(0.5)", None),
    ("prune 50% sparsegpt", "prune(0.5, method=sparsegpt)", "prune 50% magnitude"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-seconds", type=float, default=600)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calibration", type=int, default=32, help="calibration rows of 64 tokens")
    ap.add_argument("--finetune", type=int, default=300, help="steps of strata compress --finetune")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "strata-bench" / "compress_methods"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    spec = cache / "bench_llama.arch"
    spec.write_text(SPEC)
    train_ids, val = tokenize(cache)
    w = cache / f"weights_{int(args.train_seconds)}s.safetensors"
    if not w.is_file():
        torch.manual_seed(0)
        model, steps = train(strata.api.compile(spec), train_ids, args.train_seconds)
        strata.api.save_weights(model, w)
        print(f"trained {steps} steps in {args.train_seconds:.0f} s -> {w}", flush=True)
    calib = windows(train_ids, args.calibration)[:, :CTX]
    batch = windows(val, 64)
    base = strata.api.compile(spec, weights=w).eval()
    print(f"model: {sum(p.numel() for p in base.parameters()):,} parameters", flush=True)
    with torch.no_grad():
        ref = base(batch[:8, :-1]).float()
    p0 = perplexity(base, batch)
    x1 = batch[:1, :-1]
    results = {}
    for label, p, plain in ROWS:
        t = time.perf_counter()
        m = strata.api.compile(spec, weights=w, passes=[p], calibration=calib if plain else None).eval()
        seconds = time.perf_counter() - t
        rec = m.strata_graph.graph["applied"][-1]["record"]
        cal = rec.get("calibration")
        with torch.no_grad():
            s = sqnr(ref, m(batch[:8, :-1]))
        stored = as_stored(spec, w, p, calib if plain else None) if p.startswith("quantize") else None
        results[label] = {"ppl": perplexity(m, batch), "sqnr": s, "model": m,
                          "stored": perplexity(stored, batch) if stored is not None else None,
                          "per_block": cal["seconds_per_block"] if cal else None, "compile": seconds}
        print(f"  {label}: ppl {results[label]['ppl']:.3f} ({seconds:.1f} s)", flush=True)
    lat = {}
    with torch.no_grad():
        for label, _, plain in ROWS:
            if plain is not None:
                a, b = results[plain]["model"], results[label]["model"]
                t = interleaved({"plain": lambda a=a: a(x1), "method": lambda b=b: b(x1)}, reps=3, inner=3)
                lat[label] = t["method"] / t["plain"]
    print(f"\nfloat perplexity {p0:.3f} on {batch.shape[0]} windows of {CTX} tokens; calibration "
          f"{calib.shape[0]} x {CTX} tokens; {args.threads} threads\n")
    print("| method | perplexity | change | increase vs plain | logits SQNR dB | on the grid in fp32: change | "
          "increase vs plain | calib s/block | latency vs plain |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, _, plain in ROWS:
        r = results[label]
        inc = r["ppl"] / p0 - 1
        vs = ratio(inc, results[plain]["ppl"] / p0 - 1) if plain else "1 (plain)"
        cal = f"{r['per_block']:.2f}" if r["per_block"] is not None else "-"
        la = f"{lat[label]:.2f}x" if label in lat else "1"
        g_inc, g_vs = "-", "-"
        if r["stored"] is not None:
            g = r["stored"] / p0 - 1
            g_inc = f"{100 * g:+.2f}%"
            g_vs = ratio(g, results[plain]["stored"] / p0 - 1) if plain else "1 (plain)"
        print(f"| {label} | {r['ppl']:.3f} | {100 * inc:+.2f}% | {vs} | {r['sqnr']:.1f} | {g_inc} | {g_vs} | "
              f"{cal} | {la} |")
    mixed_precision(spec, w, calib, batch, p0)
    recovery(spec, w, torch.cat([train_ids, val]), cache, args.finetune)


# budgets between uniform int4 (4.16 stored bits at group 128, 4.63 at 32) and int8 (8 + 32/in)
AUTO = ["quantize(auto, bits=4.5)", "quantize(auto, bits=5, group_size=32)", "quantize(auto, bits=6)"]


def mixed_precision(spec, w, calib, batch, p0):
    """quantize(auto, bits=B) beside the uniform schemes around it: the stored bits
    per weight each reaches and its perplexity change (one table)."""
    rows = ([("int4 g128 rtn (uniform)", "quantize(int4_weight, group_size=128)"),
             ("int4 g32 rtn (uniform)", "quantize(int4_weight, group_size=32)")]
            + [(p.removeprefix("quantize(").removesuffix(")"), p) for p in AUTO]
            + [("int8 weight rtn (uniform)", "quantize(int8_weight)")])
    print("\n| quantize | stored bits / weight | perplexity | change | linears int4 / int8 / float | compile s |")
    print("|---|---|---|---|---|---|")
    for label, p in rows:
        t = time.perf_counter()
        m = strata.api.compile(spec, weights=w, passes=[p], calibration=calib).eval()
        seconds = time.perf_counter() - t
        g = m.strata_graph
        rec = g.graph["applied"][-1]["record"]
        auto = rec.get("auto")
        names = list(auto["layers"]) if auto else rec["linears"]
        weights = sum(math.prod(g.nodes[n]["params"]["weight"]) for n in names)
        bits = auto["achieved"] if auto else 8 * rec["bytes_after"] / weights  # the benchmark's linears have no bias
        schemes = [g.nodes[n]["attrs"].get("quant_scheme", "float") for n in names]
        split = " / ".join(str(schemes.count(s)) for s in ("int4_weight", "int8_weight", "float"))
        ppl = perplexity(m, batch)
        print(f"| {label} | {bits:.2f} | {ppl:.3f} | {100 * (ppl / p0 - 1):+.2f}% | {split} | {seconds:.1f} |",
              flush=True)


def recovery(spec, w, ids, cache, steps):
    """30 % of the MLP neurons removed, then `strata compress --finetune`: held-out
    perplexity (the last 10 % of the text) of the original, before and after."""
    import tempfile

    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        data = Path(tmp) / "ids.safetensors"
        save_file({"tokens": ids}, str(data))
        t = time.perf_counter()
        r = strata.api.compress(spec, Path(tmp) / "out", weights=w, passes=['prune(0.3, method=structured, on="mlp")'],
                                finetune=steps, data=str(data)).report
    f = r["finetune"]
    o, b, a = (f[k]["perplexity"] for k in ("teacher", "before", "after"))
    print(f"\nprune(0.3, method=structured, on=\"mlp\") --finetune {steps} ({time.perf_counter() - t:.0f} s, "
          f"{f['held_out']['rows']} held-out rows of {f['held_out']['tokens']} tokens): perplexity original "
          f"{o:.3f}, pruned {b:.3f} ({100 * (b / o - 1):+.2f}%), after {steps} steps {a:.3f} "
          f"({100 * (a / o - 1):+.2f}%)")


if __name__ == "__main__":
    main()
