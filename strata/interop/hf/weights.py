"""Reading a Hugging Face safetensors checkpoint and renaming it to strata's
state_dict keys.

A `Checkpoint` opens `model.safetensors` or a sharded
`model.safetensors.index.json` and hands out tensors lazily, one at a time
(torch is imported only here, and only when weights are read).  A family
module describes its renames as a `Mapping`: strata key <- HF key, with an
optional transform (transpose of GPT-2's Conv1D [in, out] weights, a slice of
GPT-2's fused c_attn).  `convert` applies it and insists every HF tensor is
used; `check` compares the result to the spec's `state_dict_shapes`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from strata.interop.hf.config import HFImportError
from strata.io import atomic_output

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


def _torch():
    try:
        import torch  # noqa: F401
        from safetensors import torch as st
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise HFImportError(f"importing weights needs torch and safetensors ({e.name} is missing): "
                            "pip install 'strata[torch]'") from None
    return st


class Checkpoint:
    """The tensors of a Hugging Face model folder, read lazily by name."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.folder = folder
        if (folder / INDEX).is_file():
            try:
                index = json.loads((folder / INDEX).read_text())
                weight_map = index["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise HFImportError(f"{folder / INDEX}: not a safetensors index ({e})") from None
            self.files = {k: folder / v for k, v in weight_map.items()}
            for shard in sorted(set(self.files.values())):
                if not shard.is_file():
                    raise HFImportError(f"{shard}: shard named in {INDEX} is missing")
        elif (folder / SINGLE).is_file():
            self.files = None
        else:
            pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
            if pickles:
                raise HFImportError(f"{folder}: only pickle weights ({', '.join(sorted(pickles))}); "
                                    "strata reads safetensors only (never pickle): re-save with "
                                    "save_pretrained(..., safe_serialization=True)")
            raise HFImportError(f"{folder}: no {SINGLE} or {INDEX}")
        self._shapes: dict[str, tuple] | None = None

    def _open(self, path: Path):
        from safetensors import safe_open

        try:
            return safe_open(str(path), framework="pt")
        except Exception as e:  # SafetensorError, OSError: a user's broken file
            raise HFImportError(f"{path}: cannot read safetensors ({e})") from None

    def shapes(self) -> dict[str, tuple]:
        """Every tensor's name and shape, read from the headers only."""
        if self._shapes is None:
            _torch()
            shapes = {}
            by_file: dict[Path, list[str]] = {}
            if self.files is None:
                by_file[self.folder / SINGLE] = []
            else:
                for k, p in self.files.items():
                    by_file.setdefault(p, []).append(k)
            for path in by_file:
                with self._open(path) as f:
                    for k in f.keys():
                        shapes[k] = tuple(f.get_slice(k).get_shape())
            self._shapes = shapes
        return self._shapes

    def keys(self) -> set[str]:
        return set(self.shapes())

    def meta(self, name: str):
        import torch

        return torch.empty(self.shapes()[name], device="meta")

    def get(self, name: str):
        path = self.folder / SINGLE if self.files is None else self.files[name]
        with self._open(path) as f:
            return f.get_tensor(name)


Transform = Callable[["object"], "object"]


def transpose(t):
    """GPT-2's Conv1D keeps weights [in, out]; strata's linear is [out, in]."""
    return t.t().contiguous()


def rows(start: int, stop: int, *, then: Transform | None = None) -> Transform:
    """A slice [start:stop] along dim 0 (after `then`), e.g. q / k / v out of a fused qkv."""
    def f(t):
        t = then(t) if then else t
        return t[start:stop].contiguous()
    return f


@dataclass
class Mapping:
    """strata key -> (HF key, transform or None); HF keys to drop silently
    (buffers older checkpoints saved, such as `attn.bias` masks or `inv_freq`)."""

    renames: dict[str, tuple[str, Transform | None]] = field(default_factory=dict)
    ignore: Callable[[str], bool] = lambda k: False

    def add(self, ours: str, theirs: str, transform: Transform | None = None) -> None:
        self.renames[ours] = (theirs, transform)


def convert(ckpt: Checkpoint, mapping: Mapping, *, meta: bool = False) -> dict:
    """Read and rename every tensor; fail on HF tensors the mapping does not use.
    With meta=True nothing is read: the result holds shape-only (meta) tensors,
    enough to check the mapping against a spec before loading gigabytes."""
    have = ckpt.keys()
    missing = sorted({theirs for theirs, _ in mapping.renames.values()} - have)
    if missing:
        raise HFImportError(f"the checkpoint lacks {len(missing)} tensor(s) the config implies: "
                            f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    used = {theirs for theirs, _ in mapping.renames.values()}
    unused = sorted(k for k in have - used if not mapping.ignore(k))
    if unused:
        raise HFImportError(f"{len(unused)} checkpoint tensor(s) have no place in the spec: "
                            f"{', '.join(unused[:4])}{' ...' if len(unused) > 4 else ''}")
    out, cache = {}, {}
    for ours, (theirs, fn) in mapping.renames.items():
        if theirs not in cache:
            # keep one source tensor at a time (GPT-2's c_attn feeds three keys)
            cache = {theirs: ckpt.meta(theirs) if meta else ckpt.get(theirs)}
        t = cache[theirs]
        out[ours] = fn(t) if fn else t
    return out


def check(tensors: dict, expected: dict[str, tuple]) -> list[str]:
    """Differences between converted tensors and the spec's state_dict_shapes."""
    problems = []
    for k in expected:
        if k not in tensors:
            problems.append(f"missing {k} {list(expected[k])}")
        elif tuple(tensors[k].shape) != tuple(expected[k]):
            problems.append(f"shape of {k}: checkpoint {list(tensors[k].shape)}, spec {list(expected[k])}")
    problems += [f"unexpected {k}" for k in tensors if k not in expected]
    return problems


def save(tensors: dict, path: Path, metadata: dict[str, str]) -> None:
    st = _torch()
    with atomic_output(path) as tmp:
        st.save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
