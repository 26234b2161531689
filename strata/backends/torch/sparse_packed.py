"""Pruned linears in a compressed checkpoint: their kept weights in compressed-tensors'
`sparse-bitmask` layout (`sparse-24-bitmask` for 2:4), read back to the dense weight
(no sparse kernel runs on CPU: loading decompresses).  The layouts, which linears
take them and their bytes: strata/passes/sparse_storage.py.

A file's bitmask, offsets and values are checked against each other and the spec's
[rows, cols] before anything the size of the weight is made: a damaged or crafted
one is one WeightsError naming the tensor.

    >>> import torch
    >>> w = torch.tensor([[0.0, 2.0, 0.0, 3.0], [1.0, 0.0, 0.0, 0.0]])
    >>> t = sparse_tensors("fc", w, "sparse-bitmask", 3)
    >>> t["fc.compressed"].tolist(), t["fc.bitmask"].tolist(), t["fc.row_offsets"].tolist()
    ([2.0, 3.0, 1.0], [[10], [1]], [0, 2])
    >>> torch.equal(dense_weight(t, "fc", (2, 4), "<doc>"), w)
    True
"""

from __future__ import annotations

import torch

from strata.passes.prune import Prune
from strata.passes.sparse_storage import BITMASK_24
from strata.safetensors_file import WeightsError

__all__ = ["SUFFIXES", "dense_weight", "read_sparse", "sparse_state", "sparsity_config", "sparse_tensors"]

SUFFIXES = ("compressed", "bitmask", "row_offsets")
_BITS = 1 << torch.arange(8, dtype=torch.int32)  # bit j of a byte: column 8 b + j (numpy's bitorder="little")


def _pack(mask: torch.Tensor) -> torch.Tensor:
    """bool [rows, cols] -> uint8 [rows, ceil(cols / 8)]."""
    rows, cols = mask.shape
    padded = torch.zeros(rows, -(-cols // 8) * 8, dtype=torch.int32)
    padded[:, :cols] = mask
    return (padded.view(rows, -1, 8) * _BITS).sum(-1).to(torch.uint8)


def _unpack(bits: torch.Tensor) -> torch.Tensor:
    """uint8 [rows, bytes] -> bool [rows, 8 * bytes]."""
    return ((bits.to(torch.int32)[..., None] & _BITS) != 0).flatten(1)


def _mask(w: torch.Tensor, fmt: str, kept: int, name: str) -> torch.Tensor:
    """Which entries of `w` the file keeps: its non-zeros and, to make `kept` (the
    count the spec's prune says, which `summary` counts), some of its zeros."""
    if fmt == BITMASK_24:  # the two largest of every four: a group with fewer non-zeros adds zeros
        groups = w.abs().float().view(w.shape[0], -1, 4)
        keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, groups.topk(2, dim=2).indices, True)
        keep = keep.view_as(w)
    else:
        keep = w != 0
        short = kept - int(keep.sum())
        if short > 0:
            flat = keep.flatten()
            flat[(~flat).nonzero().flatten()[:short]] = True
            keep = flat.view_as(w)
    if int(keep.sum()) != kept or bool((w[~keep] != 0).any()):
        raise WeightsError(f"{name}: holds {int((w != 0).sum())} non-zero weights where its prune keeps "
                           f"{kept}: it was not pruned as the spec says (compress it from the float weights)")
    return keep


def sparse_tensors(name: str, w: torch.Tensor, fmt: str, kept: int) -> dict[str, torch.Tensor]:
    """Linear `name`'s weight [rows, cols] in layout `fmt`, keeping `kept` entries."""
    w = w.detach().cpu()
    keep = _mask(w, fmt, kept, name)
    rows, cols = w.shape
    if fmt == BITMASK_24:
        return {f"{name}.shape": torch.tensor([[rows], [cols]], dtype=torch.int64),
                f"{name}.compressed": w[keep].view(rows, cols // 2).contiguous(),
                f"{name}.bitmask": _pack(keep)}
    counts = keep.sum(1)
    return {f"{name}.shape": torch.tensor([rows, cols], dtype=torch.int64),
            f"{name}.compressed": w[keep].contiguous(),
            f"{name}.bitmask": _pack(keep),
            f"{name}.row_offsets": (counts.cumsum(0) - counts).to(torch.int64)}


def sparse_state(state: dict, g) -> dict:
    """`state` (the model's names) with each linear `g` stores sparse in its layout,
    chosen for the weight's own dtype: a bf16 weight's values cost 2 bytes, so a
    light prune that pays in float32 would make its file larger than dense."""
    out = dict(state)
    for n, d in g.nodes(data=True):
        w = out.get(f"{n}.weight")
        found = None if w is None else Prune.sparse_layout(d, itemsize=w.element_size())
        if found is not None:
            out.update(sparse_tensors(n, out.pop(f"{n}.weight"), *found))
    return out


def _check(t, key: str, shape: tuple, dtype, where: str) -> torch.Tensor:
    if t is None:
        raise WeightsError(f"{where}: {key} is missing: a sparse-bitmask weight needs its compressed values, "
                           "bitmask, row offsets and shape")
    if tuple(t.shape) != shape or (dtype is not None and t.dtype != dtype):
        want = "float" if dtype is None else str(dtype).removeprefix("torch.")
        raise WeightsError(f"{where}: {key} is {str(t.dtype).removeprefix('torch.')} {list(t.shape)}; "
                           f"needs {want} {list(shape)}")
    return t


def dense_weight(rest: dict, n: str, shape: tuple[int, int], where: str) -> torch.Tensor:
    """Pop linear n's sparse tensors from `rest`; its dense weight [rows, cols]."""
    rows, cols = shape
    values = rest.get(f"{n}.compressed")
    two_four = values is not None and values.ndim == 2
    _check(rest.get(f"{n}.shape"), f"{n}.shape", (2, 1) if two_four else (2,), torch.int64, where)
    if rest[f"{n}.shape"].flatten().tolist() != [rows, cols]:
        raise WeightsError(f"{where}: {n}.shape is {rest[f'{n}.shape'].flatten().tolist()}; the spec's {n} "
                           f"is {rows}x{cols}")
    bits = _check(rest.get(f"{n}.bitmask"), f"{n}.bitmask", (rows, -(-cols // 8)), torch.uint8, where)
    mask = _unpack(bits)
    if bool(mask[:, cols:].any()):
        raise WeightsError(f"{where}: {n}.bitmask sets bits past column {cols}")
    mask = mask[:, :cols]
    counts = mask.sum(1)
    if two_four:
        _check(values, f"{n}.compressed", (rows, cols // 2), None, where)
        if cols % 4 or bool((mask.view(rows, -1, 4).sum(-1) != 2).any()):
            raise WeightsError(f"{where}: {n}.bitmask is not 2 of every 4 (sparse-24-bitmask)")
    else:
        _check(values, f"{n}.compressed", (int(counts.sum()),), None, where)
        offsets = _check(rest.get(f"{n}.row_offsets"), f"{n}.row_offsets", (rows,), torch.int64, where)
        if not torch.equal(offsets, counts.cumsum(0) - counts):
            raise WeightsError(f"{where}: {n}.row_offsets disagree with its bitmask's count of kept "
                               "weights a row")
    if not values.is_floating_point():
        raise WeightsError(f"{where}: {n}.compressed is {str(values.dtype).removeprefix('torch.')}; "
                           "the kept weights are floats")
    w = torch.zeros(rows, cols, dtype=values.dtype)
    w[mask] = values.flatten()
    for s in ("shape", *SUFFIXES):
        rest.pop(f"{n}.{s}", None)
    return w


def read_sparse(tensors: dict, g, where: str) -> dict:
    """`tensors` with each sparse-stored weight dense again, checked against `g`'s linears."""
    rest = dict(tensors)
    for n in sorted({k.rsplit(".", 1)[0] for k in rest if k.rsplit(".", 1)[-1] in SUFFIXES}):
        if n not in g or g.nodes[n].op != "linear" or "weight" not in g.nodes[n].params:
            raise WeightsError(f"{where}: {n} holds sparse-bitmask weights; the model has no linear {n}")
        if f"{n}.weight" in rest:
            raise WeightsError(f"{where}: {n} holds both a dense weight and sparse-bitmask tensors")
        rest[f"{n}.weight"] = dense_weight(rest, n, tuple(g.nodes[n].params["weight"]), where)
    return rest


def sparsity_config(g) -> dict | list | None:
    """compressed-tensors' `sparsity_config` (its json form) for the linears of `g`
    stored sparse: sparse-bitmask (unstructured) or sparse-24-bitmask (2:4), their
    targets and the fraction of their weights removed; None when none is (a list
    of both when a model holds both layouts)."""
    groups: dict[str, dict] = {}
    for n, d in g.nodes(data=True):
        found = Prune.sparse_layout(d)
        if found is not None:
            fmt, kept = found
            grp = groups.setdefault(fmt, {"targets": [], "kept": 0, "all": 0})
            rows, cols = d.params["weight"]
            grp["targets"].append(n)
            grp["kept"] += kept
            grp["all"] += rows * cols
    configs = [_config(fmt, grp["targets"], round(1 - grp["kept"] / grp["all"], 6)) for fmt, grp in sorted(groups.items())]
    return None if not configs else configs[0] if len(configs) == 1 else configs


def _config(fmt: str, targets: list[str], sparsity: float) -> dict:
    """One layout's config, checked by compressed-tensors' own class where it is installed."""
    cfg = {"format": fmt, "targets": targets, "ignore": [], "global_sparsity": sparsity,
           "sparsity_structure": "2:4" if fmt == BITMASK_24 else "unstructured"}
    try:
        from compressed_tensors.config import SparsityCompressionConfig  # lazy: torch
    except ImportError:
        return cfg
    return SparsityCompressionConfig.load_from_registry(fmt, **cfg).model_dump(mode="json", exclude_none=True)
