"""Quantization-aware training for `quantize(..., qat=true)` (torchao QAT):

    model = strata.compile(spec, quantize=False)   # float weights, no kernels yet
    prepare_qat(model)     # the marked linears fake-quantize as the scheme will (torchao
                           # FakeQuantizedLinear; state dict names unchanged)
    ...train...            # gradients flow through the rounding (straight-through)
    convert_qat(model)     # plain linears again, then the spec's quantize(model) step:
                           # the real int8 / int4 kernels on the trained weights

Each scheme trains against the rounding its kernel does: int8_dynamic, int8
activations per token (asymmetric) and int8 weights per output row
(symmetric); int8_weight, the weights only; int4_weight, int4 weights per
group of `group_size` (asymmetric with an integer zero point and bf16 scales,
as strata.passes.qparams.rtn chooses them and compressed checkpoints store them).  fp8 has no CPU path and is
refused where it cannot run.

In code::

    prepare_qat(model); train(model); convert_qat(model)
"""

from __future__ import annotations

import logging
import sys

from strata.passes.quantize import Quantize

__all__ = ["convert_qat", "prepare_qat", "qat_linears"]


def qat_linears(model) -> dict[str, tuple[str, int | None]]:
    """Linears to fake-quantize: name -> (scheme, group_size), those of quantize
    passes written with qat=true."""
    g = getattr(model, "strata_graph", None)
    if g is None:
        raise ValueError("not a strata model: compile it with strata.compile")
    return {n: s for n, d in g.nodes(data=True) if d.op == "linear" and (s := Quantize.fake_quantized(d.attrs))}


def _qat_api():
    """torchao's QAT module, imported as quietly as torchao.quantization (its
    import registers enums with torch's pytree, which logs a warning each)."""
    from strata.backends.torch.runtime_passes import _torchao  # lazy: torch

    _torchao()  # a clear error without torchao
    quiet = logging.getLogger("torch.utils._pytree")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        import torchao.quantization.qat as qat  # lazy: torch
    finally:
        quiet.setLevel(level)
    return qat


def _configs(scheme: str, group_size: int | None):
    import torch  # lazy: torch

    IntxFakeQuantizeConfig = _qat_api().IntxFakeQuantizeConfig

    if scheme == "int8_dynamic":
        return (IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False),
                IntxFakeQuantizeConfig(torch.int8, "per_channel"))
    if scheme == "int8_weight":
        return None, IntxFakeQuantizeConfig(torch.int8, "per_channel")
    if scheme == "int4_weight":  # strata.passes.qparams.rtn's: asymmetric, integer zero point, bf16 scales
        return None, IntxFakeQuantizeConfig(torch.int4, group_size=group_size, is_symmetric=False,
                                            scale_precision=torch.bfloat16)
    raise ValueError(f"quantize({scheme}, qat=true) has no fake quantization here: "
                     "QAT covers int8_dynamic, int8_weight and int4_weight")


def prepare_qat(model):
    """Make the qat=true linears of `model` fake-quantize (in place); returns the model."""
    linears = qat_linears(model)
    if not linears:
        raise ValueError("no quantize pass with qat=true in this model's passes")
    groups: dict[tuple, set[str]] = {}
    for name, key in linears.items():
        groups.setdefault(key, set()).add(name)
    for (scheme, group_size), names in groups.items():
        act, weight = _configs(scheme, group_size)
        from torchao.quantization import quantize_  # lazy: torch
        from torchao.quantization.qat import QATConfig  # lazy: torch

        quantize_(model, QATConfig(activation_config=act, weight_config=weight, step="prepare"),
                  filter_fn=lambda m, fqn, names=names: fqn in names)
    model.qat_prepared = sorted(linears)
    return model


def convert_qat(model, quantize: bool = True):
    """Plain linears again (fake quantization removed), then, unless quantize=False,
    the generated file's quantize(model) step: the real kernels."""
    from torchao.quantization import quantize_  # lazy: torch
    from torchao.quantization.qat import QATConfig  # lazy: torch

    names = set(getattr(model, "qat_prepared", []))
    if not names:
        raise ValueError("the model was not prepared for QAT (prepare_qat)")
    quantize_(model, QATConfig(step="convert"), filter_fn=lambda m, fqn: fqn in names)
    del model.qat_prepared
    if quantize:
        step = getattr(sys.modules.get(type(model).__module__), "quantize", None)
        if step is None:
            raise ValueError("the model's generated file has no quantize step")
        step(model)
    return model
