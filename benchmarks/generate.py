"""Generation speed on CPU, side by side in one process.

Part 1, GPT-2 small (random weights; HF's GPT2LMHeadModel and its `import-hf`, so
the same weights), greedy, one 16-token prompt, 48 and 256 new tokens: strata
eager with the static cache (the imported spec as is, and with `passes {
fuse_qkv }` added), strata with its growing cache, strata with the compiled
one-token step, HF `generate` eager, and HF with a static cache and
torch.compile.  Every contender must give the same tokens as strata eager.

Part 2, speculative decoding: a 12-layer teacher and a 2-layer student trained
(briefly) on the built-in corpus, the student distilled from the teacher; the
teacher's greedy decoding against speculative decoding with the student as draft
(output checked identical), and with a poor draft (the student untrained).

Part 3 (`--part seed`), speculative decoding on the seed example's pair (an
encoder-decoder teacher and its distilled student, from `make seed`: out/seed/):
the teacher's greedy reversal of validation lines against the student drafting,
and against a poor draft (the student untrained: adaptive k stops drafting);
unless --no-compile, also both with their compiled steps.

    python benchmarks/generate.py [--threads 2] [--rounds 3] [--part gpt2|speculative|seed|all]

Prints median times over the rounds (the contenders take turns) and the ratios.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _smoke
import torch
from _gpt2 import random_gpt2
from _timing import interleaved

import strata.api


def gpt2(args) -> None:
    from transformers import GPT2LMHeadModel

    # the second: what a user adds for speed, q, k, v as one matmul (as HF's c_attn)
    hf, ours, fused = random_gpt2("passes { fuse_qkv }", smoke=args.smoke)
    prompt = torch.randint(0, 50257, (1, 16))
    kw = dict(do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(prompt))
    hf_compiled = None
    if not args.no_compile:
        hf_compiled = GPT2LMHeadModel(hf.config).eval()
        hf_compiled.load_state_dict(hf.state_dict())
        hf_compiled.generation_config.eos_token_id = None
        hf_compiled.forward = torch.compile(hf_compiled.forward, fullgraph=True)
    for new in args.new:
        runs = {"strata static": lambda: ours.generate(prompt, new),
                "strata fuse_qkv": lambda: fused.generate(prompt, new),
                "strata growing": lambda: ours.generate(prompt, new, static=False),
                "hf eager": lambda: hf.generate(prompt, max_new_tokens=new, **kw)}
        if not args.no_compile:
            runs["strata compiled"] = lambda: ours.generate(prompt, new, compile=True)
            runs["hf compiled"] = lambda: hf_compiled.generate(prompt, max_new_tokens=new,
                                                              cache_implementation="static", **kw)
        want = runs["strata static"]()
        for k, f in runs.items():  # the first call of a compiled one compiles: timed apart
            t = time.perf_counter()
            got = f()
            first = time.perf_counter() - t
            assert torch.equal(got, want), f"{k}: the tokens differ"
            if "compiled" in k:
                print(f"  {k}: first call (compiles) {first:.1f} s")
        t = interleaved(runs, reps=args.rounds, inner=1, warmup=1)
        print(f"GPT-2 small greedy, 1x16 prompt, {new} new tokens, {args.threads} threads, "
              f"median of {args.rounds} rounds")
        for k, v in t.items():
            print(f"  {k:16s} {v * 1e3:8.1f} ms  {new / v:6.1f} tokens/s")
        for ours_k, hf_k in (("strata static", "hf eager"), ("strata fuse_qkv", "hf eager"), ("strata compiled", "hf eager"),
                             ("strata compiled", "hf compiled"), ("strata growing", "hf eager")):
            if ours_k in t and hf_k in t:
                print(f"  ratio {ours_k} / {hf_k}: {t[ours_k] / t[hf_k]:.3f}")


TEACHER = """
model {name} {{
  vocab = 128
  ctx   = 256
  d     = 128
  heads = 4
  depth = {depth}
  block layer {{
    residual {{ layernorm; attention(heads, causal=true) }}
    residual {{ layernorm; mlp(4 * d) }}
  }}
  stack decoder(tokens) {{
    embedding(vocab, d) as wte
    position(learned, ctx) as wpe
    repeat(depth) layer as h
    layernorm as ln_f
    lm_head(tie=wte)
  }}
}}
passes {{ fuse_qkv{distill} }}
train {{
  tokenizer = char
  batch     = 8
  context   = 64
  optimizer = adamw(lr=2e-3, betas=(0.9, 0.99), weight_decay=0.1)
  schedule  = cosine(warmup=20, min_lr=2e-4)
  grad_clip = 1.0
}}
"""


def speculative(args) -> None:
    from strata.backends.torch.speculative import speculative_generate

    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        teacher_spec = os.path.join(d, "teacher.arch")
        with open(teacher_spec, "w") as f:
            f.write(TEACHER.format(name="teacher", depth=12, distill=""))
        teacher = strata.train(teacher_spec, out=os.path.join(d, "t"), steps=args.train_steps, progress=False)
        student_spec = os.path.join(d, "student.arch")
        with open(student_spec, "w") as f:
            distill = f'; distill("teacher.arch", weights="{teacher.path}")'
            f.write(TEACHER.format(name="student", depth=2, distill=distill))
        student = strata.train(student_spec, out=os.path.join(d, "s"), steps=args.train_steps, progress=False)
        print(f"trained a 12-layer teacher (val loss {teacher.val_loss:.3f}) and a 2-layer distilled student "
              f"(val loss {student.val_loss:.3f}) on the built-in corpus, {args.train_steps} steps each, in "
              f"{time.perf_counter() - t:.0f} s")
        tm, sm, tok = teacher.model, student.model, teacher.tokenizer
    prompt = torch.tensor(tok.encode("The ").tolist(), dtype=torch.long)[None]
    n = args.spec_tokens
    want = tm.generate(prompt, n)
    got, stats = speculative_generate(tm, sm, prompt, n, k=args.k)
    assert torch.equal(got, want), "speculative decoding changed the teacher's greedy output"
    poor = untrained(sm)
    poor_stats = speculative_generate(tm, poor, prompt, n, k=args.k)[1]
    runs = {"teacher greedy": lambda: tm.generate(prompt, n),
            "speculative": lambda: speculative_generate(tm, sm, prompt, n, k=args.k),
            "student greedy": lambda: sm.generate(prompt, n),
            "poor draft": lambda: speculative_generate(tm, poor, prompt, n, k=args.k)}
    t = interleaved(runs, reps=args.rounds, inner=1, warmup=1)
    print(f"Speculative decoding, greedy, prompt {prompt.shape[1]} tokens, {n} new tokens, k from {args.k} "
          f"(adaptive), {args.threads} threads, median of {args.rounds} rounds; output identical to the teacher's")
    for k, v in t.items():
        print(f"  {k:16s} {v * 1e3:8.1f} ms  {n / v:7.1f} tokens/s")
    print(f"  draft acceptance {stats.acceptance:.1%} ({stats.accepted} of {stats.proposed}), "
          f"{stats.rounds} teacher forwards for {n} tokens")
    print(f"  speed-up speculative / teacher: {t['teacher greedy'] / t['speculative']:.2f}x")
    print(f"  poor draft (the student untrained): acceptance {poor_stats.acceptance:.1%}, drafting stopped at "
          f"new token {poor_stats.stopped_drafting}; speed-up / teacher: {t['teacher greedy'] / t['poor draft']:.2f}x")


def untrained(model):
    """`model`'s architecture with fresh N(0, 0.02) weights (seed 0): a poor draft."""
    poor = copy.deepcopy(model)  # ties kept: deepcopy shares what the model shares
    torch.manual_seed(0)
    with torch.no_grad():
        for p in poor.parameters():
            p.normal_(0, 0.02) if p.dim() == 2 else p.zero_()
    return poor


def seed(args) -> None:
    from strata.backends.torch.speculative import speculative_generate
    from strata.train.run import Run
    from strata.train.objectives import Seq2Seq

    teacher, student = (Run.open(os.path.join(args.seed_runs, n)) for n in ("teacher", "student"))
    tm, sm, tok = teacher.model.eval(), student.model.eval(), teacher.tokenizer
    bos, eos = tok.special("[BOS]"), tok.special("[EOS]")
    records = Seq2Seq().builtin_examples()  # the validation split is the tail
    lines = [r["source"] for r in records[-200:] if 20 <= len(r["source"]) <= 60][: args.seed_lines]
    srcs = [torch.tensor([[*tok.encode(line), eos]]) for line in lines]
    start = torch.tensor([[bos]])
    n = max(s.shape[1] for s in srcs) + 2  # the reversal and its [EOS]
    stats = []
    for src in srcs:
        got, st = speculative_generate(tm, sm, start, n, k=args.k, src=src)
        assert torch.equal(got, tm.generate(src, start, n)), "speculative decoding changed the teacher's output"
        stats.append(st)
    poor = untrained(sm)  # so adaptive k should stop drafting
    poor_stats = [speculative_generate(tm, poor, start, n, k=args.k, src=src)[1] for src in srcs]
    runs = {"teacher greedy": lambda: [tm.generate(src, start, n) for src in srcs],
            "speculative": lambda: [speculative_generate(tm, sm, start, n, k=args.k, src=src) for src in srcs],
            "student greedy": lambda: [sm.generate(src, start, n) for src in srcs],
            "poor draft": lambda: [speculative_generate(tm, poor, start, n, k=args.k, src=src) for src in srcs]}
    if not args.no_compile:  # both read through their compiled steps (compiled here, before the clock)
        for src in srcs:
            assert torch.equal(speculative_generate(tm, sm, start, n, k=args.k, src=src, compile=True)[0],
                               tm.generate(src, start, n, compile=True)), "compiled: the teacher's output changed"
        runs["teacher compiled"] = lambda: [tm.generate(src, start, n, compile=True) for src in srcs]
        runs["spec. compiled"] = lambda: [speculative_generate(tm, sm, start, n, k=args.k, src=src, compile=True)
                                          for src in srcs]
    t = interleaved(runs, reps=args.rounds, inner=1, warmup=1)
    total = n * len(srcs)
    acc = sum(s.accepted for s in stats) / max(sum(s.proposed for s in stats), 1)
    poor_acc = sum(s.accepted for s in poor_stats) / max(sum(s.proposed for s in poor_stats), 1)
    stopped = sum(s.stopped_drafting is not None for s in poor_stats)
    print(f"Speculative decoding on the seed pair ({args.seed_runs}: teacher, student), greedy, "
          f"{len(srcs)} validation lines, {n} target tokens each, {args.threads} threads, median of "
          f"{args.rounds} rounds; output identical to the teacher's")
    for k, v in t.items():
        print(f"  {k:16s} {v * 1e3:8.1f} ms  {total / v:7.1f} tokens/s")
    print(f"  draft acceptance {acc:.1%}; speed-up speculative / teacher: "
          f"{t['teacher greedy'] / t['speculative']:.2f}x; student / teacher time: "
          f"{t['student greedy'] / t['teacher greedy']:.2f}")
    print(f"  poor draft (the student untrained): acceptance {poor_acc:.1%}, drafting stopped in {stopped} of "
          f"{len(srcs)} lines; speed-up / teacher: {t['teacher greedy'] / t['poor draft']:.2f}x")
    if "teacher compiled" in t:
        print(f"  compiled: speed-up speculative / teacher: {t['teacher compiled'] / t['spec. compiled']:.2f}x")


def parser() -> argparse.ArgumentParser:
    """The command line, apart from main so that a test can check the documented commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new", type=int, nargs="+", default=[48, 256])
    ap.add_argument("--part", choices=["gpt2", "speculative", "seed", "all"], default="all")
    ap.add_argument("--seed-runs", default="out/seed", help="the folder `make seed` wrote (--part seed)")
    ap.add_argument("--seed-lines", type=int, default=20, help="validation lines to reverse (--part seed)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile contenders")
    ap.add_argument("--train-steps", type=int, default=200, help="training steps of teacher and student")
    ap.add_argument("--spec-tokens", type=int, default=200, help="new tokens for speculative decoding")
    ap.add_argument("--k", type=int, default=4, help="draft tokens a round to start with")
    ap.add_argument("--smoke", action="store_true", help=_smoke.HELP)
    return ap


def main() -> None:
    args = parser().parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each figure as it comes (runs take minutes)
    torch.set_num_threads(args.threads)
    if args.part in ("speculative", "all"):
        speculative(args)
    if args.part in ("gpt2", "all"):
        gpt2(args)
    if args.part in ("seed", "all") and os.path.isdir(os.path.join(args.seed_runs, "teacher")):
        seed(args)


if __name__ == "__main__":
    main()
