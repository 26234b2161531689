"""Running a `strata export --to onnx` folder with ONNX Runtime:
`strata generate OUT --runtime onnx`.  Greedy decoding with the cache: the
prompt through model.onnx (logits + present keys / values), then one token at a
time through decoder_with_past.onnx.  numpy in, numpy out; no torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from strata.errors import UsageError
from strata.io import open_regular, read_regular
from strata.train.export_onnx import DECODER, INFO, MODEL, TOKENIZER
from strata.train.tokenizer import load_tokenizer


class OnnxModel:
    """The sessions of an exported folder."""

    def __init__(self, folder: str | Path, threads: int | None = None):
        folder = Path(folder)
        if not (folder / INFO).is_file():
            raise UsageError(f"{folder}: not a strata ONNX export (no {INFO}); make one with "
                             f"`strata export SOURCE --to onnx -o {folder}`")
        try:
            self.info = json.loads(read_regular(folder / INFO, 1 << 20, "onnx.json"))
        except ValueError as e:
            raise UsageError(f"{folder / INFO}: unreadable ({e})") from None
        if not isinstance(self.info, dict) or self.info.get("format") != "strata-onnx":
            raise UsageError(f"{folder / INFO}: not a strata ONNX export")
        if not isinstance(self.info.get("causal"), bool) or not _count(self.info.get("layers", 0)) \
                or not (self.info.get("context") is None or _count(self.info["context"])):
            raise UsageError(f"{folder / INFO}: damaged ('causal' true or false, 'layers' and 'context' counts)")
        import onnxruntime as ort  # lazy: optional

        ort.set_default_logger_severity(3)  # its errors are ours to say, in one line
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        self.folder = folder
        self.prefill = _session(ort, folder / MODEL, opts)
        self.step = None
        self.layers = self.info.get("layers", 0)
        if self.info["causal"]:
            self.step = _session(ort, folder / DECODER, opts)
            want = ["input_ids", *(f"past.{i}.{kv}" for i in range(self.layers) for kv in "kv")]
            if [i.name for i in self.step.get_inputs()] != want:
                raise UsageError(f"{folder / DECODER}: its inputs are not the {self.layers} layers' keys and "
                                 f"values {INFO} names (files of two exports mixed?)")

    def _run(self, session, feeds: dict) -> list:
        try:
            return session.run(None, feeds)
        except Exception as e:  # ONNX Runtime's own errors (an id past the vocabulary, a swapped file)
            raise UsageError(f"{self.folder}: ONNX Runtime cannot run the export ({_first_line(e)})") from None

    def forward(self, ids: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """logits (B, T, vocab) and the present keys / values of ids (B, T); a
        one-token input runs as two (position 0 attends only to itself)."""
        one = ids.shape[1] == 1
        run = np.concatenate([ids, ids], 1) if one else ids
        logits, *present = self._run(self.prefill, {"input_ids": run.astype(np.int64)})
        if one:
            logits, present = logits[:, :1], [p[:, :, :1] for p in present]
        return logits, present

    def decode(self, ids: np.ndarray, past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        feeds = {"input_ids": ids.astype(np.int64)}
        feeds.update({f"past.{i}.{kv}": past[2 * i + j] for i in range(self.layers) for j, kv in enumerate("kv")})
        logits, *present = self._run(self.step, feeds)
        return logits, present

    def greedy(self, ids: np.ndarray, tokens: int) -> np.ndarray:
        """ids (B, T) followed by `tokens` greedy tokens, the cache carried along."""
        if self.step is None:
            raise UsageError(f"{self.folder}: the exported model has no LM head; it does not generate")
        ctx = self.info.get("context")
        if isinstance(ctx, int) and ids.shape[1] + tokens > ctx:
            raise UsageError(f"{ids.shape[1]} prompt + {tokens} new tokens is more than the model's "
                             f"{ctx} positions")
        logits, past = self.forward(ids)
        out = [ids]
        for i in range(tokens):
            nxt = logits[:, -1].argmax(-1)[:, None]
            out.append(nxt)
            if i + 1 < tokens:
                logits, past = self.decode(nxt, past)
        return np.concatenate(out, 1)


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2 ** 31


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _session(ort, path: Path, opts):
    """An ONNX Runtime session on `path`, a regular file (a FIFO would hang the
    runtime's own open); what the runtime cannot load is one line naming the file."""
    os.close(open_regular(path, "ONNX model"))
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # InvalidProtobuf, NoSuchFile (external data), Fail: the runtime's own types
        raise UsageError(f"{path}: ONNX Runtime cannot load it ({_first_line(e)})") from None


def generate_onnx(folder: str | Path, prompt: str, tokens: int) -> str:
    """`prompt` and the text greedy decoding adds (the folder's own tokenizer), as
    `strata generate` writes it."""
    folder = Path(folder)
    model = OnnxModel(folder)
    if model.step is None:  # before the tokenizer: a classifier's "vocabulary" is its classes
        raise UsageError(f"{folder}: the exported model has no LM head; it does not generate")
    if not (folder / TOKENIZER).is_file():
        raise UsageError(f"{folder}: no {TOKENIZER} (the export's source had no tokenizer)")
    tok = load_tokenizer(folder / TOKENIZER)
    vocab = model.prefill.get_outputs()[0].shape[-1]  # logits (batch, seq, vocab): a number when exported
    if isinstance(vocab, int) and tok.vocab_size > vocab:
        raise UsageError(f"{folder / TOKENIZER}: {tok.vocab_size:,} ids; the model's vocabulary holds "
                         f"{vocab:,} (is this the export's own tokenizer?)")
    ids = tok.encode(prompt)
    if len(ids) == 0:
        raise UsageError("the prompt is empty after tokenizing; give at least one character")
    seq = model.greedy(np.asarray(ids, dtype=np.int64)[None], tokens)
    return tok.decode(seq[0].tolist())
