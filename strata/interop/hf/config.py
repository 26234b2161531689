"""Hugging Face `config.json` -> strata spec, from checked values only.

A config.json comes from whoever published the model, so nothing in it is
pasted into the spec.  `Config` hands out each option type- and range-checked
(ints are ints, floats finite, words from a known set), naming the key when one
is wrong; each family module turns the checked values into the spec's AST
(`strata.interop.hf.spec_ast`), and strata's formatter writes the text.  The
only free text in the result, the source folder, goes into a comment through
the formatter's string escaping.

A family module (gpt2.py, bert.py, llama.py) holds:

    MODEL_TYPES    the config.json model_type values it imports
    layout(cfg, keys) -> dict        which heads / prefixes the checkpoint has
    spec(cfg, layout) -> ModelDef    the model, built with spec_ast
    mapping(cfg, layout, keys)       strata tensor name <- HF tensor name

and is listed in FAMILIES (families.py, which turns a config into spec text).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from strata.compiler.elaborate import MAX_REPEAT
from strata.compiler.options import MAX_DIM
from strata.dsl.formatter import format_string
from strata.errors import UsageError
from strata.io import read_regular

MAX_LAYERS = MAX_REPEAT  # an import accepts what the spec language accepts


class HFImportError(UsageError):
    """A Hugging Face folder strata cannot import (missing files, unsupported option).
    The message is one line that says what and what to do instead."""


_MISSING = object()


def show(value: Any, limit: int = 40) -> str:
    """A config value as an error message quotes it: repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_architecture(arch: str | None, supported, family: str) -> None:
    """Refuse a checkpoint whose `architectures` entry this family cannot import."""
    if arch is not None and arch not in supported:
        raise HFImportError(f"unsupported architecture {show(arch)} for {family}: strata imports "
                            f"{', '.join(supported)}")


class Config:
    """A config.json object with checked access.  Every accessor names the key
    (dotted inside nested objects) when the value is absent or wrong.

        >>> cfg = Config({"model_type": "gpt2", "n_layer": "2", "eps": float("nan")})
        >>> cfg.positive("n_layer")
        Traceback (most recent call last):
        strata.interop.hf.config.HFImportError: config.json: 'n_layer' should be a positive integer, got '2'
    """

    def __init__(self, raw: Any, where: str = ""):
        if not isinstance(raw, dict):
            raise HFImportError(f"config.json{': ' + repr(where) if where else ''} should be a "
                                f"JSON object, got {type(raw).__name__}")
        self.raw, self.where = raw, where
        self.model_type = raw.get("model_type") if not where else None
        if self.model_type is not None and not isinstance(self.model_type, str):
            raise HFImportError(f"config.json: 'model_type' should be a string, got "
                                f"{show(self.model_type)}")

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def _fail(self, name: str, want: str, value: Any) -> HFImportError:
        return HFImportError(f"config.json: '{self.key(name)}' should be {want}, got {show(value)}")

    def has(self, name: str) -> bool:
        """Present and not null."""
        return self.raw.get(name) is not None

    def _first(self, names: tuple[str, ...], default: Any) -> tuple[str, Any]:
        for n in names:
            if self.raw.get(n) is not None:
                return n, self.raw[n]
        if default is _MISSING:
            kind = f"a {self.model_type} model" if self.model_type else "this model"
            raise HFImportError(f"config.json of {kind} has no '{self.key(names[0])}'")
        return names[0], default

    def int(self, *names: str, default: Any = _MISSING, low: int = 1, high: int = MAX_DIM - 1) -> int:
        """An integer in [low, high] (JSON true/false and 2.0 are not integers);
        the first of `names` present (aliases), else `default`."""
        name, v = self._first(names, default)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            want = "a positive integer" if low == 1 else f"an integer >= {low}"
            raise self._fail(name, want + (f" (at most {high:,})" if not isinstance(v, bool)
                                           and isinstance(v, int) and v > high else ""), v)
        return v

    def positive(self, *names: str, default: Any = _MISSING) -> int:
        return self.int(*names, default=default)

    def float(self, *names: str, default: Any = _MISSING, low: float = 0.0, high: float = math.inf,
              low_open: bool = False, high_open: bool = False) -> float:
        """A finite number in the interval (ints accepted: JSON writes 1e4 as 10000)."""
        name, v = self._first(names, default)
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        ok = ok and (low < v if low_open else low <= v) and (v < high if high_open else v <= high)
        if not ok:
            lo, hi = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
            raise self._fail(name, f"a finite number in {lo}{low:g}, {high:g}{hi}", v)
        return float(v)

    def probability(self, name: str, default: float) -> float:
        """A dropout probability, in [0, 1)."""
        return self.float(name, default=default, high=1.0, high_open=True)

    def bool(self, name: str, default: bool) -> bool:
        """JSON true or false (not "yes", not 1)."""
        _, v = self._first((name,), default)
        if not isinstance(v, bool):
            raise self._fail(name, "true or false", v)
        return v

    def word(self, name: str, table: dict[str, str], default: Any = _MISSING, what: str = "") -> str:
        """One of the known strings `table` maps (HF's word -> strata's word)."""
        _, v = self._first((name,), default)
        if not isinstance(v, str) or v not in table:
            raise HFImportError(f"unsupported option {self.key(name)}={show(v)} in config.json: "
                                f"{what or 'strata supports'} {', '.join(sorted(table))}")
        return table[v]

    def object(self, name: str) -> "Config | None":
        """A nested JSON object (None when absent or null)."""
        if not self.has(name):
            return None
        return Config(self.raw[name], self.key(name))

    def refuse_if(self, name: str, bad, why: str) -> None:
        """Refuse when option `name` is present and `bad(value)` holds."""
        if self.has(name) and bad(self.raw[name]):
            raise HFImportError(f"unsupported option {self.key(name)}={show(self.raw[name])} in "
                                f"config.json: {why}")

    @property
    def architecture(self) -> str | None:
        """The first `architectures` entry (a string), or None."""
        archs = self.raw.get("architectures")
        if archs is None or archs == []:
            return None
        if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
            raise self._fail("architectures", "a list of class names", archs)
        return archs[0]


# Hugging Face activation names (ACT2FN keys) -> strata's mlp activations.
ACTIVATIONS = {
    "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu", "tanh": "tanh",
}
# For Llama-style gated MLPs: act(gate) * up -> the gated activation strata names.
GATED_ACTIVATIONS = {"silu": "swiglu", "swish": "swiglu", "gelu": "geglu", "gelu_pytorch_tanh": "geglu_tanh",
                     "gelu_new": "geglu_tanh"}


def activation(cfg: Config, name: str, default: str, *, gated: bool = False) -> str:
    table = GATED_ACTIVATIONS if gated else ACTIVATIONS
    return cfg.word(name, table, default,
                    f"strata's {'gated ' if gated else ''}MLP supports")


def rope(cfg: Config, *, base_key: str = "rope_theta", fraction_key: str = "partial_rotary_factor",
         fraction_default: float = 1.0) -> tuple[float, float]:
    """(base, fraction) of rotary positions, from either the older top-level
    `rope_theta` / `rope_scaling` / `partial_rotary_factor` or the newer
    `rope_parameters` dict.  Scaled variants (linear, dynamic, yarn, llama3, ...)
    are refused: strata's rotary is the unscaled one.  A family whose older
    configs name them otherwise (GPT-NeoX's rotary_emb_base, rotary_pct) gives
    those keys and its own default fraction."""
    params = cfg.object("rope_parameters")
    top_base = "rope_theta" if cfg.has("rope_theta") else base_key
    if params is not None:
        if params.has("full_attention") or params.has("sliding_attention"):
            raise HFImportError("unsupported option rope_parameters per layer type in config.json: "
                                "strata uses one rotary setting for all layers")
        kind = params.raw.get("rope_type", params.raw.get("type", "default"))
        if kind != "default":
            raise HFImportError(f"unsupported option rope_parameters.rope_type={show(kind)} in "
                                "config.json: strata supports only unscaled rotary ('default')")
        if params.has("rope_theta"):
            base = params.float("rope_theta", low=0, low_open=True)
        else:
            base = cfg.float(top_base, default=10000.0, low=0, low_open=True)
        if params.has("partial_rotary_factor"):
            return base, params.float("partial_rotary_factor", low=0, low_open=True, high=1.0)
    else:
        scaling = cfg.raw.get("rope_scaling")
        if scaling is not None:
            kind = scaling.get("rope_type", scaling.get("type")) if isinstance(scaling, dict) else scaling
            if kind != "default":
                raise HFImportError(f"unsupported option rope_scaling type {show(kind)} in "
                                    "config.json: strata supports only unscaled rotary ('default')")
        base = cfg.float(top_base, default=10000.0, low=0, low_open=True)
    key = "partial_rotary_factor" if cfg.has("partial_rotary_factor") else fraction_key
    fraction = cfg.float(key, default=fraction_default, low=0, low_open=True, high=1.0)
    return base, fraction


NULL = object()  # export: a config value written as JSON null (None: the key left out)


def rope_parameters(facts: dict) -> dict | None:
    """The `rope_parameters` config.json entry for a rotary base and fraction
    (export: the inverse of `rope`)."""
    if facts.get("base") is None:
        return None
    params = {"rope_type": "default", "rope_theta": facts["base"]}
    params["partial_rotary_factor"] = facts["fraction"]
    return params


# A transformers version as config.json records it ("4.45.0", "4.46.0.dev0").
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+-]{0,31}\Z")


def header(cfg: Config, source: str | None, parameters: int | None = None) -> str:
    """The comment that opens a generated spec: where it came from.  The folder is
    written as a spec string literal (every unprintable character escaped), the
    rest are checked words."""
    lines = ["Imported from Hugging Face by `strata import-hf`."]
    if source:
        lines.append(f"Source: {format_string(source)}")
    what = cfg.architecture or "(no architectures entry)"
    ver = cfg.raw.get("transformers_version")
    ver = ver if isinstance(ver, str) and _VERSION.match(ver) else None
    lines.append(f"model_type: {cfg.model_type}, architecture: {what}"
                 + (f", transformers {ver}" if ver else ""))
    if parameters is not None:
        lines.append(f"{parameters:,} parameters.")
    return "\n".join(lines)


def read_json(path: Path, what: str):
    """A JSON file of the folder: a regular file of bounded size, parsed; any
    problem is one line naming the file."""
    try:
        data = read_regular(path, what=what)
    except UsageError as e:
        raise HFImportError(str(e)) from None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise HFImportError(f"{path}: not valid JSON ({str(e)[:80]})") from None
