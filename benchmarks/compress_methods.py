"""Calibrated compression methods against round to nearest / magnitude, on a
model trained here.

    python benchmarks/compress_methods.py [--size 1m|10m|wide] [--corpus shakespeare|stdlib]
        [--train-seconds 600] [--threads 1] [--calibration 128] [--rows WORDS] [--finetune 300]
        [--finetune-lr LR]
        [--no-table] [--cost-only] [--cache DIR]

Trains a small Llama-like model (RMSNorm, rotary, SwiGLU; --size 1m: 4 layers,
d=128, 1.1 M parameters, BPE vocabulary of 1024 from the `tokenizers` library,
context 64; --size 10m: 8 layers, d=256, 10.5 M parameters, vocabulary 4096,
context 128; --size wide: the 1m model at d=256 with 2 layers, 2.2 M
parameters) on Tiny Shakespeare or (--corpus stdlib) the running Python's
standard library sources, 12x the tokens, for a fixed time; the first half of
the held-out 10 % picks the kept step (not for 1m on Shakespeare: its cached
weights predate the pick), the second half measures the table.  It
caches the model (DIR, default ~/.cache/strata-bench/compress_methods; a rerun
skips training), then compiles it with each method through
`strata.compile(spec, weights=..., passes=[...], calibration=ids)` (128 rows
of the context, streamed block by block; int4 per channel, then in the size's
groups) and prints one table, all rows from
this run: validation perplexity and its change, the method's increase over the
plain method's, the mean KL divergence per token from the float model's
predictions (and over the plain method's), logits SQNR against the float
model, the packed file's bytes and the quantized layers' bytes against their
float32 bytes, compile seconds per layer and peak memory (RSS above the level
before, sampled) side by side with the plain method, and forward latency
against the float model (interleaved in one process); quantize(auto) beside the
uniform schemes; the calibration cost streamed against running the model from
the start for every block (--cost-only: that alone).  Then `strata compress
--finetune` on 30 % structured MLP pruning, the neurons chosen by weight norms
and by activations (activation_aware=true).  Tiny Shakespeare is read from
$STRATA_DATA, ../shared/data/ (beside the checkout) or /work/shared/data/.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch
import torch.nn.functional as F
from _timing import interleaved

import strata.api
from strata.backends.torch.workflows.calibration import MAX_ROWS

ROOT = Path(__file__).resolve().parents[1]
# Model sizes: (vocab, context, batch, d, heads, depth, mlp, int4 group sizes
# of the table: the first is one group per row on the d-wide inputs, peak
# learning rate).  "10m" is the size: context 128 × batch 16 (2,048
# tokens a step, 1.2 s at 1 thread on a quiet core; context 256 × 8 cost the
# same per token and made 55 steps in 1,200 s under load); Tiny Shakespeare is
# 310 k training tokens at this vocabulary, so a 10 M model overfits after a
# few epochs and the held-out loss picks the kept weights (train()).
SIZES = {
    "1m": (1024, 64, 16, 128, 4, 4, 384, (128, 32), 2e-3),
    "10m": (4096, 128, 16, 256, 8, 8, 1024, (256, 128, 32), 1e-3),
    # the 1 M model's vocabulary and context at the 10 M model's width, two layers:
    # GPTQ's gain over rounding grows with the width of a layer's inputs, and on
    # CPU this one reaches ~10 tokens per parameter in 40 minutes
    "wide": (1024, 64, 16, 256, 4, 2, 768, (256, 128, 32), 2e-3),
}
# --smoke: every step of the script on a toy model (d=128, 2 layers, vocabulary 256)
# and the first SMOKE_CHARS characters of the corpus; the figures mean nothing.
SMOKE = (256, 16, 4, 128, 2, 2, 256, (128, 32), 2e-3)
SMOKE_CHARS = 30_000
VOCAB = CTX = BATCH = 0
LR = 0.0
NAME = SPEC = ""
GROUPS: tuple = ()


def configure(shape: tuple) -> None:
    """Set the module's shape constants and spec for one of SIZES (or SMOKE)."""
    global VOCAB, CTX, BATCH, NAME, SPEC, GROUPS, LR
    VOCAB, CTX, BATCH, d, heads, depth, mlp, GROUPS, LR = shape
    NAME = f"llama_d{d}x{depth}_v{VOCAB}_c{CTX}"  # the cached files' prefix: a new shape trains anew
    SPEC = f"""
model bench_llama {{
  vocab = {VOCAB}
  ctx   = {CTX}
  d     = {d}
  heads = {heads}
  depth = {depth}
  block layer {{
    residual {{ rmsnorm; attention(heads, causal=true, bias=false) }}
    residual {{ rmsnorm; mlp({mlp}, act=swiglu, bias=false) }}
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


def stdlib_files() -> list[Path]:
    """The running Python's standard library sources, in a fixed order: no
    tests, no IDLE, no installed packages (~670 files, 11 MB on CPython 3.11)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib"}
    return sorted((p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts)),
                  key=lambda p: p.relative_to(root).as_posix())


def corpus_text(corpus: str) -> str:
    """Tiny Shakespeare (1.1 MB: 310 k tokens at a vocabulary of 4,096), or
    `stdlib`: the Python standard library's sources, ~12x the tokens, on every
    machine that runs this script, so that a small model can train on many
    tokens per parameter without repeating its text."""
    if corpus == "shakespeare":
        return data_file().read_text(encoding="utf-8")
    files = stdlib_files()
    text = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)
    print(f"corpus: Python {sys.version.split()[0]} standard library, {len(files)} files, "
          f"{len(text) / 1e6:.1f} M characters", flush=True)
    return text


def tokenize(cache: Path, corpus: str = "shakespeare", chars: int | None = None):
    """(training ids, held-out ids): the last 10 % of the corpus (its first `chars`
    characters, when given) held out."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    text = corpus_text(corpus)[:chars]
    path = cache / (f"tokenizer_{VOCAB}.json" if corpus == "shakespeare" else f"tokenizer_{corpus}_{VOCAB}.json")
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


def train(model, data, seconds, val=None, every=50):
    """AdamW for `seconds` (warm-up 30 steps, cosine to 0.1 of LR over the time).
    With `val`, the held-out loss on 32 windows every `every` steps picks the
    weights returned (the best seen): a small corpus overfits a 10 M model."""
    lr = LR
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    probe = windows(val, 32) if val is not None else None
    best = (math.inf, None, 0)
    model.train()
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        if probe is not None and steps % every == 0:
            best = checkpoint(model, probe, steps, start, best)
        frac = (time.perf_counter() - start) / seconds
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (steps + 1) / 30) * max(0.1, 0.5 * (1 + math.cos(math.pi * frac)))
        i = torch.randint(len(data) - CTX - 1, (BATCH,), generator=g)
        x = torch.stack([data[j:j + CTX + 1] for j in i.tolist()])
        loss = F.cross_entropy(model(x[:, :-1]).reshape(-1, VOCAB), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        steps += 1
    if probe is not None:
        best = checkpoint(model, probe, steps, start, best)
        model.load_state_dict(best[1])
        print(f"kept the weights of step {best[2]} (held-out perplexity {math.exp(best[0]):.2f})", flush=True)
    return model.eval(), steps


def checkpoint(model, probe, steps, start, best):
    """Held-out loss now; (loss, state, step) of the best so far."""
    model.eval()
    loss = math.log(perplexity(model, probe))
    model.train()
    print(f"step {steps} {time.perf_counter() - start:.0f} s held-out perplexity {math.exp(loss):.2f}", flush=True)
    if loss < best[0]:
        return loss, {k: v.detach().clone() for k, v in model.state_dict().items()}, steps
    return best


def windows(val, n):
    starts = torch.linspace(0, len(val) - CTX - 2, n).long().tolist()
    return torch.stack([val[s:s + CTX + 1] for s in starts])


def heldout_halves(val):
    """(selection, evaluation): the kept training step is picked on the first
    half of the held-out text, the table measures on every whole window of the
    second, so the figures are not measured on the text that chose the model."""
    half = len(val) // 2
    rest = val[half:]
    n = len(rest) // (CTX + 1)
    return val[:half], rest[:n * (CTX + 1)].view(n, CTX + 1)


@torch.no_grad()
def perplexity(model, batch):
    return scores(model, batch)[0]


@torch.no_grad()
def scores(model, batch, ref=None):
    """(perplexity on batch [n, CTX + 1]; the mean KL divergence per token, in nats,
    from the reference log-probabilities `ref` [n, CTX, vocab] to the model's, or
    None; the model's log-probabilities).  KL measures how far a method moves the
    model's predictions whether or not the text rewards the move: on an overfit
    model, held-out perplexity can fall under rounding noise, KL cannot."""
    total, kl, logps = 0.0, 0.0, []
    for i, chunk in enumerate(batch.split(16)):
        logp = F.log_softmax(model(chunk[:, :-1]).float(), dim=-1)  # [16, CTX, vocab]
        total += float(F.nll_loss(logp.reshape(-1, VOCAB), chunk[:, 1:].reshape(-1), reduction="sum"))
        if ref is not None:
            r = ref[16 * i:16 * i + chunk.shape[0]]
            kl += float((r.exp() * (r - logp)).sum())
        logps.append(logp)
    n = batch.shape[0] * CTX
    return math.exp(total / n), (kl / n if ref is not None else None), torch.cat(logps)


def ratio(inc: float, plain: float) -> str:
    """The method's perplexity increase over the plain method's (meaningless when
    the plain method does not raise perplexity)."""
    return f"{inc / plain:.2f}x" if plain > 1e-4 else "n/a (plain: no increase)"


def sqnr(ref, got) -> float:
    return float(20 * torch.log10(ref.norm() / (ref - got.float()).norm()))


class PeakRSS:
    """The process's peak resident memory above its level at entry, sampled
    every 5 ms by a thread (torch's CPU allocations are not seen by tracemalloc)."""

    def __enter__(self):
        import threading

        import psutil

        self.proc, self.base, self.peak, self.stop = psutil.Process(), 0, 0, threading.Event()
        self.base = self.peak = self.proc.memory_info().rss

        def sample():
            while not self.stop.wait(0.005):
                self.peak = max(self.peak, self.proc.memory_info().rss)
        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.mib = (self.peak - self.base) / 2**20


def file_bytes(model, path: Path) -> tuple[int, int, int]:
    """(file bytes, bytes of the quantized linears' tensors in it, their float32
    bytes) for `model` saved as strata stores it (packed when quantized)."""
    from safetensors import safe_open

    strata.api.save_weights(model, path)
    lin = {n: d["params"]["weight"] for n, d in model.strata_graph.nodes(data=True)
           if d["attrs"].get("quant_scheme")}
    packed = 0
    with safe_open(str(path), "pt") as f:
        for k in f.keys():
            if any(k.startswith(n + ".weight") for n in lin):
                t = f.get_slice(k)
                packed += math.prod(t.get_shape()) * {"I8": 1, "U8": 1, "BF16": 2, "F16": 2, "F32": 4,
                                                       "I32": 4, "I64": 8}[t.get_dtype()]
    return path.stat().st_size, packed, sum(4 * math.prod(shape) for shape in lin.values())


def table_rows() -> list[tuple[str, str, str | None]]:
    """(row label, passes, the plain method it is measured against)."""
    out = []
    for g in ("channel",) + GROUPS:  # channel: one scale and zero point a row, on every layer
        q = f"quantize(int4_weight, group_size={g}"
        label = "int4 channel" if g == "channel" else f"int4 g{g}"
        out += [(f"{label} rtn", q + ")", None),
                (f"{label} gptq", q + ", method=gptq, act_order=true)", f"{label} rtn"),
                (f"{label} gptq mse", q + ", method=gptq, act_order=true, observer=mse)", f"{label} rtn"),
                (f"{label} gptq mse one pass", q + ", method=gptq, act_order=true, observer=mse, sequential=false)",
                 f"{label} rtn"),
                (f"{label} awq", q + ", method=awq)", f"{label} rtn")]
    return out + [
        ("int8 weight rtn", "quantize(int8_weight)", None),
        ("int8 weight gptq", "quantize(int8_weight, method=gptq)", "int8 weight rtn"),
        ("int8 dynamic", "quantize(int8_dynamic)", None),
        ("int8 dynamic smooth 0.5", "quantize(int8_dynamic, smooth=0.5)", "int8 dynamic"),
        ("int8 dynamic smooth 0.8", "quantize(int8_dynamic, smooth=0.8)", "int8 dynamic"),
        ("int8 static", "quantize(int8_static)", "int8 dynamic"),
        ("int8 static smooth 0.5", "quantize(int8_static, smooth=0.5)", "int8 static"),
        ("int8 static smooth 0.8", "quantize(int8_static, smooth=0.8)", "int8 static"),
        ("prune 50% magnitude", "prune(0.5)", None),
        ("prune 50% sparsegpt", "prune(0.5, method=sparsegpt)", "prune 50% magnitude"),
    ]


def calibration_rows(text: str) -> int:
    """--calibration: strata reads at most MAX_ROWS rows, so more would only change which are read."""
    n = int(text)
    if not 1 <= n <= MAX_ROWS:
        raise argparse.ArgumentTypeError(f"{n} rows: strata calibrates on 1 to {MAX_ROWS} rows (MAX_ROWS)")
    return n


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="1m")
    ap.add_argument("--corpus", choices=("shakespeare", "stdlib"), default="shakespeare",
                    help="the text the model trains and is measured on (stdlib: the Python standard library's sources)")
    ap.add_argument("--train-seconds", type=float, default=600)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-only", action="store_true", help="train (or find) the cached model and stop")
    ap.add_argument("--calibration", type=calibration_rows, default=128,
                    help="calibration rows of the model's context, 1 to 128 (strata reads at most MAX_ROWS)")
    ap.add_argument("--rows", default="", help="only the table rows whose label contains one of these "
                    "comma-separated words")
    ap.add_argument("--finetune", type=int, default=300, help="steps of strata compress --finetune (0: skip)")
    ap.add_argument("--finetune-lr", type=float, default=None, help="its peak learning rate (default strata's)")
    ap.add_argument("--no-table", action="store_true", help="the --finetune figure only")
    ap.add_argument("--cost-only", action="store_true", help="the calibration cost (streamed against "
                    "from the start) only")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "strata-bench" / "compress_methods"))
    ap.add_argument("--smoke", action="store_true", help="a toy model on the start of the corpus, to test "
                    "that the script runs (the figures mean nothing; give --cache a temporary folder)")
    return ap


def main() -> None:
    args = parser().parse_args()
    configure(SMOKE if args.smoke else SIZES[args.size])
    name = NAME if args.corpus == "shakespeare" else f"{NAME}_{args.corpus}"
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    spec = cache / f"{name}.arch"
    spec.write_text(SPEC)
    train_ids, val = tokenize(cache, args.corpus, SMOKE_CHARS if args.smoke else None)
    select, held = heldout_halves(val)
    w = cache / f"{name}_{int(args.train_seconds)}s.safetensors"
    if not w.is_file():
        torch.manual_seed(0)
        model, steps = train(strata.api.compile(spec), train_ids, args.train_seconds,
                             val=None if (args.size, args.corpus) == ("1m", "shakespeare") else select)
        # (the cached 1 M Shakespeare weights predate the held-out pick)
        strata.api.save_weights(model, w)
        print(f"trained {steps} steps in {args.train_seconds:.0f} s -> {w}", flush=True)
    if args.train_only:
        return
    if args.cost_only:
        base = strata.api.compile(spec, weights=w)
        depth = sum(1 for n in base.strata_graph.nodes if n.endswith(".mlp.down"))
        calibration_cost(spec, w, windows(train_ids, args.calibration)[:, :CTX], depth)
        return
    if not args.no_table:
        table(spec, w, train_ids, held, cache, args)
    if args.finetune:
        recovery(spec, w, torch.cat([train_ids, val]), cache, args.finetune, args.finetune_lr,
                 windows(train_ids, args.calibration)[:, :CTX])


@torch.no_grad()
def outliers(model, ids, roles=("q", "gate")) -> float:
    """How far the largest input channel of the linears of `roles` (default the
    norms' readers, q/k/v and gate/up; ("down",) for SwiGLU's product) stands
    out: the largest max|x| over channels / the median channel's, the worst
    over the model (SmoothQuant's premise is a ratio of 10 and more)."""
    worst, hooks = 0.0, []

    def hook(mod, args, out):
        nonlocal worst
        m = args[0].abs().reshape(-1, args[0].shape[-1]).amax(0)
        worst = max(worst, float(m.max() / m.median()))
    for n, d in model.strata_graph.nodes(data=True):
        if d["attrs"].get("role") in roles:
            hooks.append(model.get_submodule(n).register_forward_hook(hook))
    model(ids)
    for h in hooks:
        h.remove()
    return worst


def table(spec, w, train_ids, batch, cache, args) -> None:
    """One row per method, measured on `batch` [n, CTX + 1] (the evaluation half)."""
    calib = windows(train_ids, args.calibration)[:, :CTX]
    base = strata.api.compile(spec, weights=w).eval()
    depth = sum(1 for n in base.strata_graph.nodes if n.endswith(".mlp.down"))
    print(f"model: {sum(p.numel() for p in base.parameters()):,} parameters", flush=True)
    with torch.no_grad():
        ref = base(batch[:8, :-1]).float()
    p0, _, ref_logp = scores(base, batch)
    float_bytes = file_bytes(base, cache / "float.safetensors")[0]
    x1 = batch[:1, :-1]
    words = [r for r in args.rows.split(",") if r]
    rows = [r for r in table_rows() if not words or any(wd in r[0] for wd in words)]
    strata.api.compile(spec, weights=w, passes=[rows[0][1]])  # warm-up: first-use allocations out of the peaks
    results = {}
    for label, p, plain in rows:
        with PeakRSS() as mem:  # CPU seconds of this process: the other sessions' load does not count
            t = time.process_time()
            m = strata.api.compile(spec, weights=w, passes=[p], calibration=calib if plain else None).eval()
            seconds = time.process_time() - t
        with torch.no_grad():
            s = sqnr(ref, m(batch[:8, :-1]))
            t = interleaved({"float": lambda: base(x1), "method": lambda m=m: m(x1)}, reps=3, inner=2, warmup=2)
        size, packed, fl = file_bytes(m, cache / "row.safetensors")
        ppl, kl, _ = scores(m, batch, ref_logp)
        results[label] = {"ppl": ppl, "kl": kl, "sqnr": s, "seconds": seconds, "mib": mem.mib,
                          "latency": t["method"] / t["float"], "bytes": size,
                          "layer_ratio": packed / fl if fl else None}
        del m
        print(f"  {label}: ppl {results[label]['ppl']:.3f} ({seconds:.1f} s, {mem.mib:.0f} MiB)", flush=True)
    print(f"\nfloat perplexity {p0:.3f} on {batch.shape[0]} windows of {CTX} tokens, {float_bytes:,} bytes; "
          f"calibration {calib.shape[0]} x {CTX} tokens; {args.threads} threads; {depth} layers; "
          f"largest activation channel / median: q, gate inputs {outliers(base, batch[:8, :-1]):.1f}, "
          f"down inputs {outliers(base, batch[:8, :-1], ('down',)):.1f}\n")
    print("| method | perplexity | change | increase vs plain | KL vs float, nats / token | KL vs plain | "
          "logits SQNR dB | file bytes | quantized layers' bytes vs float | compile CPU s / layer | peak MiB | "
          "latency vs float |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, _, plain in rows:
        r = results[label]
        inc = r["ppl"] / p0 - 1
        vs = ratio(inc, results[plain]["ppl"] / p0 - 1) if plain in results else "1 (plain)" if not plain else "-"
        lr = f"{r['layer_ratio']:.3f}" if r["layer_ratio"] is not None else "-"
        kl_vs = f"{r['kl'] / results[plain]['kl']:.2f}x" if plain in results else "1 (plain)" if not plain else "-"
        print(f"| {label} | {r['ppl']:.3f} | {100 * inc:+.2f}% | {vs} | {r['kl']:.5f} | {kl_vs} | {r['sqnr']:.1f} | "
              f"{r['bytes']:,} | {lr} | "
              f"{r['seconds'] / depth:.2f} | {r['mib']:.0f} | {r['latency']:.2f}x |")
    mixed_precision(spec, w, calib, batch, p0, ref_logp)
    calibration_cost(spec, w, calib, depth)


def calibration_cost(spec, w, calib, depth, reps=2):
    """Seconds per layer of the whole compile with GPTQ (int4, the first group
    size), calibration streamed (each block measured, then run once more
    compressed for the next block's inputs) against running the model from the
    embedding for every block (replay=False: the former, quadratic in depth),
    interleaved in this process; the best of `reps` each, in CPU seconds of
    this process (at 1 thread its work; wall time on the shared machine moves
    by more than the difference)."""
    import functools

    from strata.backends.torch.workflows import runner, stream

    p = f"quantize(int4_weight, group_size={GROUPS[0]}, method=gptq)"
    best = {True: math.inf, False: math.inf}
    for _ in range(reps):
        for replay in (True, False):
            runner.RUNNER.stream = functools.partial(stream.stream, replay=replay)
            try:
                t = time.process_time()
                strata.api.compile(spec, weights=w, passes=[p], calibration=calib)
                best[replay] = min(best[replay], time.process_time() - t)
            finally:
                del runner.RUNNER.stream  # back to the class's
    print(f"\ncalibration cost, {p}, {calib.shape[0]} x {calib.shape[1]} tokens, {depth} layers: "
          f"streamed {best[True] / depth:.2f} CPU s / layer, from the start for every block "
          f"{best[False] / depth:.2f} CPU s / layer ({best[False] / best[True]:.2f}x)", flush=True)


# budgets between uniform int4 (4.16 stored bits at group 128, 4.63 at 32) and int8 (8 + 32/in)
AUTO = ["quantize(auto, bits=4.5)", "quantize(auto, bits=5, group_size=32)", "quantize(auto, bits=6)"]


def mixed_precision(spec, w, calib, batch, p0, ref_logp):
    """quantize(auto, bits=B) beside the uniform schemes around it: the stored bits
    per weight each reaches, its perplexity change and KL from the float model's
    log-probabilities `ref_logp` (one table)."""
    rows = ([("int4 g128 rtn (uniform)", "quantize(int4_weight, group_size=128)"),
             ("int4 g32 rtn (uniform)", "quantize(int4_weight, group_size=32)")]
            + [(p.removeprefix("quantize(").removesuffix(")"), p) for p in AUTO]
            + [("int8 weight rtn (uniform)", "quantize(int8_weight)")])
    print("\n| quantize | stored bits / weight | perplexity | change | KL vs float | linears int4 / int8 / float | "
          "compile CPU s |")
    print("|---|---|---|---|---|---|---|")
    for label, p in rows:
        t = time.process_time()  # CPU seconds of this process, as the first table's
        m = strata.api.compile(spec, weights=w, passes=[p], calibration=calib).eval()
        seconds = time.process_time() - t
        g = m.strata_graph
        rec = g.graph["applied"][-1]["record"]
        auto = rec.get("auto")
        names = list(auto["layers"]) if auto else rec["linears"]
        weights = sum(math.prod(g.nodes[n]["params"]["weight"]) for n in names)
        bits = auto["achieved"] if auto else 8 * rec["bytes_after"] / weights  # the benchmark's linears have no bias
        schemes = [g.nodes[n]["attrs"].get("quant_scheme", "float") for n in names]
        split = " / ".join(str(schemes.count(s)) for s in ("int4_weight", "int8_weight", "float"))
        ppl, kl, _ = scores(m, batch, ref_logp)
        print(f"| {label} | {bits:.2f} | {ppl:.3f} | {100 * (ppl / p0 - 1):+.2f}% | {kl:.5f} | {split} | "
              f"{seconds:.1f} |", flush=True)


def recovery(spec, w, ids, cache, steps, lr=None, calibration=None):
    """30 % of the MLP neurons removed (chosen by weight norms, then with
    activation_aware=true on `calibration`), then `strata compress --finetune`:
    held-out perplexity (the last 10 % of the text) of the original, before and after."""
    import tempfile

    from safetensors.torch import save_file

    for aware in (False, True):
        p = f'prune(0.3, method=structured, on="mlp"{", activation_aware=true" if aware else ""})'
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            data = Path(tmp) / "ids.safetensors"
            save_file({"tokens": ids}, str(data))
            t = time.perf_counter()
            r = strata.api.compress(spec, Path(tmp) / "out", weights=w, passes=[p], finetune=steps, data=str(data),
                                    finetune_lr=lr, calibration=calibration if aware else None).report
        f = r["finetune"]
        o, b, a = (f[k]["perplexity"] for k in ("teacher", "before", "after"))
        print(f"\n{p} --finetune {steps} (lr {f['lr']:g}, {f['batch']['rows']} x {f['batch']['tokens']} tokens a step; "
              f"{time.perf_counter() - t:.0f} s; {f['held_out']['rows']} held-out rows of {f['held_out']['tokens']} "
              f"tokens): perplexity original {o:.3f}, pruned {b:.3f} ({100 * (b / o - 1):+.2f}%), after {steps} steps "
              f"{a:.3f} ({100 * (a / o - 1):+.2f}%)", flush=True)


if __name__ == "__main__":
    main()
