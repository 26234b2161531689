"""The registry of passes and train settings, each with its option schema.

The same schemas validate both surfaces and feed `strata schema`; components
are registered in `strata.components` (re-exported here as COMPONENTS), passes
in `strata.passes` (one file per pass; PASSES is read from them).

    >>> PASSES["quantize"].options(scheme="int8_dynamic").group_size
    128
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, PositiveFloat, PositiveInt, field_validator

from strata.components import COMPONENTS, GATED, Options  # noqa: F401 - re-exported

# Components (the vocabulary of model bodies) are defined in strata/components/,
# one module per family; passes in strata/passes/, one file per pass; train
# settings are here.

# ------------------------------------------------------------------ passes

@dataclass(frozen=True)
class PassSpec:
    name: str
    options: type[Options]
    positional: tuple[str, ...]

    @property
    def doc(self) -> str:
        return (self.options.__doc__ or "").strip()


class _Passes(Mapping):
    """name -> PassSpec, built from the pass classes of `strata.passes` (one
    file per pass holds its options) on first use: `strata.passes` imports the
    compiler, which imports this module, so the import waits until a lookup."""

    _table: dict[str, PassSpec] | None = None

    def _load(self) -> dict[str, PassSpec]:
        if self._table is None:
            from strata.passes import REGISTRY

            self._table = {n: PassSpec(n, p.options, p.positional) for n, p in REGISTRY.items()}
        return self._table

    def reload(self) -> None:
        """Read the pass classes again (strata.passes.register added one)."""
        self._table = None

    def __getitem__(self, name: str) -> PassSpec:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


PASSES: Mapping[str, PassSpec] = _Passes()


# ------------------------------------------------------------------ train

Beta = Annotated[float, Field(ge=0, lt=1)]   # a moment's decay: 1 would never forget


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
    steps: PositiveInt = 1000
    accumulate: PositiveInt = 1
    optimizer: dict = Field(default_factory=lambda: _call("adamw", OPTIMIZERS, {}),
                            description="adamw(lr=3e-4, betas=(0.9, 0.999), weight_decay=0, eps=1e-8)")
    schedule: dict = Field(default_factory=lambda: _call("constant", SCHEDULES, {}),
                           description="constant(warmup=0)")
    grad_clip: PositiveFloat | None = None
    dropout: float | None = Field(None, ge=0, lt=1, description="override every dropout")
    seed: int = Field(0, ge=0, le=2 ** 63 - 1, description="0 to 2**63 - 1 (what torch.manual_seed takes)")
    eval_every: PositiveInt = 200
    eval_steps: PositiveInt = 20
    checkpoint_every: PositiveInt = 500
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
