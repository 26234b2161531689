"""The registry of components, passes and train settings, each with its option schema.

The same schemas validate both surfaces and feed `strata schema`; components
are registered in `strata.components` (re-exported here as COMPONENTS), passes
in `strata.plugins` (re-exported as PASSES: strata.passes, one file per pass,
fills it as it is imported — the dsl never imports the passes), train
settings here (TrainConfig, read by strata.train).

    >>> PASSES["quantize"].options(scheme="int8_dynamic").group_size
    128
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, PositiveFloat, PositiveInt, field_validator

from strata.components import COMPONENTS, GATED, Options  # noqa: F401 - re-exported
from strata.errors import UsageError
from strata.plugins import PASSES, PassSpec  # noqa: F401 - re-exported

# Components (the vocabulary of model bodies) are defined in strata/components/,
# one module per family; passes in strata/passes/, one file per pass; train
# settings are here.

# ------------------------------------------------------------------ train

Beta = Annotated[float, Field(ge=0, lt=1)]   # a moment's decay: 1 would never forget

# Step counts are JSON numbers in run.json, checkpoints and reports, exact up to
# 2**53; a count past it is a run that never ends (`--steps 10**18` trained on).
MAX_STEP = 2 ** 53
Steps = Annotated[int, Field(gt=0, le=MAX_STEP)]


def check_steps(flag: str, n: int, what: str = "steps") -> None:
    """A command-line count of steps, refused outside 1 .. MAX_STEP in one line
    before anything is loaded or spent (`strata train --steps`, `--finetune`).

        >>> check_steps("--steps", 2 ** 60)
        Traceback (most recent call last):
        strata.errors.UsageError: --steps 1,152,921,504,606,846,976: give a number of steps from 1 to 2**53 (the most a run records exactly)
    """
    if not 1 <= n <= MAX_STEP:
        raise UsageError(f"{flag} {n:,}: give a number of {what} from 1 to 2**53 (the most a run records exactly)")


class TrainOptions(Options):
    """Options of the train section: numbers are finite (an infinite learning rate
    or clip is a typo, and would only show up as a NaN loss)."""

    model_config = ConfigDict(**Options.model_config, allow_inf_nan=False)


class AdamW(TrainOptions):
    lr: PositiveFloat = 3e-4
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    eps: PositiveFloat = 1e-8


class SGD(TrainOptions):
    lr: PositiveFloat
    momentum: float = Field(0.0, ge=0)
    weight_decay: float = Field(0.0, ge=0)


class Cosine(TrainOptions):
    warmup: int = Field(0, ge=0)
    min_lr: float = Field(0.0, ge=0)


class Constant(TrainOptions):
    warmup: int = Field(0, ge=0)


class LinearSchedule(TrainOptions):
    warmup: int = Field(0, ge=0)
    min_lr: float = Field(0.0, ge=0)


OPTIMIZERS: dict[str, type[Options]] = {"adamw": AdamW, "sgd": SGD}
SCHEDULES: dict[str, type[Options]] = {"cosine": Cosine, "constant": Constant, "linear": LinearSchedule}


class TrainConfig(TrainOptions):
    """The `train { ... }` section (executed by `strata train`)."""

    data: str | None = Field(None, description="a text file to train on")
    tokenizer: Literal["char", "byte", "bpe"] = "char"
    vocab_size: PositiveInt | None = Field(None, description="BPE vocabulary size")
    batch: PositiveInt = 8
    context: PositiveInt | None = Field(None, description="default: the model's ctx")
    steps: Steps = 1000
    accumulate: Steps = 1
    optimizer: dict = Field(default_factory=lambda: _call("adamw", OPTIMIZERS, {}),
                            description="adamw(lr=3e-4, betas=(0.9, 0.999), weight_decay=0, eps=1e-8)")
    schedule: dict = Field(default_factory=lambda: _call("constant", SCHEDULES, {}),
                           description="constant(warmup=0)")
    grad_clip: PositiveFloat | None = None
    dropout: float | None = Field(None, ge=0, lt=1, description="override every dropout")
    seed: int = Field(0, ge=0, le=2 ** 63 - 1, description="0 to 2**63 - 1 (what torch.manual_seed takes)")
    eval_every: Steps = 200
    eval_steps: Steps = 20
    checkpoint_every: Steps = 500
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    val_fraction: float = Field(0.1, gt=0, lt=1)

    # Every optimizer / schedule value carries all its options, whether it came
    # from the spec, --set, a keyword or run.json, so nothing downstream has to
    # know a default ("adamw" alone once crashed the optimizer for want of lr).
    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: dict) -> dict:
        return _call(v.get("type"), OPTIMIZERS, v)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: dict) -> dict:
        return _call(v.get("type"), SCHEDULES, v)


def _call(kind, table: dict[str, type[Options]], value: dict) -> dict:
    """{"type": kind, every option} of an optimizer or schedule value."""
    if kind not in table:
        raise ValueError(f"'type' should be one of {', '.join(table)}")
    options = table[kind].model_validate({k: x for k, x in value.items() if k != "type"})
    return {"type": kind, **options.model_dump()}


# Names the evaluator turns into structured values in the train section.
TRAIN_CALLS = {**OPTIMIZERS, **SCHEDULES}
