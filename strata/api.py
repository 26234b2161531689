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


def _pass_entries(g, passes) -> list[dict]:
    """Pass entries from text in the spec's syntax ("fuse_qkv",
    'quantize(int8_dynamic, on="mlp")', located errors) or {"name", "options"} dicts."""
    from strata.dsl.registry import PASSES

    out = []
    for i, p in enumerate(passes):
        if isinstance(p, str):
            from strata.passes.text import parse_pass_texts

            out += parse_pass_texts([p], g, file=f"<passes[{i}]>")
            continue
        spec = PASSES.get(p["name"])
        if spec is None:
            raise ValueError(f"unknown pass {p['name']!r}; passes: {', '.join(PASSES)}")
        out.append({"name": p["name"], "options": spec.options(**p.get("options", {})).model_dump()})
    return out


def _with_passes(g, passes):
    """The graph with `passes` (None: the spec's own; [] none) to apply."""
    if passes is not None:
        g.graph["passes"] = _pass_entries(g, passes)
    return g


def _apply_passes(g, passes):
    """Run the spec's passes, or `passes` instead when given (text or
    {"name", "options"} dicts; [] runs none).  Graph only: no weights."""
    g = _with_passes(g, passes)
    if not g.graph.get("passes"):
        return g
    from strata.passes import apply_passes

    return apply_passes(g)


def generate_source(spec_or_path: Any, *, model: str | None = None, passes=None,
                    origin: str | None = None) -> str:
    """Readable PyTorch source for a spec; it defines `build()` and needs only torch.
    `origin` names the spec file in its docstring when `spec_or_path` is a graph.

        >>> src = generate_source("specs/gpt2.arch", passes=["fuse_qkv"])   # doctest: +SKIP
    """
    from strata.backends.torch import generate_source as gen
    from strata.compiler import as_graph

    g = _apply_passes(as_graph(spec_or_path, model=model), passes)
    return gen(g, origin=origin or _origin(spec_or_path))


def compile(spec_or_path: Any, *, passes=None, weights: str | Path | None = None,
            device=None, dtype=None, model: str | None = None, calibration=None,
            quantize: bool | str = True, cast: bool = False):
    """Build a spec into an `nn.Module` (from generated source), with its passes
    applied to the weights: `weights` (safetensors, in the spec's own names or the
    compiled model's; cast to the model's dtype only when `cast=True`) go through
    every pass; quantization then runs on them.

        >>> m = compile("specs/tiny_shakespeare.arch", device="cpu")   # doctest: +SKIP
        >>> q = compile("specs/gpt2.arch", weights="gpt2.safetensors",
        ...             passes=['quantize(int8_dynamic, on="mlp")'])  # doctest: +SKIP

    passes: None runs the spec's `passes { }`, a list runs those instead (text in
    the spec's syntax, or {"name", "options"} dicts), [] none.  calibration: token
    ids (N, T) or a file (.safetensors of ids, or text) for the passes that read
    activations (Wanda, activation-aware low rank).  quantize=False keeps float
    weights (training with QAT prepares the model itself); quantize="torch_compile"
    picks the kernels that are fastest once the model is torch.compile'd.  `device="meta"`
    builds the structure without allocating (for 70B specs); on the CPU a model
    whose parameters do not fit in the memory available is refused before
    anything is allocated (`strata.resources.TooLargeError`).
    `model.strata_report` says what each pass did and which kernels run.
    """
    from strata.backends.torch.compile import compile_graph
    from strata.compiler import as_graph

    g0 = _with_passes(as_graph(spec_or_path, model=model), passes)
    return compile_graph(g0, origin=_origin(spec_or_path), weights=weights, device=device,
                         dtype=dtype, calibration=calibration, quantize=quantize, cast=cast)


def load_weights(model, path: str | Path, *, strict: bool = True, cast: bool = False):
    """Load a safetensors checkpoint into `model`; refuses pickles, misfits and
    (unless `cast=True`) tensors of another dtype than the model's (WeightsError)."""
    from strata.backends.torch.weights import load_weights as load

    return load(model, path, strict=strict, cast=cast)


def save_weights(model, path: str | Path) -> None:
    """Save `model`'s weights as safetensors (tied weights once)."""
    from strata.backends.torch.weights import save_weights as save

    save(model, path)
