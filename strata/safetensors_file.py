"""The safetensors file format, read and checked without torch.

A checkpoint comes from whoever trained the model, so its header is checked
in full before any tensor is read: an 8-byte little-endian header length, a
JSON object of at most MAX_HEADER bytes mapping each tensor name to
`{dtype, shape, data_offsets}` (plus an optional `__metadata__` of strings),
offsets that tile the data exactly, each tensor's byte size matching its shape
and dtype, and the file long enough to hold them.  Anything else is one
`WeightsError` saying what is wrong, never a library traceback; a pickle
(`torch.save`) file is refused outright, since loading one can run any code.

    >>> read_header("/dev/null")
    Traceback (most recent call last):
    strata.safetensors_file.WeightsError: /dev/null: not a regular file (a character device)
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from strata.errors import UsageError
from strata.io import file_kind

# safetensors' own limit on the JSON header.
MAX_HEADER = 100_000_000
# dtype code -> (torch's name, bytes per element)
DTYPES = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
    "U64": ("uint64", 8), "U32": ("uint32", 4), "U16": ("uint16", 2), "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})


class WeightsError(UsageError, ValueError):
    """A checkpoint that cannot be loaded (the message says why).  A UsageError,
    so the command line prints it as one `strata: error:` and exits 2."""


# What a checkpoint of another dtype than the model's (bfloat16 into float32) takes: the
# command line has no cast, so its way is weights in float32 (import-hf keeps the source's dtype)
DTYPE_HINT = ("; in Python pass cast=True (or the model's dtype=) to strata.compile / load_weights; on "
              "the command line give float32 weights (`strata import-hf DIR -o OUT --dtype float32` writes them)")


@dataclass(frozen=True)
class TensorInfo:
    dtype: str            # safetensors' code: F32, BF16, I64, ...
    shape: tuple[int, ...]
    begin: int            # byte offsets into the data after the header
    end: int

    @property
    def torch_dtype(self) -> str:
        return DTYPES[self.dtype][0]


def read_header(path: str | os.PathLike) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The tensors ({name: TensorInfo}, in file order) and the metadata of a
    safetensors file, checked in full; WeightsError naming the path otherwise."""
    path = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file") from None
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else file_kind(st.st_mode)
            raise WeightsError(f"{path}: not a regular file ({kind})")
        with os.fdopen(os.dup(fd), "rb") as f:
            head = f.read(9)  # the header length, then the header's "{"
            if head[8:9] != b"{" and (head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"):
                raise WeightsError(
                    f"{path}: this is a pickle checkpoint (torch.save); strata loads only "
                    "safetensors, because unpickling can run arbitrary code. Convert it once, in a "
                    "process you trust: safetensors.torch.save_file(torch.load(path), "
                    "'model.safetensors')")
            if len(head) < 9:
                raise WeightsError(f"{path}: not a safetensors file ({st.st_size} bytes)")
            (n,) = struct.unpack("<Q", head[:8])
            if not 2 <= n <= MAX_HEADER:  # the smallest header is {}; never echo the 8 bytes as a number
                raise WeightsError(f"{path}: not a safetensors file (it does not start with a header "
                                   f"length: 8 bytes holding 2 to {MAX_HEADER:,})")
            if head[8:9] not in (b"{", b" "):  # a text or other file whose first 8 bytes happen to fit
                raise WeightsError(f"{path}: not a safetensors file (the header is not a JSON object)")
            if 8 + n > st.st_size:
                raise WeightsError(f"{path}: truncated: the header needs {n:,} bytes, the file "
                                   f"has {st.st_size - 8:,} after the length")
            raw = head[8:] + f.read(n - 1)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror})") from None
    finally:
        os.close(fd)
    return _parse(path, raw, st.st_size - 8 - n)


def _parse(path: str, raw: bytes, data_len: int) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    def bad(why: str) -> WeightsError:
        return WeightsError(f"{path}: not a safetensors file ({why})")

    if not raw.lstrip(b" ").startswith(b"{"):
        raise bad("the header is not a JSON object")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise bad(f"the header is not valid JSON: {str(e)[:80]}") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise bad("__metadata__ should map names to strings")
    tensors: dict[str, TensorInfo] = {}
    for name, info in header.items():
        tensors[name] = _tensor(name, info, bad)
    end = 0
    for name, t in sorted(tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if t.begin != end:
            raise bad(f"tensor {name!r} starts at byte {t.begin:,}, not {end:,}: the data "
                      "offsets overlap or leave a gap")
        end = t.end
    if end > data_len:
        raise WeightsError(f"{path}: truncated: the tensors need {end:,} bytes of data, the file "
                           f"has {data_len:,}")
    if end < data_len:
        raise bad(f"{data_len - end:,} bytes after the last tensor")
    return tensors, meta


def _tensor(name: str, info, bad) -> TensorInfo:
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        raise bad(f"tensor {name!r} should have a dtype, a shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise bad(f"tensor {name!r} has an unknown dtype {str(dtype)[:20]!r}")
    # below 2**63: torch's sizes are int64 and safetensors' usize (a zero elsewhere in the
    # shape once let [0, 2**64] through this check, to fail in the library)
    if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < 2 ** 63 for d in shape)):
        raise bad(f"tensor {name!r}: the shape should be a list of non-negative integers below 2**63")
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(type(o) is int and o >= 0 for o in offsets) and offsets[0] <= offsets[1]):
        raise bad(f"tensor {name!r}: data_offsets should be [begin, end] with 0 <= begin <= end")
    size = math.prod(shape) * DTYPES[dtype][1]
    if offsets[1] - offsets[0] != size:
        raise bad(f"tensor {name!r} {shape} {dtype} needs {size:,} bytes, its offsets give "
                  f"{offsets[1] - offsets[0]:,}")
    return TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])


def header_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes in a safetensors file, without reading the tensors."""
    tensors, _ = read_header(path)
    return {k: t.shape for k, t in tensors.items()}


def tensor_bytes(path: str | Path) -> int:
    """Bytes of a safetensors file's tensors (the file less its header)."""
    tensors, _ = read_header(path)
    return sum(t.end - t.begin for t in tensors.values())
