"""The backend's side of calibration for passes: what runs the model of a graph
on calibration ids.  Whoever builds a `PassContext` with calibration data hands
RUNNER in with it, so the passes (torch-free graph rewrites and weight
transforms) never import the backend.

    >>> from strata.passes import PassContext

In code::

    ctx = PassContext(state=state, calibration=ids, runner=RUNNER)
"""

from __future__ import annotations

from strata.backends.torch.workflows.calibration import activation_stats
from strata.backends.torch.workflows.sensitivity import sensitivity
from strata.backends.torch.workflows.stream import stream

__all__ = ["RUNNER"]


class _TorchRunner:
    """strata.passes.pass_base.Runner over the generated PyTorch model."""

    activation_stats = staticmethod(activation_stats)
    stream = staticmethod(stream)
    sensitivity = staticmethod(sensitivity)


RUNNER = _TorchRunner()
