"""`strata compress ... --finetune STEPS [--data D]`: recover what compression
lost by distilling the uncompressed model into the compressed one, in the same
step that writes it.

    teacher   the original model with its original weights, frozen, eval mode
    student   the compressed model, float weights (before the runtime rounds
              the quantized linears), trained STEPS AdamW steps (peak lr
              LR unless given) on KL(softmax(teacher) || softmax(student)) per
              next-token position, each step 2,048 tokens (at least 8 rows) in
              rows of the length the source run trained at (its `context`),
              else the model's ctx, at most 256
    held      pruned weights stay zero (every exact zero in a linear's weight:
              its mask is re-applied after each step and its gradient zeroed);
              shrunk dimensions and low-rank factors are the student's shapes;
              quantized linears keep their weights (GPTQ's are on the grid),
              their biases and everything else train

Data: D (a text file or folder read with the run's tokenizer, or token ids
as .safetensors); without D, the text the source run trained on, else the
built-in corpus.  An encoder-decoder run (seq2seq) distills over the
decoder's positions on its own (source, target) examples
(strata.train.recover_seq2seq).  The last 10 % of the ids are held out: the next-token loss
and perplexity on them are reported before and after, with the teacher's.

In code (the CLI builds the same from its flags)::

    tune = finetuner(300, data="input.txt", tokenizer="run/tokenizer.json")
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from strata.backends.torch.workflows.calibration import model_inputs, read_token_ids, row_length, trained_context
from strata.dsl.registry import check_steps
from strata.errors import UsageError
from strata.io import read_spread, spread_text
from strata.passes.quantize import Quantize
from strata.train.data import text_source
from strata.train.objectives import CausalLM, ExampleObjective, Seq2Seq, objective_class
from strata.train.objectives.distillation import kd_sum
from strata.train.recover_loop import distill_steps
from strata.train.recover_seq2seq import seq2seq_tune
from strata.train.run_folder import RunFolder, is_run, run_data
from strata.train.tokenizer import load_tokenizer
from strata.train.unseen_text import check_text

__all__ = ["calibration_ids", "data_calibration_ids", "finetuner"]

MAX_CHARS = 16 << 20   # text read for fine-tuning, at most
BATCH = 8              # rows per step, at least
STEP_TOKENS = 2048     # tokens per step: rows of a short context are more rows (2048 // length)
LR = 3e-4              # AdamW's peak learning rate, by default
MAX_LENGTH = 256       # tokens per row, at most
EVAL_ROWS = 32         # held-out rows the before / after figures are measured on
PIECES = 128           # calibration text longer than asked for is read in this many spread pieces
CALIBRATION_INSTEAD = "give --calibration text in the characters the model trained on"
FINETUNE_INSTEAD = "give --data text in the characters the model trained on"


def _run_data(source_run) -> str | None:
    """The file or folder a run trained on, where it is now (`run_data`: relative
    to the run folder, `path`, when the run recorded it so; else its absolute path);
    None for the built-in corpus."""
    info = (source_run or {}).get("data") or {}
    return run_data(info, (source_run or {}).get("path"), "the data the weights were trained on",
                    "give --data (fine-tuning) or --calibration FILE")


def _text(data, source_run) -> str:
    """The first MAX_CHARS characters of the data: only they are read (a file or
    folder past them is never opened, nor hashed: nothing here keys on its content)."""
    if data is None:
        data = _run_data(source_run)
    parts, size = [], 0
    for t in text_source(data).texts():
        parts.append(t[: MAX_CHARS - size])
        size += len(parts[-1])
        if size >= MAX_CHARS:
            break
    return "".join(parts)


def calibration_ids(src, tokenizer, max_chars: int) -> torch.Tensor:
    """Token ids (1-D) of calibration text: a text file, "builtin" (the built-in
    corpus) or a run folder (the text it trained on), read with the run's
    tokenizer: all of it when it fits in `max_chars` characters, else pieces
    spread over all of it (strata.io.spread_text), so that a large file or corpus is
    sampled from start to end and not only at its beginning."""
    if Path(src).is_file():
        if tokenizer is None:
            raise UsageError(f"{src}: text calibration needs the tokenizer the model was trained with "
                             "(--tokenizer RUN/tokenizer.json), or token ids as .safetensors")
        text = read_spread(src, max_chars, PIECES, "calibration file")  # bounded before it is tokenized
        if not text.strip():
            raise UsageError(f"{src}: no text to calibrate on")
        tok = load_tokenizer(tokenizer)
        check_text(tok, [text], str(src), CALIBRATION_INSTEAD)
        return torch.as_tensor(tok.encode(text), dtype=torch.long)
    if tokenizer is None:
        raise UsageError(f"--calibration {src}: text is read with the tokenizer the model was trained "
                         "with: give --tokenizer RUN/tokenizer.json")
    if str(src) == "builtin":
        return data_calibration_ids({"builtin": True}, tokenizer, max_chars, said="the built-in corpus")
    if not is_run(src):
        raise UsageError(f"{src}: a folder, and not a strata train run: --calibration takes a run "
                         "folder (its data), a file, or builtin")
    run = RunFolder.open(src)
    return data_calibration_ids(run.info.get("data") or {}, tokenizer, max_chars, run.objective, src,
                                said=f"{src}'s data")


def data_calibration_ids(data: dict, tokenizer, max_chars: int, objective=None, run=None,
                         said: str | None = None) -> torch.Tensor:
    """calibration_ids of the data a run trained on, as its run.json's "data"
    records it, found relative to the run folder `run` first (run_data): text (a
    file, a folder of them, or the built-in corpus), or for an objective that
    trains on examples (seq2seq, classify: JSON Lines or its built-in task) the
    examples' texts, each tokenized alone, spread over all of them.
    said: the data's name when the tokenizer is not the one fitted on it
    (--calibration builtin, or another run): what it never saw is refused or said."""
    tok = load_tokenizer(tokenizer)
    source = {"data": data, "path": str(run) if run is not None else None}
    if isinstance(objective, ExampleObjective):
        texts, _, _ = objective.read_data(None if data.get("builtin") else _run_data(source))
        every = list(texts())
        size = sum(map(len, every))
        step = max(1, math.ceil(size / max_chars))  # every step-th text, when all of them are too many
        if said is not None:
            check_text(tok, every[::step], said, CALIBRATION_INSTEAD)
        ids = [tok.encode(t) for t in every[::step]]
        return torch.as_tensor(np.concatenate(ids) if ids else np.zeros(0, np.int64), dtype=torch.long)
    text = spread_text(_text(None, source), max_chars, PIECES)
    if said is not None:
        check_text(tok, [text], said, CALIBRATION_INSTEAD)
    return torch.as_tensor(tok.encode(text), dtype=torch.long)


def _token_ids(data, tokenizer, source_run, T: int) -> torch.Tensor:
    if data is not None and str(data).endswith(".safetensors"):
        # bounded as text is (MAX_CHARS): rows of T spread over a larger file, the rest never read
        return read_token_ids(Path(data), T, MAX_CHARS // T).flatten().long()
    if tokenizer is None:
        raise UsageError("--finetune reads text with the tokenizer the model was trained with: give "
                         "--tokenizer RUN/tokenizer.json (or a run folder), or --data as token ids (.safetensors)")
    tok, text = load_tokenizer(tokenizer), _text(data, source_run)
    if data is not None:  # the run's own data is what its tokenizer was fitted on
        check_text(tok, [text], str(data), FINETUNE_INSTEAD)
    return torch.as_tensor(tok.encode(text), dtype=torch.long)


def _logits(model, g, x):
    out = model(*model_inputs(g, x))
    return out if isinstance(out, torch.Tensor) else (next(iter(out.values())) if isinstance(out, dict) else out[0])


def _held(student, g) -> tuple[dict, list]:
    """({param: keep mask} of the linears' pruned weights, the quantized linears' weights)."""
    masks, frozen = {}, []
    quantized = {n for n, d in g.nodes(data=True) if Quantize.scheme_of(d.attrs)}
    for name, mod in student.named_modules():
        w = getattr(mod, "weight", None)
        if not isinstance(mod, torch.nn.Linear) or w is None:
            continue
        if name in quantized:
            frozen.append(w)
        elif bool((w == 0).any()):
            masks[w] = w != 0
    return masks, frozen


@torch.no_grad()
def _quality(model, g, rows, teacher=None, g0=None) -> dict:
    """Next-token loss and perplexity on the held-out rows, and (with the
    teacher) the mean KL(teacher || model) per position: what distillation lowers."""
    model.eval()
    total, kl = 0.0, 0.0
    for chunk in rows.split(BATCH):
        logits = _logits(model, g, chunk[:, :-1])
        flat = logits.reshape(-1, logits.shape[-1]).float()
        total += float(F.cross_entropy(flat, chunk[:, 1:].reshape(-1), reduction="sum"))
        if teacher is not None:
            t = _logits(teacher, g0, chunk[:, :-1])
            kl += float(kd_sum(flat, t.reshape(-1, t.shape[-1]), 1.0))
    n = rows.shape[0] * (rows.shape[1] - 1)
    out = {"loss": round(total / n, 5), "perplexity": round(math.exp(min(total / n, 50)), 4)}
    if teacher is not None:
        out["kl_to_original"] = round(kl / n, 6)
    return out


def finetuner(steps: int, *, data=None, tokenizer=None, source_run: dict | None = None, lr: float = LR,
              seed: int = 0):
    """A `tune(student, teacher, g0, g)` for strata.backends.torch.workflows.compress.compress: it
    trains `student` in place and returns the report's "finetune" entry."""
    check_steps("--finetune", steps)
    if not (isinstance(lr, (int, float)) and 0 < lr <= 1):
        raise UsageError(f"--finetune-lr {lr}: give a learning rate in (0, 1]")
    record = (source_run or {}).get("objective") or {}
    name = record.get("name")
    if name is not None and objective_class(name) not in (CausalLM, Seq2Seq):
        raise UsageError(f"--finetune distills next-token logits (causal_lm) or a decoder's over an encoder's "
                         f"source (seq2seq); this run's objective is {name}")

    def tune(student, teacher, g0, g) -> dict:
        if name is not None and objective_class(name) is Seq2Seq:  # the run's own (source, target) examples
            length = min(row_length(g0, trained_context(source_run)), MAX_LENGTH)
            return seq2seq_tune(Seq2Seq.from_json(record), steps, student, teacher, g, T=length, data=data,
                                tokenizer=tokenizer, source_run=source_run, lr=lr, seed=seed,
                                rows=max(BATCH, STEP_TOKENS // length), eval_rows=EVAL_ROWS, held=_held)
        T = min(row_length(g0, trained_context(source_run)), MAX_LENGTH) + 1
        ids = _token_ids(data, tokenizer, source_run, T)
        vocab = _logits(teacher, g0, ids[None, :2]).shape[-1]
        if int(ids.max()) >= vocab:
            raise UsageError(f"--finetune data has token ids up to {int(ids.max())}; the model's vocabulary "
                             f"has {vocab}: tokenize with the model's own tokenizer")
        split = int(0.9 * len(ids))
        if split < T + 1 or len(ids) - split < T:
            raise UsageError(f"--finetune data: {len(ids):,} tokens; need at least {10 * (T + 1):,}")
        train, held = ids[:split], ids[split:]
        starts = torch.linspace(0, len(held) - T, min(EVAL_ROWS, max(1, (len(held) - T) // T + 1))).long()
        rows = torch.stack([held[s:s + T] for s in starts.tolist()])
        before = _quality(student, g, rows, teacher, g0)
        per_step = max(BATCH, STEP_TOKENS // (T - 1))
        masks, frozen = _held(student, g)
        gen = torch.Generator().manual_seed(seed)

        def loss_of(step):
            i = torch.randint(len(train) - T, (per_step,), generator=gen)
            x = torch.stack([train[j:j + T - 1] for j in i.tolist()])
            with torch.no_grad():
                t = _logits(teacher, g0, x)
            s = _logits(student, g, x)
            return kd_sum(s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1]), 1.0) / x.numel()
        out = distill_steps(student, teacher, masks, frozen, steps, lr, loss_of)
        return {**out, "batch": {"rows": per_step, "tokens": T - 1},
                "held_out": {"rows": int(rows.shape[0]), "tokens": int(rows.shape[1] - 1)},
                "teacher": _quality(teacher, g0, rows), "before": before, "after": _quality(student, g, rows, teacher, g0)}

    return tune
