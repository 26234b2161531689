"""Checkpoints: everything a run needs to continue exactly where it stopped.

    RUN/checkpoints/step-00000500/
        model.safetensors       weights in the spec's own names (`strata.api.save_weights`)
        optimizer.safetensors   optimizer moments by parameter name, RNG states of every rank
        state.json              step, optimizer hyper-parameters, best validation loss,
                                the data position, and the size of each file above
    RUN/latest.json             {"step": 500, "path": "checkpoints/step-00000500"}
    RUN/best.json               the same for the lowest validation loss

A checkpoint is written into a fresh temporary folder (`checkpoints/.step-N.XXXX`),
`state.json` last, which is then renamed to `step-N`; then the pointer
switches.  A crash at any instant leaves `latest.json` naming a complete
checkpoint: the previous one until the new one is whole.  Nothing is written
through a link planted in the run, and nothing is read through one: pointers
and state.json are read through their schemas (`strata.train.records`).
Nothing is ever unpickled: tensors are safetensors, the rest JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from strata.backends.torch.weights_file import checkpoint_shapes
from strata.errors import UsageError
from strata.io import atomic_output, write_atomic
from strata.train.folder_names import LATEST
from strata.train.records import CheckpointState, Pointer, read_record

__all__ = ["Checkpoint", "save_checkpoint", "find_checkpoint", "set_pointer", "prune"]

DIR = "checkpoints"
BEST = "best.json"
FILES = ("model.safetensors", "optimizer.safetensors")


def _jsonable(v):
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    return v


def save_checkpoint(run: Path, step: int, write_weights, optim: dict, rng: dict[str, torch.Tensor],
                    state: dict) -> str:
    """Write checkpoint `step` (files, then state.json) and return its path relative
    to `run`; the caller then points `latest` (and maybe `best`) at it.

    write_weights(path) writes the model's weights; optim is a full optimizer
    state dict keyed by parameter name ({"state": {name: {...}}, "param_groups": [...]})."""
    from safetensors.torch import save_file  # lazy: torch

    rel = f"{DIR}/step-{step:08d}"
    final = run / rel
    parent = final.parent
    if not os.path.lexists(parent):
        parent.mkdir()
    if not _real_folder(parent):
        raise UsageError(f"{parent}: a symlink or not a folder; strata writes checkpoints only "
                         "into the folder it made (move it away)")
    folder = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=parent))
    try:
        write_weights(folder / FILES[0])
        tensors, scalars = {}, {}
        for name, entry in optim.get("state", {}).items():
            for k, v in entry.items():
                if isinstance(v, torch.Tensor):
                    tensors[f"state/{name}/{k}"] = v.detach().cpu().contiguous()
                else:
                    scalars[f"{name}/{k}"] = _jsonable(v)
        for k, v in rng.items():
            tensors[f"rng/{k}"] = v.detach().cpu().contiguous()
        with atomic_output(folder / FILES[1]) as tmp:
            save_file(tensors, str(tmp))
        groups = [{k: _jsonable(v) for k, v in g.items()} for g in optim.get("param_groups", [])]
        manifest = {"step": step, **state, "param_groups": groups, "optimizer_scalars": scalars,
                    "files": {f: (folder / f).stat().st_size for f in FILES}}
        write_atomic(folder / "state.json", json.dumps(manifest, indent=1) + "\n")
        os.chmod(folder, 0o777 & ~_umask())
        if os.path.lexists(final):  # a leftover of a run stopped before its pointer moved
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            else:
                final.unlink()
        os.replace(folder, final)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return rel


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def set_pointer(run: Path, which: str, rel: str, **extra) -> None:
    step = int(rel.rsplit("-", 1)[1])
    write_atomic(run / (LATEST if which == "latest" else BEST),
                 json.dumps({"step": step, "path": rel, **extra}) + "\n", follow=False)


@dataclass
class Checkpoint:
    path: Path
    state: dict

    @property
    def step(self) -> int:
        return self.state["step"]

    @property
    def weights(self) -> Path:
        return self.path / FILES[0]

    def optimizer(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """(optimizer state dict keyed by parameter name, RNG states)."""
        from safetensors.torch import load_file  # lazy: torch

        checkpoint_shapes(self.path / FILES[1])  # refuses anything but safetensors
        flat = load_file(str(self.path / FILES[1]))
        state: dict = {}
        rng = {}
        for key, t in flat.items():
            kind, _, rest = key.partition("/")
            if kind == "rng":
                rng[rest] = t
            elif kind == "state":
                name, _, k = rest.rpartition("/")
                state.setdefault(name, {})[k] = t
        for key, v in self.state.get("optimizer_scalars", {}).items():
            name, _, k = key.rpartition("/")
            state.setdefault(name, {})[k] = v
        groups = []
        for g in self.state.get("param_groups", []):
            g = dict(g)
            if isinstance(g.get("betas"), list):
                g["betas"] = tuple(g["betas"])
            groups.append(g)
        return {"state": state, "param_groups": groups}, rng


def _real_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _read(run: Path, pointer: str) -> Checkpoint | None:
    p = run / pointer
    if not os.path.lexists(p):
        return None
    ptr = read_record(p, Pointer, 1 << 16, "not a checkpoint pointer")
    folder = run / ptr.path
    if not (_real_folder(run / DIR) and _real_folder(folder)):
        raise UsageError(f"{folder}: not a checkpoint folder strata wrote (missing, or a symlink); "
                         f"{p} names it")
    state = read_record(folder / "state.json", CheckpointState, 64 << 20)
    for f, size in state.files.items():
        q = folder / f
        if f in FILES:
            try:
                st = os.lstat(q)
            except OSError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode) or st.st_size != size:
                raise UsageError(f"{q}: missing, not a regular file or of the wrong size; "
                                 "the checkpoint is damaged")
    return Checkpoint(folder, state.model_dump(exclude_unset=True))


def find_checkpoint(run: Path, which: str = "latest") -> Checkpoint | None:
    """The checkpoint `latest.json` / `best.json` names, checked whole; None if none."""
    return _read(Path(run), LATEST if which == "latest" else BEST)


def prune(run: Path, keep: int = 1) -> None:
    """Delete checkpoints other than the `keep` newest and the ones the pointers name,
    and the temporary folders of checkpoints a killed run did not finish."""
    run = Path(run)
    named = set()
    for p in (LATEST, BEST):
        try:
            named.add(read_record(run / p, Pointer, 1 << 16).path)
        except UsageError:
            pass
    folders = sorted((run / DIR).glob("step-*"))
    for f in folders[:max(len(folders) - keep, 0)]:
        if f"{DIR}/{f.name}" not in named and f.is_dir() and not f.is_symlink():
            shutil.rmtree(f, ignore_errors=True)
    for f in (run / DIR).glob(".step-*"):  # called between saves: none is being written
        if f.is_dir() and not f.is_symlink():
            shutil.rmtree(f, ignore_errors=True)
