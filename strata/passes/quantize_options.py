"""quantize's options: the schema both spec surfaces, `strata schema`, `strata
passes` and docs/language.md read, and which options go together (each refusal
located at the option the person wrote: strata.compiler.options.bind_options
hands the validators the names written).

    >>> QuantizeOptions(scheme="int4_weight", group_size=64).group_size
    64
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from strata.components.component_base import Options

__all__ = ["QuantizeOptions"]


class QuantizeOptions(Options):
    """Quantize the weights of linear layers (int8 dynamic, int8 / int4 weight-only,
    fp8 on CUDA sm89+); `qat=true` trains with fake quantization first."""

    scheme: Literal["int8_dynamic", "int8_static", "int8_weight", "int4_weight", "fp8", "auto"] = Field(
        description="int8 weights and activations (scaled per token at run time, or static: one scale a "
        "layer from --calibration data); int8 or int4 weights only; fp8 (CUDA sm89+); "
        "auto: each linear int4, int8 or float by its sensitivity, under bits= (reads --calibration data)")
    on: str | None = Field(None, description="module path glob or component kind; default all")
    group_size: Literal[32, 64, 128, 256, "channel"] = Field(
        128, description="int4_weight (and auto's int4): weights per scale along the input (torchao's sizes), "
        "or channel: one scale and zero point per output row; refused for the int8 schemes and fp8, "
        "which keep one scale per row (per tensor for fp8)")
    qat: bool = Field(False, description="strata train trains with fake quantization of this scheme")
    strict: bool = Field(False, description="int4_weight: refuse a layer whose width is not a multiple "
                         "of group_size instead of keeping it in float (refused with other schemes)")
    method: Literal["rtn", "gptq", "awq"] = Field("rtn", description="round to nearest; GPTQ; AWQ "
                                                   "(the last two read --calibration data)")
    act_order: bool = Field(False, description="gptq: quantize the inputs of most activation energy first")
    observer: Literal["minmax", "mse"] = Field("minmax", description="gptq: each group's range, its min and "
                                               "max, or the shrink of them that rounds it with the least "
                                               "error (mse)")
    sequential: bool | None = Field(None, description="gptq: inside a block, each linear's inputs measured "
                                    "after the linears before it are quantized (q, k, v; o; gate, up; down); "
                                    "true by default with method=gptq")
    smooth: float | None = Field(None, gt=0, lt=1, description="int8_dynamic / int8_static: SmoothQuant migration "
                                 "strength alpha (reads --calibration data)")
    bits: float | None = Field(None, gt=0, le=32, description="auto: the average stored bits per weight "
                               "of the selected linears (int4 ~4.16 at group 128, int8 ~8, float 32)")

    @field_validator("group_size")
    @classmethod
    def _groups(cls, v, info: ValidationInfo):
        """group_size is int4's (auto's too): the int8 schemes and fp8 keep one scale per
        output row, so a group size written for them would be ignored.  Refused where
        the person wrote it (bind_options' context says which options were written),
        else only when it differs from the default (a dump of the options holds it)."""
        scheme = info.data.get("scheme")
        given = "group_size" in ((info.context or {}).get("given") or ())
        if scheme in ("int4_weight", "auto", None) or not (given or v != 128):
            return v
        if scheme == "fp8":
            why, hint = ("one weight scale a tensor", "fp8 runs torchao's Float8DynamicActivationFloat8WeightConfig "
                         "at its per-tensor scales, which takes no groups: drop group_size")
        else:
            why, hint = ("one scale per output row", f"{scheme} rounds each output row of a linear on one scale "
                         "(compressed-tensors' channel strategy) and its kernels take no groups: drop "
                         "group_size, or use int4_weight for groups")
        raise PydanticCustomError("group_size", f"applies to int4_weight and auto, not {scheme} ({why})",
                                  {"hint": hint})

    @field_validator("strict")
    @classmethod
    def _strict(cls, v, info: ValidationInfo):
        """strict is int4's (a layer int4 cannot hold refused, not kept float): the
        other schemes hold every linear, and auto gives such a layer int8 or float."""
        scheme = info.data.get("scheme")
        if not v or scheme in ("int4_weight", None):
            return v
        why = ("auto gives a linear int4 cannot hold int8_weight or float by design" if scheme == "auto"
               else f"{scheme} holds every linear")
        raise PydanticCustomError("strict", f"applies to int4_weight, not {scheme}",
                                  {"hint": f"{why}: drop strict"})

    @model_validator(mode="after")
    def _budget(self):
        if self.scheme == "auto" and self.bits is None:
            raise ValueError("quantize(auto) needs bits=, the average stored bits per weight (e.g. bits=4.5)")
        if self.scheme != "auto" and self.bits is not None:
            raise ValueError(f"bits= is the budget of quantize(auto); {self.scheme} fixes the bits")
        if self.scheme == "auto" and (self.method != "rtn" or self.smooth is not None or self.qat):
            raise ValueError("quantize(auto) chooses among round-to-nearest int4, int8 and float; "
                             "method=, smooth= and qat= apply to one fixed scheme")
        return self
