"""Whole training loop, steps/s: `strata train` against a hand-written
nanoGPT-style loop (nanoGPT's train.py: memmap get_batch, AdamW with decay on
matrices, warmup + cosine, grad clipping, logging) on the same model
(specs/tiny_shakespeare.arch vs benchmarks/handwritten_gpt.py), same data,
same settings, taking turns in one process.

    python benchmarks/train_loop.py [--data PATH] [--steps 150] [--rounds 3] [--threads 2]

Steps/s is counted inside each loop from its first to its last step (after 5
warm-up steps): data, forward, backward, optimizer step, logging and, for
strata, metrics.jsonl and the progress output; set-up, the final evaluation and
checkpoint are outside it.  Prints the median of the rounds and the ratio
strata / hand-written (target: >= 1.0).  Without --data it uses Tiny
Shakespeare from ../shared/data when present, else strata's built-in corpus.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import torch
from handwritten_gpt import GPT, GPTConfig

import strata
import strata.train
from strata.compiler import build_file

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "tiny_shakespeare.arch"
WARMUP_STEPS = 5


def shakespeare() -> Path | None:
    for p in (os.environ.get("STRATA_SHAKESPEARE"), ROOT / ".." / "shared" / "data" / "tinyshakespeare.txt",
              "/work/shared/data/tinyshakespeare.txt"):
        if p and Path(p).is_file():
            return Path(p)
    return None


# nanoGPT's shakespeare_char settings for a CPU; spec_recipe() reads the spec's own.
NANOGPT = {"lr": 1e-3, "min_lr": 1e-4, "warmup": 100, "betas": (0.9, 0.99), "weight_decay": 0.1}


def spec_recipe() -> dict:
    """The spec's train section as nanogpt_loop's keywords, so that both loops
    train with the same recipe."""
    train = build_file(SPEC).graph["train"]
    opt, sched = train["optimizer"], train["schedule"]
    return {"lr": opt["lr"], "min_lr": sched["min_lr"], "warmup": sched["warmup"],
            "betas": tuple(opt["betas"]), "weight_decay": opt["weight_decay"]}


def nanogpt_loop(train_bin: Path, steps: int, vocab: int, *, batch=12, block=64, lr=1e-3, min_lr=1e-4,
                 warmup=100, betas=(0.9, 0.99), weight_decay=0.1, seed=0, val_bin: Path | None = None,
                 eval_iters=200, model: dict | None = None) -> dict:
    """nanoGPT's train.py, CPU path (no DDP, no autocast, no compile), on the
    hand-written model (GPTConfig's defaults, or `model`'s keywords): returns
    per-step end times, losses and the final val loss."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=block, **(model or {})))
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=betas)

    def get_batch(path):
        data = np.memmap(path, dtype=np.uint16, mode="r")  # nanoGPT re-opens it every batch
        ix = torch.randint(len(data) - block, (batch,))
        x = torch.stack([torch.from_numpy(data[i:i + block].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block].astype(np.int64)) for i in ix])
        return x, y

    def get_lr(it):
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        ratio = (it - warmup) / max(steps - 1 - warmup, 1)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * min(ratio, 1.0))) * (lr - min_lr)

    times, losses = [], []
    x, y = get_batch(train_bin)
    for it in range(steps):
        for g in opt.param_groups:
            g["lr"] = get_lr(it)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        x, y = get_batch(train_bin)  # prefetch, as nanoGPT does
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())   # log_interval = 1, as nanoGPT's CPU recipe
        times.append(time.perf_counter())
    val = None
    if val_bin is not None:
        model.eval()
        with torch.no_grad():
            val = statistics.fmean(
                torch.nn.functional.cross_entropy(model(xv).view(-1, vocab), yv.view(-1)).item()
                for xv, yv in (get_batch(val_bin) for _ in range(eval_iters)))
    return {"times": times, "losses": losses, "val": val}


def steps_per_s(times: list[float]) -> float:
    t = times[WARMUP_STEPS:]
    return (len(t) - 1) / (t[-1] - t[0])


def char_bins(text_path: Path | None, tmp: Path) -> tuple[Path, Path, int]:
    """nanoGPT's prepare.py for shakespeare_char: sorted characters, 90 / 10 split."""
    from strata.train.data import builtin_text

    text = text_path.read_text() if text_path else builtin_text()
    chars = sorted(set(text))
    if len(chars) > 65:  # the spec's vocabulary: keep the most frequent characters, as strata does
        from strata.train.tokenizer import CharTokenizer

        tok = CharTokenizer.fit([text], [], 65)
        ids = tok.encode(text)
    else:
        stoi = {c: i for i, c in enumerate(chars)}
        ids = np.array([stoi[c] for c in text])
    n = int(len(ids) * 0.9)
    ids[:n].astype(np.uint16).tofile(tmp / "train.bin")
    ids[n:].astype(np.uint16).tofile(tmp / "val.bin")
    return tmp / "train.bin", tmp / "val.bin", 65


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    return ap


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    data = args.data or shakespeare()
    tmp = Path(tempfile.mkdtemp(prefix="strata-bench-"))
    train_bin, _, vocab = char_bins(data, tmp)
    rates = {"strata": [], "handwritten": []}
    for r in range(args.rounds):
        order = ["handwritten", "strata"] if r % 2 == 0 else ["strata", "handwritten"]
        for who in order:
            if who == "handwritten":
                times = nanogpt_loop(train_bin, args.steps, vocab, **spec_recipe())["times"]
            else:
                run = strata.train(str(SPEC), data=str(data) if data else None, steps=args.steps,
                                   eval_every=args.steps, checkpoint_every=args.steps,
                                   out=tmp / "run", overwrite=True, progress=False)
                times = [m["time"] for m in run.metrics if "train_loss" in m]
            rates[who].append(steps_per_s(times))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"whole training loop, tiny_shakespeare (B=12, T=64), {args.steps} steps x {args.rounds} rounds, "
          f"{args.threads} threads, data: {data or 'built-in corpus'}")
    for k, v in rates.items():
        print(f"  {k:12s} {med[k]:6.2f} steps/s   (rounds: {', '.join(f'{x:.2f}' for x in v)})")
    print(f"  ratio strata / handwritten (steps/s): {med['strata'] / med['handwritten']:.3f}")


if __name__ == "__main__":
    main()
