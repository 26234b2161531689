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

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Callable

from strata.interop.hf.config import HFImportError, read_json
from strata.io import atomic_output
from strata.safetensors_file import FLOAT_DTYPES, WeightsError, read_header

if TYPE_CHECKING:
    from strata.safetensors_file import TensorInfo

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


def _torch():
    try:
        import torch  # noqa: F401  # lazy: torch
        from safetensors import torch as st  # lazy: torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise HFImportError(f"importing weights needs torch and safetensors ({e.name} is missing): "
                            "pip install 'strata[torch]'") from None
    return st


class Checkpoint:
    """The tensors of a Hugging Face model folder, read lazily by name.

    A sharded index must be `{"weight_map": {tensor: shard file}}` with every
    shard a plain file name or relative path inside the folder (no `..`, no
    absolute path); every file is a regular file whose safetensors header is
    checked in full (`strata.safetensors_file.read_header`) before a tensor is read."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.folder = folder
        if (folder / INDEX).exists():
            self.files = {k: folder / v for k, v in _weight_map(read_json(folder / INDEX, INDEX)).items()}
        elif (folder / SINGLE).exists():
            self.files = None
        else:
            pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
            if pickles:
                raise HFImportError(f"{folder}: only pickle weights ({', '.join(sorted(pickles))}); "
                                    "strata reads safetensors only (never pickle): re-save with "
                                    "save_pretrained(..., safe_serialization=True)")
            raise HFImportError(f"{folder}: no {SINGLE} or {INDEX}")
        self._headers: dict[str, TensorInfo] | None = None

    def paths(self) -> list[Path]:
        """Every file the checkpoint is read from."""
        if self.files is None:
            return [self.folder / SINGLE]
        return sorted(set(self.files.values()))

    def _open(self, path: Path):
        from safetensors import safe_open  # lazy: torch

        try:
            return safe_open(str(path), framework="pt")
        except Exception as e:  # SafetensorError, OSError: a user's broken file
            raise HFImportError(f"{path}: cannot read safetensors ({e})") from None

    def headers(self) -> dict[str, TensorInfo]:
        """Every tensor's name, dtype and shape, from the checked headers only."""
        if self._headers is None:
            headers: dict[str, TensorInfo] = {}
            for path in self.paths():
                try:
                    tensors, _ = read_header(path)
                except WeightsError as e:
                    raise HFImportError(f"cannot read safetensors: {e}") from None
                names = set(tensors)
                if self.files is not None:  # a shard holds what the index says it does
                    names = {k for k, p in self.files.items() if p == path}
                    if missing := sorted(names - set(tensors)):
                        raise HFImportError(f"{path}: lacks {len(missing)} tensor(s) {INDEX} puts "
                                            f"there: {', '.join(missing[:4])}")
                headers.update({k: tensors[k] for k in names})
            self._headers = headers
        return self._headers

    def shapes(self) -> dict[str, tuple]:
        return {k: t.shape for k, t in self.headers().items()}

    def keys(self) -> set[str]:
        return set(self.headers())

    def meta(self, name: str):
        import torch  # lazy: torch

        _torch()
        return torch.empty(self.headers()[name].shape, device="meta")

    def get(self, name: str):
        path = self.folder / SINGLE if self.files is None else self.files[name]
        with self._open(path) as f:
            try:
                return f.get_tensor(name)
            except Exception as e:  # the file changed since its header was checked
                raise HFImportError(f"{path}: cannot read tensor {name!r} ({e})") from None


def _weight_map(index) -> dict[str, str]:
    """The index's tensor -> shard map, each shard a relative path inside the folder."""
    where = f"{INDEX}: "
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise HFImportError(f"{where}'weight_map' should be an object of tensor name -> shard file")
    out = {}
    for name, shard in index["weight_map"].items():
        if not isinstance(shard, str) or not shard:
            raise HFImportError(f"{where}'weight_map.{name}' should be a shard file name, got "
                                f"{type(shard).__name__}")
        parts = PurePosixPath(shard).parts
        if (PurePosixPath(shard).is_absolute() or PureWindowsPath(shard).drive or "\\" in shard
                or ".." in parts or "\0" in shard):
            raise HFImportError(f"{where}'weight_map.{name}' = {shard!r} is outside the model "
                                "folder; shards must be files inside it")
        out[name] = shard
    return out


def check_float(ckpt: Checkpoint, mapping: "Mapping") -> None:
    """Every tensor the spec takes must hold floating-point numbers: integer or
    boolean data in a weight is a broken or hostile checkpoint, not a model."""
    headers = ckpt.headers()
    bad = sorted({theirs for theirs, _ in mapping.renames.values()
                  if headers[theirs].dtype not in FLOAT_DTYPES})
    if bad:
        shown = ", ".join(f"{k} ({headers[k].torch_dtype})" for k in bad[:4])
        raise HFImportError(f"{len(bad)} checkpoint tensor(s) that should be floating-point "
                            f"weights hold {headers[bad[0]].torch_dtype} data: {shown}"
                            f"{' ...' if len(bad) > 4 else ''}")


Transform = Callable[["object"], "object"]

# Each transform is a small object: called, it takes a strata tensor out of a
# Hugging Face one; `source_shape(shape)` gives the least HF shape a result of
# `shape` can come from, so `unconvert` (export) can put tensors back.


@dataclass(frozen=True)
class _Transpose:
    """GPT-2's Conv1D keeps weights [in, out]; strata's linear is [out, in]."""

    def __call__(self, t):
        return t.t().contiguous()

    def source_shape(self, shape: tuple) -> tuple:
        return tuple(reversed(shape))


transpose = _Transpose()


@dataclass(frozen=True)
class _Rows:
    start: int
    stop: int
    then: Transform | None = None

    def __call__(self, t):
        t = self.then(t) if self.then else t
        return t[self.start:self.stop].contiguous()

    def source_shape(self, shape: tuple) -> tuple:
        inner = (self.stop, *shape[1:])
        return self.then.source_shape(inner) if self.then else inner


def rows(start: int, stop: int, *, then: Transform | None = None) -> Transform:
    """A slice [start:stop] along dim 0 (after `then`), e.g. q / k / v out of a fused qkv."""
    return _Rows(start, stop, then)


@dataclass(frozen=True)
class _Pick:
    index: tuple
    then: Transform | None = None

    def __call__(self, t):
        t = self.then(t) if self.then else t
        return t[list(self.index)].contiguous()

    def source_shape(self, shape: tuple) -> tuple:
        inner = (max(self.index) + 1, *shape[1:])
        return self.then.source_shape(inner) if self.then else inner


def pick(index: list[int], *, then: Transform | None = None) -> Transform:
    """Rows picked by index along dim 0 (after `then`): q, k or v out of a qkv
    projection whose rows interleave them per head (GPT-NeoX, Falcon)."""
    return _Pick(tuple(index), then)


@dataclass(frozen=True)
class _Select:
    i: int

    def __call__(self, t):
        return t[self.i].contiguous()

    def source_shape(self, shape: tuple) -> tuple:
        return (self.i + 1, *shape)


def select(i: int) -> Transform:
    """Entry i along dim 0: one expert of stacked expert weights [experts, ...]."""
    return _Select(i)


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


def unconvert(tensors: dict, mapping: Mapping) -> dict:
    """The inverse of `convert` (export): Hugging Face tensors from strata's.

    Every transform only moves elements, so each HF tensor is put back by index:
    the transform applied to `arange(numel)` in the HF shape says where each
    strata element came from.  Every element of every HF tensor must be written
    (a mapping that drops part of one cannot be inverted); values are copied, so
    the result is bit-exact."""
    import torch  # lazy: torch

    parts: dict[str, list] = {}
    for ours, (theirs, fn) in mapping.renames.items():
        if ours not in tensors:
            raise HFImportError(f"the weights lack {ours}, which the Hugging Face layout needs")
        parts.setdefault(theirs, []).append((tensors[ours], fn))
    out = {}
    for theirs, got in parts.items():
        if len(got) == 1 and got[0][1] is None:
            out[theirs] = got[0][0].contiguous()
            continue
        shapes = [fn.source_shape(tuple(t.shape)) for t, fn in got]
        shape = tuple(max(s[i] for s in shapes) for i in range(len(shapes[0])))
        numel = 1
        for n in shape:
            numel *= n
        where = torch.arange(numel).reshape(shape)
        flat = torch.empty(numel, dtype=got[0][0].dtype)
        seen = torch.zeros(numel, dtype=torch.bool)
        for t, fn in got:
            idx = fn(where).reshape(-1)
            flat[idx] = t.reshape(-1)
            seen[idx] = True
        if not bool(seen.all()):
            raise HFImportError(f"{theirs}: the strata weights fill only part of it; cannot export")
        out[theirs] = flat.reshape(shape)
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
