"""The registry of passes and train settings, each with its option schema.

The same schemas validate both surfaces and feed `strata schema`; components
are registered in `strata.components` (re-exported here as COMPONENTS).

    >>> PASSES["quantize"].options(scheme="int8_dynamic").group_size
    128
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from strata.components import COMPONENTS, GATED, Options  # noqa: F401 - re-exported

# Components (the vocabulary of model bodies) are defined in strata/components/,
# one module per family; passes and train settings are here.

# ------------------------------------------------------------------ passes

class FuseQKV(Options):
    """Fuse the q, k, v projections of each attention into one matmul."""

    on: str | None = Field(None, description="module path glob or component kind; default all")


class FuseMLP(Options):
    """Fuse the gate and up projections of gated MLPs into one matmul."""

    on: str | None = None


class Quantize(Options):
    """Quantize the weights of linear layers."""

    scheme: Literal["int8_dynamic", "int8_weight", "int4_weight", "fp8"]
    on: str | None = None
    group_size: PositiveInt = 128


class Prune(Options):
    """Zero a fraction of weights (magnitude) or remove whole rows (structured)."""

    amount: float = Field(gt=0, lt=1)
    method: Literal["magnitude", "structured"] = "magnitude"
    on: str | None = None


class LowRank(Options):
    """Replace a linear layer W [out, in] by two factors of rank r (SVD on load)."""

    rank: PositiveInt
    on: str | None = None


class Distill(Options):
    """Train this (student) model against a teacher spec's logits."""

    teacher: str
    temperature: PositiveFloat = 2.0
    alpha: float = Field(0.5, ge=0, le=1)
    weights: str | None = Field(None, description="teacher weights (.safetensors)")


@dataclass(frozen=True)
class PassSpec:
    name: str
    options: type[Options]
    positional: tuple[str, ...]

    @property
    def doc(self) -> str:
        return (self.options.__doc__ or "").strip()


PASSES: dict[str, PassSpec] = {p.name: p for p in [
    PassSpec("fuse_qkv", FuseQKV, ()),
    PassSpec("fuse_mlp", FuseMLP, ()),
    PassSpec("quantize", Quantize, ("scheme",)),
    PassSpec("prune", Prune, ("amount",)),
    PassSpec("low_rank", LowRank, ("rank",)),
    PassSpec("distill", Distill, ("teacher",)),
]}


# ------------------------------------------------------------------ train

class AdamW(Options):
    lr: PositiveFloat = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    eps: PositiveFloat = 1e-8


class SGD(Options):
    lr: PositiveFloat
    momentum: float = Field(0.0, ge=0)
    weight_decay: float = Field(0.0, ge=0)


class Cosine(Options):
    warmup: int = Field(0, ge=0)
    min_lr: float = Field(0.0, ge=0)


class Constant(Options):
    warmup: int = Field(0, ge=0)


class LinearSchedule(Options):
    warmup: int = Field(0, ge=0)
    min_lr: float = Field(0.0, ge=0)


OPTIMIZERS: dict[str, type[Options]] = {"adamw": AdamW, "sgd": SGD}
SCHEDULES: dict[str, type[Options]] = {"cosine": Cosine, "constant": Constant, "linear": LinearSchedule}


class TrainConfig(Options):
    """The `train { ... }` section (executed by `strata train`)."""

    data: str | None = Field(None, description="a text file to train on")
    tokenizer: Literal["char", "byte", "bpe"] = "char"
    vocab_size: PositiveInt | None = Field(None, description="BPE vocabulary size")
    batch: PositiveInt = 8
    context: PositiveInt | None = Field(None, description="default: the model's ctx")
    steps: PositiveInt = 1000
    accumulate: PositiveInt = 1
    optimizer: dict = Field(default_factory=lambda: {"type": "adamw"})
    schedule: dict = Field(default_factory=lambda: {"type": "constant"})
    grad_clip: PositiveFloat | None = None
    dropout: float | None = Field(None, ge=0, lt=1, description="override every dropout")
    seed: int = 0
    eval_every: PositiveInt = 200
    eval_steps: PositiveInt = 20
    checkpoint_every: PositiveInt = 500
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    val_fraction: float = Field(0.1, gt=0, lt=1)


# Names the evaluator turns into structured values in the train section.
TRAIN_CALLS = {**OPTIMIZERS, **SCHEDULES}
