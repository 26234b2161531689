"""The models a run compiles and the weights it reads and writes, straight from
the backend (training sits below `strata.api`, so it never calls up into it):

    compile_model(spec, weights=..., device=...)   strata.api.compile for a spec or an IR graph
    load_weights(net, path), save_weights(net, path)   safetensors, spec names (the backend's)

    >>> net = compile_model("specs/tiny_shakespeare.arch", device="cpu")
    >>> sum(p.numel() for p in net.parameters())
    809856
"""

from __future__ import annotations

from pathlib import Path

from strata.backends.torch.compile import compile_graph
from strata.backends.torch.spec_names import to_spec_names
from strata.backends.torch.model_tensors import model_state
from strata.backends.torch.weights_file import checkpoint_shapes, load_fitting, load_weights, save_weights
from strata.compiler import as_graph
from strata.io import is_spec_path

__all__ = ["compile_model", "float_state", "load_fitting", "load_weights", "save_weights", "checkpoint_shapes"]


def compile_model(spec, *, model: str | None = None, device=None, weights: str | Path | None = None,
                  quantize: bool = True, calibration=None, origin: str | None = None):
    """The module for a spec (a file, text, or an IR graph: `origin` names its
    file) with its own passes, `weights` (a .safetensors file) carried through
    them, as `strata.compile` builds it; calibration: token ids (N, T) for the
    passes that read activations (strata.train.calibrate)."""
    return compile_graph(as_graph(spec, model=model), origin=origin or (str(spec) if is_spec_path(spec) else None),
                         weights=weights, device=device, quantize=quantize, calibration=calibration)


def float_state(spec, weights: str | Path) -> dict:
    """The model of `spec` with `weights` (a compress output's) as float tensors in
    the spec's own names: low-rank factors multiplied back, integers dequantized,
    so they fit the uncompressed spec as well as the compressed one."""
    net = compile_model(spec, weights=weights, quantize=False)
    return {k: v.detach().contiguous() for k, v in to_spec_names(net.strata_graph, model_state(net)).items()}
