"""What a `strata train` start records in the run folder (strata.train.start):
run.json (strata.train.records.RunInfo) with the history of the run's starts,
and model.arch, the spec as trained, standing alone; and what a --resume reads
back from run.json: the data the run trained on."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import torch

from strata.compiler import build_text
from strata.compiler.ir import state_dict_shapes
from strata.errors import SpecError, UsageError
from strata.io import is_spec_path, write_atomic
from strata.passes.spec_writer import run_spec
from strata.train.distributed import Dist, say
from strata.train.folder import MANIFEST
from strata.train.folder_names import RUN_JSON, SPEC, kept_run
from strata.train.records import RunInfo, read_run_json
from strata.train.run_folder import OutsideError, run_data, run_relative

__all__ = ["resumed_data", "resumed_settings", "run_info", "spec_copy_text", "write_info"]


def write_info(out: Path, info: dict, spec_copy: str | None, resumed: bool, start: int, d: Dist) -> None:
    """model.arch (the spec as this start trains it, standing alone), then
    run.json, which names it, with the history of the run's starts (a resume adds one)."""
    if not d.main:
        return
    old = read_run_json(out / RUN_JSON) if resumed else None
    history = [h.model_dump() for h in old.history] if isinstance(old, RunInfo) else []
    info["history"] = [*history, {"start_step": start, "world_size": d.world,
                                  "time": time.strftime("%Y-%m-%dT%H:%M:%S")}]
    if spec_copy is not None:
        write_atomic(out / SPEC, spec_copy, follow=False)
    write_atomic(out / RUN_JSON, json.dumps(info, indent=1) + "\n", follow=False)


def spec_copy_text(spec, model, g, out: Path, d: Dist, progress: bool) -> str | None:
    """The text of RUN/model.arch: the spec as trained, standing alone, checked to
    build the model `g` is (its weights' names and shapes).  A spec the writer
    cannot make stand alone still trains (the run then needs the spec file, as
    runs did before they kept a copy), saying so."""
    if not is_spec_path(spec) or not d.main:
        return None
    try:
        text = run_spec(spec, model, g, out)
        if state_dict_shapes(build_text(text, str(out / SPEC))) == state_dict_shapes(g):
            return text
        why = "it would build another model"
    except (SpecError, UsageError) as e:
        why = str(e).splitlines()[0]
    say(d, progress, f"note: {out / SPEC} not written ({why}); the run loads from {spec} while it is there")
    return None


def resumed_settings(out: Path) -> dict | None:
    """The settings of the run a --resume continues (None: no run there yet); a run
    an --overwrite kept aside is the one the claim puts back."""
    own = kept_run(out) or out / RUN_JSON
    if not os.path.isfile(own):
        return None
    old = read_run_json(own)
    return old.settings if isinstance(old, RunInfo) else None


def resumed_data(out: Path, sets, settings: dict, data: str | None) -> str | None:
    """The data a --resume reads: the run's own, as run.json records it (found
    relative to the run folder first, a run moved with its data; then at its
    absolute path), unless --data / --set data names other; `data` (the spec's)
    when the run's is not found but that is there, or the run recorded none."""
    own = kept_run(out) or out / RUN_JSON  # a run an --overwrite kept aside: the claim puts it back
    if "data" in settings or any(re.match(r"\s*data\s*=", t) for t in sets) or not os.path.isfile(own):
        return data
    old = read_run_json(own)
    if not isinstance(old, RunInfo):
        return data
    try:
        return run_data(old.data.model_dump(), out, f"{out}: the data the run trained on",
                        "give --data with where it is now to resume")
    except OutsideError:  # there, but not to be read unasked: not replaced by the spec's either
        raise
    except UsageError:
        if data is not None and os.path.exists(data):
            return data
        raise


def run_info(p, spec, model, data_info, tok, init_file, frozen, teacher_weights, d: Dist,
              device: str, compile: bool, fsdp: bool, spec_copy: str | None) -> dict:
    """run.json's content (strata.train.records.RunInfo); `p`: the start's plan
    (strata.train.start: the IR, settings, objective and run folder)."""
    g = p.g
    return {"format": "strata-run", "version": 1, "status": "ready", "files": list(MANIFEST),
            "spec": str(Path(spec).resolve()) if is_spec_path(spec) else None,
            "spec_text": spec if isinstance(spec, str) and not is_spec_path(spec) else None,
            "spec_copy": SPEC if spec_copy is not None else None,
            "model": model, "name": g.graph.name, "parameters": g.graph.parameters,
            "objective": p.obj.to_json(), "settings": p.cfg,
            # the data's path relative to the run folder too: a run moved with its data finds it
            "data": {**data_info, "from_run": os.path.relpath(data_info["path"], p.out.resolve())
                     if data_info.get("path") else None},
            "tokenizer": {"type": tok.kind, "vocab_size": tok.vocab_size},
            "init": str(init_file) if init_file else None, "frozen": len(frozen),
            # where the distill teacher's weights came from (generate --speculate loads them),
            # relative to the run folder too: a run moved together with them finds them
            "teacher_weights": str(Path(teacher_weights).resolve()) if teacher_weights else None,
            "teacher_weights_from_run": run_relative(teacher_weights, p.out) if teacher_weights else None,
            "world_size": d.world, "device": device, "compile": compile, "fsdp": fsdp,
            "torch": torch.__version__, "strata": __import__("strata").__version__}
