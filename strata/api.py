"""The public Python API of the PyTorch backend.

    >>> import strata.api as api
    >>> model = api.compile("specs/tiny_shakespeare.arch")   # doctest: +SKIP
    >>> logits = model(torch.zeros(1, 8, dtype=torch.long))  # doctest: +SKIP

torch is imported only when a function here needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["compile", "generate_source", "load_weights", "save_weights"]


def _origin(spec_or_path: Any) -> str | None:
    from strata.io import is_spec_path

    return str(spec_or_path) if is_spec_path(spec_or_path) else None


def _pass_entry(p) -> dict:
    from strata.dsl.registry import PASSES

    if isinstance(p, str):
        p = {"name": p, "options": {}}
    spec = PASSES.get(p["name"])
    if spec is None:
        raise ValueError(f"unknown pass {p['name']!r}; passes: {', '.join(PASSES)}")
    return {"name": p["name"], "options": spec.options(**p.get("options", {})).model_dump()}


def _apply_passes(g, passes):
    """Run the spec's passes, or `passes` instead when given (names or
    {"name", "options"} dicts; [] runs none)."""
    if passes is not None:
        g.graph["passes"] = [_pass_entry(p) for p in passes]
    if not g.graph.get("passes"):
        return g
    from strata.passes import apply_passes

    return apply_passes(g)


def generate_source(spec_or_path: Any, *, model: str | None = None, passes=None) -> str:
    """Readable PyTorch source for a spec; it defines `build()` and needs only torch.

        >>> src = generate_source("specs/gpt2.arch")   # doctest: +SKIP
    """
    from strata.backends.torch import generate_source as gen
    from strata.compiler import as_graph

    g = _apply_passes(as_graph(spec_or_path, model=model), passes)
    return gen(g, origin=_origin(spec_or_path))


def compile(spec_or_path: Any, *, passes=None, weights: str | Path | None = None,
            device=None, dtype=None, model: str | None = None, cast: bool = False):
    """Build a spec into an `nn.Module` (from generated source), optionally load
    safetensors `weights` (cast to the model's dtype only when `cast=True`) and
    move it to `device` / `dtype`.

        >>> m = compile("specs/tiny_shakespeare.arch", device="cpu")   # doctest: +SKIP

    `device="meta"` builds the structure without allocating (for 70B specs); on
    the CPU a model whose parameters do not fit in the memory available is
    refused before anything is allocated (`strata.resources.TooLargeError`).
    """
    import torch

    from strata.backends.torch.loader import load_source
    from strata.compiler import as_graph

    g = _apply_passes(as_graph(spec_or_path, model=model), passes)
    from strata.backends.torch import generate_source as gen

    source = gen(g, origin=_origin(spec_or_path))
    module = load_source(source, g.graph["name"])
    if device is None or torch.device(device).type == "cpu":
        from strata.resources import check_fits

        n = g.graph["parameters"]  # built in the default dtype first, whatever `dtype` says
        check_fits(n * torch.get_default_dtype().itemsize, f"{g.graph['name']} ({n:,} parameters)",
                   'build it with device="meta" to inspect it without allocating')
    if device is not None:
        with torch.device(device):
            net = module.build()
    else:
        net = module.build()
    if dtype is not None:
        net = net.to(dtype=dtype)
    net.strata_source = source
    net.strata_graph = g
    if weights is not None:
        load_weights(net, weights, cast=cast)
    return net


def load_weights(model, path: str | Path, *, strict: bool = True, cast: bool = False):
    """Load a safetensors checkpoint into `model`; refuses pickles, misfits and
    (unless `cast=True`) tensors of another dtype than the model's (WeightsError)."""
    from strata.backends.torch.weights import load_weights as load

    return load(model, path, strict=strict, cast=cast)


def save_weights(model, path: str | Path) -> None:
    """Save `model`'s weights as safetensors (tied weights once)."""
    from strata.backends.torch.weights import save_weights as save

    save(model, path)
