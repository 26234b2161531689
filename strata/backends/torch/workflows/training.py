"""What a spec's passes ask of training (`strata train` calls these): each
applied pass's `prepare_training` / `finish_training` hooks (strata/passes/pass_base.py),
for instance

    lora(...)                only the adapters train (the rest is frozen)
    quantize(..., qat=true)  the marked linears train with fake quantization of
                             their scheme; after training they run the real kernels

The model is compiled with `quantize=False` for training (float weights); the
trained weights are saved in the spec's own names (adapters merged, fake
quantization gone), so compiling the spec on them quantizes as its passes say.

In code::

    lines = prepare_for_training(net); ...train...; finish_training(net)
"""

from __future__ import annotations

from types import SimpleNamespace

import strata.backends.torch.workflows.qat as qat
from strata.passes import REGISTRY

__all__ = ["KIT", "finish_training", "prepare_for_training"]

# What the passes' training hooks may use of this layer (a pass never imports
# the backend): the QAT workflow on compiled models.
KIT = SimpleNamespace(prepare_qat=qat.prepare_qat, qat_linears=qat.qat_linears, convert_qat=qat.convert_qat)


def _applied(net) -> list:
    """The classes of the passes applied to `net`, once each, in the spec's order."""
    names = dict.fromkeys(a["name"] for a in net.strata_graph.graph.get("applied", []))
    return [REGISTRY[name] for name in names]


def prepare_for_training(net) -> list[str]:
    """Each applied pass prepares `net` for training (in place); one line per
    thing done, for the log."""
    return [line for cls in _applied(net) for line in cls.prepare_training(net, KIT)]


def finish_training(net) -> None:
    """After the last step, each applied pass finishes (fake quantization gives
    way to the real kernels)."""
    for cls in _applied(net):
        cls.finish_training(net, KIT)
