"""Calibration data for the passes that look at activations (Wanda pruning,
activation-aware low rank): a few batches of token ids run through the model
as it stands before the pass, with the inputs of chosen linears summed per
feature.

    ids: a LongTensor (N, T); a .safetensors file holding one integer tensor
    (N, T) (key `tokens` or `input_ids` when it holds several); or a text file
    with the tokenizer the model was trained with (`tokenizer=`, a strata train
    run's tokenizer.json).  At most MAX_ROWS rows of at most the model's
    context are used, spread evenly over the rows given.

In code::

    stats = activation_stats(g, state, ids, ["decoder.h.0.mlp.up"])
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

from strata.backends.torch import generate_source
from strata.backends.torch.loader import load_source
from strata.compiler.cost import seq_len
from strata.compiler.ir import without_passes
from strata.errors import UsageError
from strata.io import open_regular, read_spread
from strata.safetensors_file import DTYPES, FLOAT_DTYPES, read_header

__all__ = ["MAX_ROWS", "activation_stats", "held_out_rows", "load_calibration", "model_inputs", "read_token_ids",
           "row_length", "trained_context"]

MAX_ROWS = 128       # calibration rows of the model's context (GPTQ, AWQ and Wanda use 128 sequences)
BATCH = 8            # rows per forward


MAX_LENGTH = 512     # tokens per calibration row, at most
MAX_READ_ROWS = MAX_ROWS * 64  # rows of a token-id file read, at most (32 MiB of int64 ids)


def _context(g) -> int:
    """The model's positions (ctx, or its learned table), at most MAX_LENGTH."""
    return min(seq_len(g), MAX_LENGTH)


def trained_context(source_run: dict | None) -> int | None:
    """The sequence length the weights were trained at: a run's `context`
    setting (kept in a compress output's report as its source run), else None."""
    v = ((source_run or {}).get("settings") or {}).get("context")
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def row_length(g, trained: int | None = None) -> int:
    """Tokens per calibration or fine-tuning row: the length the model was
    trained at when known (a rotary model without `ctx` says nothing else, and
    rows longer than its training read positions it never saw), else its
    positions; at most MAX_LENGTH."""
    return min(trained, _context(g)) if trained else _context(g)


def _vocab(g) -> int | None:
    for _, d in g.nodes(data=True):
        if d["op"] == "embedding" and d["attrs"].get("role") == "token":
            return d["params"]["weight"][0]
    return None


def model_inputs(g, ids) -> tuple:
    """The positional inputs of the compiled model of `g` for token ids (N, T):
    one per stack that reads tokens (an encoder-decoder reads `model(src, tgt)`;
    the same ids serve as both, which is all calibration and comparisons need)."""
    return tuple(ids for s in g.graph.stacks if s["inputs"]) or (ids,)


def load_calibration(src, g, tokenizer=None, trained: int | None = None):
    """Token ids (N, T) from a tensor, a safetensors file or a text file, checked
    against the model's vocabulary and cut to rows of its context (of the length
    it was trained at, `trained`, when shorter: row_length); more than
    MAX_ROWS rows are thinned to MAX_ROWS spread evenly over them (the first and
    the last kept), so rows given in text order sample all of it."""
    ids = _all_rows(src, g, tokenizer, trained)
    return ids[_kept(ids.shape[0])]


def held_out_rows(src, g, n: int, tokenizer=None, trained: int | None = None):
    """(load_calibration's ids, held out): held out is (ids (n', T), their row
    numbers in the data), up to `n` rows of the same data that calibration
    leaves out (spread evenly over those the thinning skipped), for measuring a
    calibrated model on ids it was not fitted to; None when calibration keeps
    every row (MAX_ROWS or fewer)."""
    import torch  # lazy: torch

    ids = _all_rows(src, g, tokenizer, trained)
    kept = _kept(ids.shape[0])
    skipped = sorted(set(range(ids.shape[0])) - set(kept.tolist()))
    if not skipped:
        return ids[kept], None
    pick = torch.linspace(0, len(skipped) - 1, min(n, len(skipped))).round().long().tolist()
    rows = [skipped[i] for i in pick]
    return ids[kept], (ids[rows], rows)


def _kept(n: int):
    """The rows of n that calibration uses: all, or MAX_ROWS spread evenly over
    them (the first and the last kept)."""
    import torch  # lazy: torch

    return torch.arange(n) if n <= MAX_ROWS else torch.linspace(0, n - 1, MAX_ROWS).round().long()


def _all_rows(src, g, tokenizer, trained):
    """load_calibration's rows before they are thinned."""
    import torch  # lazy: torch

    T = row_length(g, trained)
    if isinstance(src, torch.Tensor):
        ids = src
    else:
        path = Path(src)
        if not path.is_file():
            raise UsageError(f"{path}: " + ("not a regular file" if path.exists() else "no such calibration file"))
        if path.suffix == ".safetensors":
            ids = read_token_ids(path, T)
        else:
            ids = _encode_text(path, tokenizer, T)
    if ids.dim() == 1:
        ids = ids[: (ids.numel() // T) * T].view(-1, T) if ids.numel() >= T else ids[None]
    if ids.dim() != 2 or ids.numel() == 0 or ids.is_floating_point():
        raise UsageError(f"calibration data must be token ids (N, T), got {tuple(ids.shape)} {ids.dtype}")
    ids = ids[:, :T].long()
    vocab = _vocab(g)
    if vocab is not None and (int(ids.max()) >= vocab or int(ids.min()) < 0):
        raise UsageError(f"calibration ids run from {int(ids.min())} to {int(ids.max())}; the model's "
                         f"vocabulary has {vocab}: tokenize with the model's own tokenizer")
    return ids


def read_token_ids(path: Path, T: int, max_rows: int = MAX_READ_ROWS):
    """The token ids of a .safetensors file (calibration, fine-tuning data): its
    one integer tensor (or the one named tokens, input_ids or ids), flat or
    (N, T'), read only that far: past `max_rows` rows of T, `max_rows` rows
    spread evenly over them (the first and the last kept; row numbers then count the rows read), as
    text is read in pieces spread over its file.  So a file of billions of ids, or
    a sparse one whose header only claims them, costs what a small one does (the
    rows are read with pread, the file never mapped whole)."""
    import torch  # lazy: torch

    tensors, _ = read_header(path)  # checked in full before a byte of data is read
    ints = {k: t for k, t in tensors.items() if t.dtype not in FLOAT_DTYPES}
    key = next((k for k in ("tokens", "input_ids", "ids") if k in ints), None)
    if key is None and len(ints) == 1:
        key = next(iter(ints))
    if key is None:
        raise UsageError(f"{path}: expected one integer tensor of token ids (or one named tokens)")
    t = ints[key]
    shape, dtype, size = t.shape, getattr(torch, t.torch_dtype), DTYPES[t.dtype][1]
    if len(shape) not in (1, 2) or 0 in shape:
        raise UsageError(f"calibration data must be token ids (N, T), got {shape} {dtype}")
    width = shape[1] if len(shape) == 2 else T  # ids a row holds in the file
    n = shape[0] if len(shape) == 2 else shape[0] // T
    fd = open_regular(path, "token ids file")
    try:
        (header,) = struct.unpack("<Q", os.pread(fd, 8, 0))
        base = 8 + header + t.begin

        def ids(first: int, count: int):  # `count` ids from id number `first`, as the file holds them
            raw = os.pread(fd, count * size, base + first * size)
            if len(raw) != count * size:
                raise UsageError(f"{path}: truncated while it was read")
            return torch.frombuffer(bytearray(raw), dtype=dtype)

        if n <= max_rows and (len(shape) == 1 or width <= T):  # all of it: at most max_rows + 1 rows
            whole = ids(0, math.prod(shape))
            return whole if len(shape) == 1 else whole.view(shape)
        rows = range(n) if n <= max_rows else \
            torch.linspace(0, n - 1, max_rows, dtype=torch.float64).round().long().tolist()
        return torch.stack([ids(r * width, min(width, T)) for r in rows])  # (rows, T)
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror})") from None
    finally:
        os.close(fd)


def _encode_text(path: Path, tokenizer, T: int):
    """Token ids of a text file read with `tokenizer`, a loaded tokenizer (its
    `encode(text)`): loading one is the train layer's (strata.compress reads a
    run's tokenizer.json and hands text calibration here as ids)."""
    import torch  # lazy: torch

    if tokenizer is None or isinstance(tokenizer, (str, Path)):
        raise UsageError(f"{path}: text calibration needs the tokenizer the model was trained with "
                         "(--tokenizer RUN/tokenizer.json), or token ids as .safetensors")
    # bounded: enough characters for MAX_ROWS rows, in pieces spread over the whole file
    text = read_spread(path, MAX_ROWS * T * 8, MAX_ROWS, "calibration file")
    if not text.strip():
        raise UsageError(f"{path}: no text to calibrate on")
    return torch.as_tensor(tokenizer.encode(text), dtype=torch.long)


def plain_model(g, state: dict):
    """The model of `g` without its passes (the spec's own), holding `state`, in
    eval mode: what calibration runs its ids through."""
    from strata.backends.torch.weights_file import load_state  # lazy: torch

    plain = without_passes(g)
    net = load_source(generate_source(plain), plain.graph.name).build()
    net.strata_graph = plain
    load_state(net, state)
    return net.eval()


def activation_stats(g, state: dict, ids, nodes: list[str]) -> dict:
    """{node: {"sq": sum x^2, "abs": sum |x|, "n": rows}} per input feature of each
    linear in `nodes`, over `ids` run through the model of graph `g` holding `state`."""
    import torch  # lazy: torch

    net = plain_model(g, state)
    g = net.strata_graph
    stats: dict[str, dict] = {}
    hooks = []
    for n in nodes:
        def hook(mod, args, out, n=n):
            x = args[0].detach().float().reshape(-1, args[0].shape[-1])
            s = stats.setdefault(n, {"sq": torch.zeros(x.shape[1]), "abs": torch.zeros(x.shape[1]), "n": 0})
            s["sq"] += (x * x).sum(0)
            s["abs"] += x.abs().sum(0)
            s["n"] += x.shape[0]
        hooks.append(net.get_submodule(n).register_forward_hook(hook))
    try:
        with torch.no_grad():
            for i in range(0, ids.shape[0], BATCH):
                net(*model_inputs(g, ids[i:i + BATCH]))
    finally:
        for h in hooks:
            h.remove()
    return stats
