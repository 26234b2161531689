"""Checkpoints: everything a run needs to continue exactly where it stopped.

    RUN/checkpoints/step-00000500/
        model.safetensors       weights in the spec's own names (`strata.api.save_weights`)
        optimizer.safetensors   optimizer moments by parameter name, RNG states of every rank
        state.json              step, optimizer hyper-parameters, best validation loss,
                                the data position, and the size of each file above
    RUN/latest.json             {"step": 500, "path": "checkpoints/step-00000500"}
    RUN/best.json               the same for the lowest validation loss

Each file is written atomically (`strata.io`), `state.json` last; then the
pointer switches.  A crash at any instant leaves `latest.json` naming a
complete checkpoint: the previous one until the new one is whole.  Nothing is
ever unpickled: tensors are safetensors, the rest JSON.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from strata.errors import UsageError
from strata.io import atomic_output, write_atomic

__all__ = ["Checkpoint", "save_checkpoint", "find_checkpoint", "set_pointer", "prune"]

DIR = "checkpoints"
LATEST, BEST = "latest.json", "best.json"
FILES = ("model.safetensors", "optimizer.safetensors")
_NAME = re.compile(r"checkpoints/step-\d{8}\Z")


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
    from safetensors.torch import save_file

    rel = f"{DIR}/step-{step:08d}"
    folder = run / rel
    folder.mkdir(parents=True, exist_ok=True)
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
    return rel


def set_pointer(run: Path, which: str, rel: str, **extra) -> None:
    step = int(rel.rsplit("-", 1)[1])
    write_atomic(run / (LATEST if which == "latest" else BEST),
                 json.dumps({"step": step, "path": rel, **extra}) + "\n")


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
        from safetensors.torch import load_file

        from strata.backends.torch.weights import checkpoint_shapes

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


def _read(run: Path, pointer: str) -> Checkpoint | None:
    p = run / pointer
    try:
        ptr = json.loads(p.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UsageError(f"{p}: unreadable ({e}); the checkpoints themselves are in {run / DIR}") from None
    rel = ptr.get("path") if isinstance(ptr, dict) else None
    if not isinstance(rel, str) or not _NAME.match(rel):
        raise UsageError(f"{p}: not a checkpoint pointer (no 'path': 'checkpoints/step-N')")
    folder = run / rel
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{folder}: incomplete checkpoint ({e})") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise UsageError(f"{folder}/state.json: no step")
    for f, size in (state.get("files") or {}).items():
        if f in FILES and (not (folder / f).is_file() or (folder / f).stat().st_size != size):
            raise UsageError(f"{folder / f}: missing or of the wrong size; the checkpoint is damaged")
    return Checkpoint(folder, state)


def find_checkpoint(run: Path, which: str = "latest") -> Checkpoint | None:
    """The checkpoint `latest.json` / `best.json` names, checked whole; None if none."""
    return _read(Path(run), LATEST if which == "latest" else BEST)


def prune(run: Path, keep: int = 1) -> None:
    """Delete checkpoints other than the `keep` newest and the ones the pointers name."""
    run = Path(run)
    named = set()
    for p in (LATEST, BEST):
        try:
            named.add(json.loads((run / p).read_text())["path"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    folders = sorted((run / DIR).glob("step-*"))
    for f in folders[:max(len(folders) - keep, 0)]:
        if f"{DIR}/{f.name}" not in named and f.is_dir() and not f.is_symlink():
            shutil.rmtree(f, ignore_errors=True)
