"""What a folder given where the command line wants a spec file is — a run
folder, a `strata compress` output — and the spec to give instead.  Read
without torch: check, summary, ir and diagram never import it.

    >>> folder_kind("specs")    # a folder of specs: neither
    'directory'
    >>> refuse_folder("specs", "summary")
    Traceback (most recent call last):
    strata.errors.UsageError: specs: is a directory, not a spec file
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from strata.errors import UsageError
from strata.io import read_regular
from strata.train.folder_names import COMPRESSED_SPEC, RUN_JSON, SPEC, is_compressed, is_run

__all__ = ["folder_kind", "kept_spec", "refuse_folder"]


def folder_kind(path: str | os.PathLike) -> str:
    """'run folder', 'compress output folder' or 'directory' (as `strata.train.sources` tells them)."""
    p = Path(path)
    if is_run(p):
        return "run folder"
    if (p / COMPRESSED_SPEC).is_file():
        return "compress output folder"
    return "directory"


def kept_spec(path: str | os.PathLike) -> bool:
    """Whether `path` is the spec a run folder or a compress output keeps of itself
    (RUN/model.arch): a record of the model, which summary, ir and diagram show
    without a distill teacher's spec — the teacher is the run's history, and a run
    folder copied alone has none (refuse_folder suggests this file)."""
    p = Path(path)
    return p.name == SPEC and (is_run(p.parent) or is_compressed(p.parent))


def _run_spec(folder: Path) -> tuple[str | None, str | None]:
    """(the spec file run.json names, its model) — (None, None) when unreadable."""
    try:
        info = json.loads(read_regular(folder / RUN_JSON, 64 << 20, "run file", follow=False))
    except (UsageError, ValueError, RecursionError):
        return None, None
    if not isinstance(info, dict):
        return None, None
    spec, model = info.get("spec"), info.get("model")
    return (spec if isinstance(spec, str) else None), (model if isinstance(model, str) else None)


def _shown(path: str) -> str:
    """`path` relative to the working folder when inside it (run.json holds it absolute)."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def refuse_folder(path: str, command: str) -> None:
    """A UsageError when `path` is a folder, naming the spec to give `strata
    COMMAND` instead where the folder is a run or a compress output."""
    if not os.path.isdir(path):
        return
    kind = folder_kind(path)
    if kind == "compress output folder":
        raise UsageError(f"{path}: is a strata compress output folder, not a spec file; give its spec: "
                         f"strata {command} {Path(path) / COMPRESSED_SPEC}")
    if kind == "run folder":
        spec, model = _run_spec(Path(path))
        if spec and os.path.isfile(spec):
            raise UsageError(f"{path}: is a run folder, not a spec file; give the spec it trained: "
                             f"strata {command} {_shown(spec)}" + (f" --model {model}" if model else ""))
        gone = f" ({RUN_JSON} names {spec}, which is gone)" if spec else ""
        if (Path(path) / SPEC).is_file():  # the run's own copy (strata train keeps one)
            raise UsageError(f"{path}: is a run folder, not a spec file; give the spec it trained{gone}, "
                             f"as the run keeps it: strata {command} {Path(path) / SPEC}")
        raise UsageError(f"{path}: is a run folder, not a spec file; give the spec it trained{gone}")
    raise UsageError(f"{path}: is a directory, not a spec file")
