"""The JSON files of a run folder, each read through one schema (pydantic, strict
types, ranges), so a damaged or hand-edited file is one line naming the key:

    strata: error: runs/x/run.json: damaged: 'objective.classes': Input should be a valid integer

    run.json            `RunInfo` (or `RunStub`: the folder is claimed, nothing trained yet)
    latest.json         `Pointer` (best.json too)
    checkpoints/step-N/state.json   `CheckpointState`

Files are read with `strata.io.read_regular(follow=False)`: a regular file
inside the run, of bounded size — never a symlink, a FIFO or a device.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from strata.dsl.registry import MAX_STEP, TrainConfig
from strata.errors import UsageError
from strata.io import read_regular

__all__ = ["RunInfo", "RunStub", "Pointer", "CheckpointState", "SourceRun", "read_record", "read_run_json",
           "read_source_run",
           "FORMAT", "MAX_STEP"]

FORMAT = "strata-run"


class _Record(BaseModel):
    # strict: "8" is not 8 and true is not 1; unknown keys are kept (newer strata's)
    model_config = ConfigDict(strict=True, extra="allow")


class ObjectiveInfo(_Record):
    model_config = ConfigDict(strict=True, extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")   # a registered one: `Run.open` checks
    output: str
    nsp: str | None = None
    classes: int | None = Field(None, ge=1, le=10 ** 6)


class DataInfo(_Record):
    name: str
    sha256: str = ""
    path: str | None = None            # absolute, as the run saw it
    from_run: str | None = None        # relative to the run folder (none in older runs)
    builtin: bool = False


class TokenizerInfo(_Record):
    type: str
    vocab_size: int = Field(ge=1, le=1 << 24)


class Start(_Record):
    start_step: int = Field(ge=0, le=MAX_STEP)
    world_size: int = Field(ge=1)
    time: str = ""


class RunStub(_Record):
    """run.json while a run is set up: the folder is claimed, nothing trained yet
    (`--resume`, or the same command again, starts it over)."""

    format: Literal["strata-run"]
    version: Literal[1]
    status: Literal["started"]
    files: list[str]


class RunInfo(_Record):
    """run.json of a run whose settings are in place (checkpoints may follow)."""

    format: Literal["strata-run"]
    version: Literal[1]
    status: Literal["ready"] = "ready"
    files: list[str] | None = None     # None: written by a strata before the manifest
    spec: str | None = None            # the spec file trained, absolute
    spec_text: str | None = None       # the spec, when given as text
    spec_copy: str | None = Field(None, pattern=r"^[\w.-]+\.arch$")  # the run's own copy of the spec
    model: str | None = None
    name: str
    parameters: int = Field(ge=0)
    objective: ObjectiveInfo
    settings: dict
    data: DataInfo
    tokenizer: TokenizerInfo
    teacher_weights: str | None = None            # --teacher-weights, absolute
    teacher_weights_from_run: str | None = None   # relative to the run folder (none in older runs)
    history: list[Start] = []


class SourceRun(_Record):
    """A compress output's report.json "source_run": the run its weights came from,
    as that run's run.json says (None: they came from no run)."""

    path: str | None = None            # the run folder, absolute
    objective: ObjectiveInfo
    settings: dict
    data: DataInfo


class Pointer(_Record):
    """latest.json / best.json: {"step": 500, "path": "checkpoints/step-00000500"}."""

    step: int = Field(ge=0, le=MAX_STEP)
    path: str = Field(pattern=r"^checkpoints/step-[0-9]{8}$")
    val_loss: float | None = None


class ParamGroup(_Record):
    lr: float = Field(ge=0)  # 0 at the last step of a linear or cosine schedule to min_lr = 0
    betas: list[float] | None = Field(None, min_length=2, max_length=2)
    eps: float | None = Field(None, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float | None = Field(None, ge=0)
    params: list[str | int]


class CheckpointState(_Record):
    step: int = Field(ge=0, le=MAX_STEP)
    best_val: float | None = None
    world_size: int = Field(1, ge=1)
    seed: int | None = Field(None, ge=0, le=2 ** 63 - 1)
    param_groups: list[ParamGroup] = []
    optimizer_scalars: dict[str, float | int | bool | None | list[float | int]] = {}
    files: dict[str, int] = {}


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    key = ".".join(str(x) for x in err["loc"]) or "(the whole file)"
    return f"'{key}': {err['msg']}"


def read_record(path: Path, model: type[BaseModel], limit: int = 1 << 20,
                what: str = "damaged") -> BaseModel:
    """`path` (a run's own JSON file) parsed and validated by `model`."""
    data = read_json(path, limit)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise UsageError(f"{path}: {what}: {_first_error(e)}") from None


def read_json(path: Path, limit: int = 1 << 20):
    raw = read_regular(path, limit, "run file", follow=False)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:  # also ints past Python's 4,300 digits
        raise UsageError(f"{path}: damaged: not valid JSON ({str(e)[:120]})") from None


def read_run_json(path: Path) -> RunInfo | RunStub:
    """run.json: a `RunStub` while the run is set up, else a `RunInfo` whose
    settings passed `TrainConfig` (and say the context length)."""
    data = read_json(path, 64 << 20)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path}: not a strata run description (no \"format\": \"{FORMAT}\")")
    model = RunStub if data.get("status") == "started" else RunInfo
    try:
        info = model.model_validate(data)
    except ValidationError as e:
        raise UsageError(f"{path}: damaged: {_first_error(e)}") from None
    if isinstance(info, RunInfo):
        info.settings = _settings(info.settings, path, "settings")
    return info


def _settings(settings: dict, path: Path, key: str) -> dict:
    """A run's recorded settings, checked as `TrainConfig` (and saying the context length)."""
    known = {k: v for k, v in settings.items() if k in TrainConfig.model_fields}
    try:
        cfg = TrainConfig.model_validate(known, strict=True).model_dump()
    except ValidationError as e:
        raise UsageError(f"{path}: damaged: '{key}.{_first_error(e)[1:]}") from None
    if not isinstance(cfg["context"], int):
        raise UsageError(f"{path}: damaged: '{key}.context': should be the run's context length")
    return {**settings, **cfg}


def read_source_run(src, path: Path) -> dict | None:
    """report.json's "source_run" (`path`: the report), checked as run.json's keys
    are: one line naming the key when a value is missing or of the wrong type."""
    if src is None:
        return None
    if not isinstance(src, dict):
        raise UsageError(f"{path}: damaged: 'source_run': should be the run the weights came from (an "
                         "object) or null")
    try:
        info = SourceRun.model_validate(src)
    except ValidationError as e:
        raise UsageError(f"{path}: damaged: 'source_run.{_first_error(e)[1:]}") from None
    return {**src, "settings": _settings(info.settings, path, "source_run.settings")}


def dump(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=1) + "\n"
