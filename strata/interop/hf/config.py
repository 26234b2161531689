"""Hugging Face `config.json` -> strata spec text.

Each supported `model_type` has a family module (gpt2, bert, llama) that turns
the config into `.arch` text and renames the checkpoint's tensors.  This file
holds what they share: reading options, refusing the ones strata cannot
express, formatting numbers for the spec, and the dispatch on `model_type`.

    >>> text = hf_to_spec({"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4,
    ...                    "vocab_size": 100, "n_positions": 32})
    >>> "mlp(hidden, act=gelu_tanh)" in text
    True
"""

from __future__ import annotations

from typing import Any

from strata.errors import UsageError


class HFImportError(UsageError):
    """A Hugging Face folder strata cannot import (missing files, unsupported option).
    The message is one line that says what and what to do instead."""


def check_architecture(arch: str | None, supported, family: str) -> None:
    """Refuse a checkpoint whose `architectures` entry this family cannot import."""
    if arch is not None and arch not in supported:
        raise HFImportError(f"unsupported architecture {arch!r} for {family}: strata imports "
                            f"{', '.join(supported)}")


class Config:
    """A config.json dict with typed, checked access.  `get` reads an option
    that may be absent; `need` one that must be there."""

    def __init__(self, raw: dict[str, Any]):
        if not isinstance(raw, dict):
            raise HFImportError("config.json does not hold a JSON object")
        self.raw = raw
        self.model_type = raw.get("model_type")

    def get(self, name: str, default: Any = None) -> Any:
        v = self.raw.get(name, default)
        return default if v is None else v

    def need(self, name: str, *aliases: str) -> Any:
        for n in (name, *aliases):
            if self.raw.get(n) is not None:
                return self.raw[n]
        raise HFImportError(f"config.json of a {self.model_type} model has no '{name}'")

    def positive(self, name: str, *aliases: str) -> int:
        v = self.need(name, *aliases)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise HFImportError(f"config.json: '{name}' should be a positive integer, got {v!r}")
        return v

    def refuse_if(self, name: str, bad, why: str) -> None:
        """Refuse when option `name` is present and `bad(value)` holds."""
        if name in self.raw and self.raw[name] is not None and bad(self.raw[name]):
            raise HFImportError(f"unsupported option {name}={self.raw[name]!r} in config.json: {why}")

    @property
    def architecture(self) -> str | None:
        archs = self.raw.get("architectures") or []
        return archs[0] if archs else None


def num(x: float | int) -> str:
    """A number as the spec writes it: 10000.0 -> 10000, 1e-05 -> 1e-05."""
    if isinstance(x, bool):
        raise HFImportError(f"expected a number, got {x!r}")
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


# Hugging Face activation names (ACT2FN keys) -> strata's mlp activations.
ACTIVATIONS = {
    "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu", "tanh": "tanh",
}
# For Llama-style gated MLPs: act(gate) * up -> the gated activation strata names.
GATED_ACTIVATIONS = {"silu": "swiglu", "swish": "swiglu", "gelu": "geglu"}


def activation(cfg: Config, name: str, default: str, *, gated: bool = False) -> str:
    act = cfg.get(name, default)
    table = GATED_ACTIVATIONS if gated else ACTIVATIONS
    if not isinstance(act, str) or act not in table:
        raise HFImportError(f"unsupported option {name}={act!r} in config.json: strata's "
                            f"{'gated ' if gated else ''}MLP supports {', '.join(sorted(table))}")
    return table[act]


def rope(cfg: Config) -> tuple[float, float]:
    """(base, fraction) of rotary positions, from either the older top-level
    `rope_theta` / `rope_scaling` / `partial_rotary_factor` or the newer
    `rope_parameters` dict.  Scaled variants (linear, dynamic, yarn, llama3, ...)
    are refused: strata's rotary is the unscaled one."""
    params = cfg.raw.get("rope_parameters")
    if params is not None:
        if not isinstance(params, dict):
            raise HFImportError("config.json: 'rope_parameters' should be an object")
        if "full_attention" in params or "sliding_attention" in params:
            raise HFImportError("unsupported option rope_parameters per layer type in config.json: "
                                "strata uses one rotary setting for all layers")
        kind = params.get("rope_type", params.get("type", "default"))
        if kind != "default":
            raise HFImportError(f"unsupported option rope_parameters.rope_type={kind!r} in "
                                "config.json: strata supports only unscaled rotary ('default')")
        base = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
        fraction = params.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0))
    else:
        scaling = cfg.raw.get("rope_scaling")
        if scaling is not None:
            kind = scaling.get("rope_type", scaling.get("type")) if isinstance(scaling, dict) else scaling
            if kind != "default":
                raise HFImportError(f"unsupported option rope_scaling type {kind!r} in config.json: "
                                    "strata supports only unscaled rotary ('default')")
        base = cfg.get("rope_theta", 10000.0)
        fraction = cfg.get("partial_rotary_factor", 1.0)
    if isinstance(base, bool) or not isinstance(base, (int, float)) or base <= 0:
        raise HFImportError(f"config.json: rope_theta should be a positive number, got {base!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise HFImportError(f"config.json: partial_rotary_factor should be in (0, 1], got {fraction!r}")
    return float(base), float(fraction)


def header(cfg: Config, source: str | None) -> str:
    """The comment block that opens a generated spec: where it came from."""
    lines = ["# Imported from Hugging Face by `strata import-hf`."]
    if source:
        lines.append(f"# Source: {source}")
    what = cfg.architecture or "(no architectures entry)"
    ver = cfg.raw.get("transformers_version")
    lines.append(f"# model_type: {cfg.model_type}, architecture: {what}"
                 + (f", transformers {ver}" if ver else ""))
    return "\n".join(lines) + "\n"


def family(model_type: Any):
    """The family module that handles `model_type`."""
    from strata.interop.hf import bert, gpt2, llama

    table = {"gpt2": gpt2, "bert": bert, "llama": llama, "mistral": llama}
    if model_type not in table:
        if model_type is None:
            raise HFImportError("config.json has no 'model_type'; is this a Hugging Face "
                                "transformers model folder?")
        raise HFImportError(f"unsupported model_type {model_type!r}: strata imports "
                            f"{', '.join(sorted(table))}")
    return table[model_type]


def hf_to_spec(config: dict, *, keys: set[str] | None = None, source: str | None = None) -> str:
    """The strata spec (.arch text) of a Hugging Face config.json dict.

    `keys`, the checkpoint's tensor names where known, decides which heads the
    checkpoint holds (e.g. BERT's pooler / MLM head); without it the config's
    `architectures` entry decides.

        >>> spec = hf_to_spec({"model_type": "llama", "vocab_size": 100, "hidden_size": 64,
        ...     "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
        ...     "intermediate_size": 96})
        >>> "kv_heads = 2" in spec
        True
    """
    cfg = Config(config)
    fam = family(cfg.model_type)
    return header(cfg, source) + fam.spec(cfg, fam.layout(cfg, keys))
