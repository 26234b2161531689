"""The spec a run folder or a `strata compress` output was made from, and a
run's run.json — read without torch, so `strata compile RUN` (source only: the
run's model.arch and run.json, no weights) starts as `strata compile SPEC` does.
`strata.train.run_folder.RunFolder` reads a run's spec and run.json through these.
After `strata train specs/tiny_shakespeare.arch`::

    folder_spec("runs/tiny_shakespeare")    # ('runs/tiny_shakespeare/model.arch', None)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from strata.dsl import load_text, read_source
from strata.errors import Collector, UsageError
from strata.train.folder_names import COMPRESSED_SPEC, RUN_JSON, is_compressed, is_run, kept_run, neither
from strata.train.records import RunInfo, RunStub, read_run_json

__all__ = ["OutsideError", "folder_spec", "may_read", "own_file", "read_run", "spec_source"]


class OutsideError(UsageError):
    """A path a run recorded lies outside what strata reads for a run (may_read)."""


def may_read(path: str | Path, run: str | Path | None) -> bool:
    """Whether strata reads a file or folder that a run's record (run.json, a compress
    report) names without the user naming it too: only inside the run folder `run`
    or the working directory (links followed), and through no hidden name below
    them (`.ssh`, `.env`, `.git`).  A run folder from someone else could name any file
    of the user's (`/etc/passwd`, `~/.ssh/id_rsa`) as its data, spec or teacher."""
    try:
        real = Path(os.path.realpath(path))
        roots = [Path.cwd(), *([Path(run)] if run is not None else [])]
    except (OSError, ValueError):  # a NUL character, a loop of links, a working directory removed
        return False
    for root in roots:
        root = Path(os.path.realpath(root))
        if real == root or root in real.parents:
            return not any(part.startswith(".") for part in real.relative_to(root).parts)
    return False


def own_file(path: Path) -> Path:
    """`path` if it is a regular file (not a symlink) — a run's weights are read
    only from inside the run."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    if not stat.S_ISREG(st.st_mode):
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise UsageError(f"{path}: {what}; strata reads only the files it wrote there itself")
    return path


def _standing_alone(copy: Path) -> str:
    """RUN/model.arch, checked to import nothing: strata train writes it standing
    alone, so an import is a hand-made file reaching out of the run (`import
    "/home/me/.ssh/id_rsa"` would show a line of it in the error); refused, as a
    located error, before any file it names is read."""
    spec = load_text(read_source(copy), str(copy))
    if spec.imports:
        errors = Collector()
        for imp in spec.imports:
            errors.error(f"a run's copy of its spec imports nothing (strata train writes it standing "
                         f"alone), and this one imports '{imp.path}'", imp.span,
                         "a run reads only its own files: train the run again, or compile the spec it "
                         "was made from")
        errors.raise_if_any({str(copy): read_source(copy)})
    return str(copy)


def spec_source(run: Path, info: dict) -> str:
    """The spec the weights of the run in `run` (its run.json: `info`) were trained
    with: its own copy (RUN/model.arch), else (a run written before it kept one)
    the spec file it names, or its text."""
    copy = info.get("spec_copy")
    if copy and os.path.lexists(run / copy):
        return _standing_alone(own_file(run / copy))
    spec = info.get("spec")
    if spec and Path(spec).is_file():
        if not may_read(spec, run):
            raise OutsideError(f"{run}: its spec is recorded at {spec}, outside the run folder "
                               "and the working directory: strata reads only such files of a run (a "
                               f"run.json could name any file); give that spec with --weights {run}")
        return spec
    if info.get("spec_text"):
        return info["spec_text"]
    if copy:
        raise UsageError(f"{run}: its spec ({copy}, the copy strata train keeps) is gone, "
                         f"and so is the spec it trained ({spec}); the run needs one to build the model")
    raise UsageError(f"{run}: its spec {spec} is gone; the run needs it to build the model")


def read_run(path: Path) -> RunInfo:
    """run.json of the run in `path` (a `strata.train.records.RunInfo`), read
    through its schema: one line naming the key when a value is missing or of
    the wrong type; a run set up and never trained is refused."""
    f = path / RUN_JSON
    if not path.is_dir():
        raise UsageError(f"{path}: no such run folder")
    kept = kept_run(path)
    if kept is not None:  # an --overwrite stopped between its claim and its first checkpoint
        raise UsageError(f"{path}: the run there is kept in {kept.parent} by an --overwrite that "
                         f"stopped before its first checkpoint; `strata train ... --out {path} --resume` "
                         "puts it back and continues it")
    if not os.path.lexists(f):
        raise UsageError(f"{path}: not a run folder (no {RUN_JSON}); strata train writes one")
    info = read_run_json(f)
    if isinstance(info, RunStub):
        raise UsageError(f"{path}: the run was set up but never trained (stopped before its "
                         "first step); run its `strata train ... --resume` to start it")
    return info


def folder_spec(path: str | Path) -> tuple[str, str | None]:
    """(spec, model) of a run folder or a compress output: what `strata compile`
    needs of it, weights or not (a run stopped before its first checkpoint has
    none yet, and its spec is still its spec).  The objective run.json names is
    not looked up as `RunFolder.open` does (compile trains nothing, and the
    objectives' modules import torch)."""
    p = Path(path)
    if is_run(p):
        info = read_run(p).model_dump(exclude_unset=True)
        return spec_source(p, info), info.get("model")
    if is_compressed(p):
        return str(p / COMPRESSED_SPEC), None
    raise UsageError(neither(p))
