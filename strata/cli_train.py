"""The commands that make and use trained weights — `strata train`, `strata
generate`, `strata eval` — and the guard every weights-reading command runs
under.  Part of the command line (strata/cli.py registers them); thin, calling
the public API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from pathlib import Path

import strata
from strata.dsl.registry import check_steps
from strata.errors import EXIT_OK, EXIT_SPEC, EXIT_USAGE, SpecError, TrainingError, UsageError, visible

DEFAULT_TEMPERATURE = 0.8  # generate's sampling when --temperature is not given (Run.generate's default)

__all__ = ["add_spec", "add_train_commands", "out_of_memory", "weights_errors"]


def add_spec(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="a .arch or .yaml spec file")
    p.add_argument("--model", help="which model of the file (default: the last one)")


def weights_errors():
    """Weights that do not fit (or are not safetensors) are the user's to fix: exit 2."""
    from strata.backends.torch.weights_file import WeightsError  # lazy: torch

    @contextlib.contextmanager
    def guard():
        try:
            yield
        except WeightsError as e:
            raise UsageError(str(e)) from None
    return guard()


def out_of_memory(e: BaseException, command: str | None = None) -> str | None:
    """The one-line error for torch's OutOfMemoryError (a RuntimeError: the
    device's memory is too small for what `command` asked of it, not a bug in
    strata), else None.

        >>> import torch
        >>> e = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 1 has ...")
        >>> out_of_memory(e, "eval")
        'out of memory on cuda:1 (tried to allocate 2.00 GiB); try a smaller batch, context or model (compressed weights), or the CPU'
    """
    torch = sys.modules.get("torch")  # not imported here: a command that never loaded torch holds no device memory
    if torch is None or not isinstance(e, getattr(torch, "OutOfMemoryError", ())):
        return None
    text = str(e)
    device = "mps" if text.startswith("MPS") else "xpu" if text.startswith("XPU") else "cuda"
    if gpu := re.search(r"\bGPU (\d+)", text):
        device += f":{gpu[1]}"
    asked = re.search(r"Tried to allocate ([\d.]+ ?[KMGT]?i?B)", text)
    hint = ("a smaller batch or context (--set batch=N, with --set accumulate=K to keep the batch; "
            "--set context=N), or --device cpu") if command == "train" else \
        "a smaller batch, context or model (compressed weights), or the CPU"
    return f"out of memory on {device}" + (f" (tried to allocate {asked[1]})" if asked else "") + f"; try {hint}"


def _cmd_train(args) -> int:
    flags = {"data": args.data, "steps": args.steps, "seed": args.seed,
             "checkpoint_every": args.checkpoint_every, "eval_every": args.eval_every}
    for flag in ("steps", "checkpoint_every", "eval_every"):  # before the data is read or a step spent
        if flags[flag] is not None:
            check_steps("--" + flag.replace("_", "-"), flags[flag])
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 speaks for all
    from strata.train.rank_stops import alone  # lazy: torch
    from strata.train.start import AlreadyPast  # lazy: torch

    try:
        with weights_errors():
            run = strata.train.train(
                Path(args.spec), model=args.model, out=args.out, resume=args.resume,
                overwrite=args.overwrite, init=args.init, objective=args.objective, freeze=args.freeze,
                teacher_weights=args.teacher_weights, device=args.device, compile=args.compile,
                fsdp=args.fsdp, sets=args.set or (), progress=not args.quiet,
                **{k: v for k, v in flags.items() if v is not None})
    except AlreadyPast as e:  # --resume --steps below the run's step: nothing to do, said once
        if main_rank:
            print(e)
        return EXIT_OK
    except (SpecError, TrainingError) as e:
        if main_rank or alone(e):  # another rank's own error, which rank 0 did not hit: said there
            raise
        return EXIT_SPEC
    except UsageError as e:
        if main_rank or alone(e):
            raise
        return EXIT_USAGE
    if main_rank:
        val = f", val loss {run.val_loss:.4f}" if run.val_loss is not None else ""
        print(f"{run.path}: step {run.step}{val}; weights {run.weights()}")
    return EXIT_OK


def _cmd_generate(args) -> int:
    from strata.train.generate import GenerationStats, check_sampling  # lazy: torch
    from strata.train.run import open_source  # lazy: torch

    if args.temperature is None:  # ONNX Runtime decodes greedily: unset is 0 there, not a refusal
        args.temperature = 0.0 if args.runtime == "onnx" else DEFAULT_TEMPERATURE
    check_sampling(args.tokens, args.temperature, args.top_k, args.seed)  # before loading anything
    if args.runtime == "onnx":
        return _generate_onnx(args)
    stats = GenerationStats()
    with weights_errors():
        source = open_source(args.run, args.weights, args.model, calibration=args.calibration)
        text = source.generate(args.prompt, tokens=args.tokens, temperature=args.temperature,
                               top_k=args.top_k, seed=args.seed, compile=args.compile,
                               draft=args.draft, speculate=args.speculate, k=args.k, stats=stats,
                               teacher_weights=args.teacher_weights)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if stats.unseen:  # what the model did not read, even with -q
        print(visible(f"strata: warning: {stats.unseen.said_of('the prompt')}"), file=sys.stderr)
    if not args.quiet:  # the numbers on stderr: stdout stays the text
        for line in (source.calibrated, *source.also_calibrated):  # the draft's or teacher's too
            if line:
                print(visible(f"strata: {line}"), file=sys.stderr)  # names a run.json gave
        print(f"strata: {stats.line()}", file=sys.stderr)
    return EXIT_OK


def _generate_onnx(args) -> int:
    """`--runtime onnx`: SOURCE is a `strata export --to onnx` folder; greedy only."""
    from strata.train.onnx_runtime import generate_onnx  # lazy: torch

    if args.temperature != 0 or args.top_k is not None:
        raise UsageError("--runtime onnx decodes greedily: give --temperature 0 (and no --top-k)")
    if args.compile or args.draft or args.speculate or args.weights or args.calibration or args.teacher_weights:
        raise UsageError("--runtime onnx runs the exported folder as it is: no --weights, --compile, "
                         "--draft, --speculate, --teacher-weights or --calibration")
    text = generate_onnx(args.run, args.prompt, args.tokens)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


def _cmd_eval(args) -> int:
    from strata.train.run import open_source  # lazy: torch
    from strata.train.tokenizer import Unseen  # lazy: startup

    if args.max_batches is not None and args.max_batches < 1:
        raise UsageError(f"--max-batches should be at least 1 (got {args.max_batches})")
    with weights_errors():
        source = open_source(args.run, args.weights, args.model, calibration=args.calibration)
        r = source.evaluate(args.data, which=args.checkpoint, max_batches=args.max_batches)
    if source.calibrated:  # on stderr: stdout stays the figures (--json)
        print(visible(f"strata: {source.calibrated}"), file=sys.stderr)  # names a run.json gave
    if "unseen" in r:  # seq2seq's and classify's tokenizers read them as [UNK]: scored, and said
        said = Unseen(r["unseen"]["characters"], r["unseen"]["distinct"]).said_of(r["data"])
        print(visible(f"strata: warning: {said}"), file=sys.stderr)
    line = f"{r['data']}: loss {r['loss']:.4f}"
    if "perplexity" in r:
        line += f", perplexity {r['perplexity']:.2f}"
    if source.objective.accuracy:
        line += f", accuracy {r['accuracy']:.2%}"
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(visible(f"{line} ({r['count']:,} {'example' if 'perplexity' not in r else 'prediction'}{'' if r['count'] == 1 else 's'} "
              f"in {r['seconds']:.2f} s)"))
    return EXIT_OK


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="SOURCE", help="a run folder, a strata compress output folder, or a "
                   "spec file with --weights")
    p.add_argument("--weights", help="with a spec file: its weights (a run folder, a compress output "
                   "folder or a .safetensors file)")
    p.add_argument("--model", help="with a spec file: which model of it (default: the last one)")
    p.add_argument("--calibration", help="for a spec whose passes read activations (GPTQ, AWQ, "
                   "SmoothQuant, int8_static, Wanda, SparseGPT): calibrate on this instead of the data "
                   "the run trained on: token ids (.safetensors), text (read with the run's tokenizer), "
                   "a run folder (its data) or builtin")


def add_train_commands(sub) -> None:
    """train, generate and eval, on `sub` (the parser's subcommands)."""
    p = sub.add_parser("train", help="train a spec as its train { } section says")
    add_spec(p)
    p.add_argument("--data", help="a text file, a folder of them, or JSON Lines "
                   "(default: the spec's data, else a built-in corpus)")
    p.add_argument("--steps", type=int, help="optimizer steps")
    p.add_argument("--out", help="the run folder (default: runs/MODEL)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint (or start it)")
    p.add_argument("--overwrite", action="store_true", help="start the run in --out over")
    p.add_argument("--init", metavar="WEIGHTS", help="start from these weights (a .safetensors file "
                   "or a run folder) where names fit, e.g. to fine-tune a pretrained encoder; "
                   "a weight of another shape is refused")
    p.add_argument("--freeze", action="append", metavar="SELECTOR",
                   help="do not train these modules (a path glob like encoder.layer.* or a kind)")
    p.add_argument("--objective", help="one the model's heads allow (default: the main output's; "
                   "docs/training.md lists them)")
    p.add_argument("--teacher-weights", metavar="WEIGHTS",
                   help="the distillation teacher's weights (file or run folder)")
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", type=int, metavar="N")
    p.add_argument("--eval-every", type=int, metavar="N")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a train setting, written as in the spec: --set batch=16 "
                        "--set 'optimizer=adamw(lr=3e-4)'")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when there is one)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--fsdp", action="store_true", help="under torchrun: shard with FSDP2 instead of DDP")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("generate", help="write text with a trained run's model")
    _add_source(p)
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--tokens", type=int, default=200, help="how many tokens to add (past the model's "
                   "positions, each re-reads the last ctx tokens)")
    p.add_argument("--temperature", type=float, help="0 picks the likeliest token (default: 0.8; with "
                   "--runtime onnx, which decodes greedily, 0)")
    p.add_argument("--top-k", type=int, help="sample from the k likeliest tokens")
    p.add_argument("--seed", type=int)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the one-token decoding step (compiles once, then faster)")
    p.add_argument("--draft", metavar="RUN", help="speculative decoding: RUN (a smaller model with the "
                   "same tokenizer: a run folder or a compress output) drafts tokens, this run's model "
                   "verifies them")
    p.add_argument("--speculate", action="store_true", help="speculative decoding with the pair the spec "
                   "declares: this run (a distill student) drafts, its teacher verifies")
    p.add_argument("--teacher-weights", metavar="WEIGHTS", help="with --speculate: the teacher's weights "
                   "(file or run folder; default: those the run trained with)")
    p.add_argument("--k", type=int, default=4, help="draft tokens a round to start with (1..8; it adapts)")
    p.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                   help="onnx: SOURCE is a `strata export --to onnx` folder, run by ONNX Runtime (greedy)")
    p.add_argument("-q", "--quiet", action="store_true", help="no timing line on stderr")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("eval", help="validation loss and perplexity of a trained run")
    _add_source(p)
    p.add_argument("--data", help="evaluate on all of this file instead of the run's validation split")
    p.add_argument("--checkpoint", choices=["final", "latest", "best"], default="final")
    p.add_argument("--max-batches", type=int, metavar="N", help="stop after N batches")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_eval)
