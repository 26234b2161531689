"""What a spec's passes ask of training (`strata train` calls these):

    lora(...)                only the adapters train (the rest is frozen)
    quantize(..., qat=true)  the marked linears train with fake quantization of
                             their scheme; after training they run the real kernels

The model is compiled with `quantize=False` for training (float weights); the
trained weights are saved in the spec's own names (adapters merged, fake
quantization gone), so compiling the spec on them quantizes as its passes say.

    >>> # lines = prepare_for_training(net); ...train...; finish_training(net)
"""

from __future__ import annotations

from strata.backends.torch.workflows.adapters import lora_parameters, mark_trainable
from strata.backends.torch.workflows.qat import convert_qat, prepare_qat, qat_linears

__all__ = ["finish_training", "prepare_for_training"]


def prepare_for_training(net) -> list[str]:
    """Freeze all but LoRA adapters and fake-quantize the qat=true linears of
    `net` (in place); return one line per thing done, for the log."""
    lines = []
    if lora_parameters(net):
        names = mark_trainable(net)
        n = sum(p.numel() for p in net.parameters() if p.requires_grad)
        lines.append(f"lora: only the adapters train ({len(names)} tensors, {n:,} parameters)")
    if qat_linears(net):
        prepare_qat(net)
        lines.append(f"qat: {len(net.qat_prepared)} linears train with fake quantization")
    return lines


def finish_training(net) -> None:
    """After the last step: the fake-quantized linears run their real kernels."""
    if getattr(net, "qat_prepared", None):
        convert_qat(net)
