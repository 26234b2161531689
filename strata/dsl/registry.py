"""The component registry: every component a spec can use, with its option schema.

Each component is a pydantic model of its options, the order of its positional
arguments, and the name its module gets when the spec gives none (`as NAME`).
The same schemas validate both surfaces and feed `strata schema`.

    >>> spec = COMPONENTS["attention"]
    >>> spec.positional, spec.default_name
    (('heads',), 'attn')
    >>> spec.options(heads=12, kv_heads=4).causal
    False
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

Activation = Literal["relu", "gelu", "gelu_tanh", "silu", "tanh", "swiglu", "geglu"]
GATED = {"swiglu": "silu", "geglu": "gelu"}  # gated activation -> activation of its gate
Dropout = float  # validated by Field(ge=0, lt=1) where used


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Embedding(Options):
    """Token embedding: ids [B, T] -> [B, T, dim]."""

    vocab: PositiveInt
    dim: PositiveInt
    scale: float | None = Field(None, description="multiply the output by this (e.g. sqrt(d))")
    tie: str | None = Field(None, description="share the weight of another embedding (path)")


class Position(Options):
    """Position information: learned / sinusoidal are added to the stream;
    rotary / alibi are applied inside every attention of the stack."""

    kind: Literal["learned", "sinusoidal", "rotary", "alibi", "none"]
    ctx: PositiveInt | None = Field(None, description="longest sequence (learned, sinusoidal)")
    base: PositiveFloat = Field(10000.0, description="rotary frequency base (rope_theta)")
    fraction: float = Field(1.0, gt=0, le=1, description="fraction of head dims rotated (rotary)")


class TokenTypes(Options):
    """Segment embedding added to the stream from `token_type_ids` (BERT)."""

    types: PositiveInt = 2


class Attention(Options):
    """Multi-head self-attention; kv_heads < heads gives GQA (1 gives MQA)."""

    heads: PositiveInt
    kv_heads: PositiveInt | None = Field(None, description="key/value heads (GQA); default: heads")
    head_dim: PositiveInt | None = Field(None, description="default: d // heads")
    causal: bool = False
    window: PositiveInt | None = Field(None, description="sliding-window size (tokens)")
    bias: bool = Field(True, description="bias on the q, k, v projections")
    out_bias: bool | None = Field(None, description="bias on the output projection; default: bias")
    dropout: float = Field(0.0, ge=0, lt=1)
    qk_norm: bool = Field(False, description="RMSNorm on queries and keys, per head")
    softcap: PositiveFloat | None = Field(None, description="tanh soft-capping of attention logits")
    scale: PositiveFloat | None = Field(None, description="logit scale; default 1/sqrt(head_dim)")


class CrossAttention(Attention):
    """Attention from the stream to another stack's output (`memory`)."""

    memory: str = Field(description="the stack input bound to the encoder, e.g. memory")


class MLP(Options):
    """Feed-forward: down(act(up(x))); gated activations add a gate projection."""

    hidden: PositiveInt
    act: Activation = "gelu"
    bias: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)


class MoE(Options):
    """Mixture of experts: a router picks top_k of `experts` MLPs per token."""

    hidden: PositiveInt
    experts: PositiveInt
    top_k: PositiveInt = 2
    shared: int = Field(0, ge=0, description="shared experts every token goes through")
    act: Activation = "swiglu"
    bias: bool = False
    normalize: bool = Field(True, description="renormalise the top_k routing weights to sum to 1")


class LayerNorm(Options):
    eps: PositiveFloat = 1e-5
    bias: bool = True


class RMSNorm(Options):
    eps: PositiveFloat = 1e-6


class DropoutOpt(Options):
    p: float = Field(ge=0, lt=1)


class Linear(Options):
    out: PositiveInt
    bias: bool = True


class ActivationOpt(Options):
    fn: Literal["relu", "gelu", "gelu_tanh", "silu", "tanh"]


class LMHead(Options):
    """Projection to vocabulary logits, optionally tied to an embedding."""

    vocab: PositiveInt | None = Field(None, description="default: the tied embedding's vocab")
    tie: str | None = Field(None, description="embedding whose weight is reused")
    bias: bool = False
    softcap: PositiveFloat | None = Field(None, description="tanh soft-capping of the logits")


class Classifier(Options):
    classes: PositiveInt
    bias: bool = True


class Pooler(Options):
    """First token -> dense -> tanh (BERT's pooler): [B, T, d] -> [B, d]."""

    act: Literal["tanh", "gelu", "relu", "none"] = "tanh"


class MLMHead(Options):
    """BERT masked-LM head: dense, activation, LayerNorm, decoder to vocab (+ bias)."""

    vocab: PositiveInt | None = None
    tie: str | None = None
    act: Literal["relu", "gelu", "gelu_tanh", "silu", "tanh"] = "gelu"
    eps: PositiveFloat = 1e-12


class NSPHead(Options):
    """BERT next-sentence head on the pooled output: [B, d] -> [B, 2]."""

    classes: PositiveInt = 2


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    options: type[Options]
    positional: tuple[str, ...]
    default_name: str
    category: str  # embedding | position | attention | mlp | norm | dropout | linear | head
    refs: frozenset[str] = field(default_factory=frozenset)  # options naming modules/stacks

    @property
    def doc(self) -> str:
        return (self.options.__doc__ or "").strip()


def _c(name, options, positional, default_name, category, refs=()):
    return ComponentSpec(name, options, tuple(positional), default_name, category, frozenset(refs))


COMPONENTS: dict[str, ComponentSpec] = {c.name: c for c in [
    _c("embedding", Embedding, ["vocab", "dim"], "embed", "embedding", ["tie"]),
    _c("position", Position, ["kind", "ctx"], "pos", "position"),
    _c("token_types", TokenTypes, ["types"], "token_type", "embedding"),
    _c("attention", Attention, ["heads"], "attn", "attention"),
    _c("cross_attention", CrossAttention, ["heads", "memory"], "cross_attn", "attention", ["memory"]),
    _c("mlp", MLP, ["hidden"], "mlp", "mlp"),
    _c("moe", MoE, ["hidden", "experts", "top_k"], "moe", "mlp"),
    _c("layernorm", LayerNorm, [], "ln", "norm"),
    _c("rmsnorm", RMSNorm, [], "norm", "norm"),
    _c("dropout", DropoutOpt, ["p"], "drop", "dropout"),
    _c("linear", Linear, ["out"], "linear", "linear"),
    _c("activation", ActivationOpt, ["fn"], "act", "activation"),
    _c("lm_head", LMHead, ["vocab"], "lm_head", "head", ["tie"]),
    _c("classifier", Classifier, ["classes"], "classifier", "head"),
    _c("pooler", Pooler, [], "pooler", "head"),
    _c("mlm_head", MLMHead, ["vocab"], "mlm_head", "head", ["tie"]),
    _c("nsp_head", NSPHead, ["classes"], "nsp_head", "head"),
]}


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
