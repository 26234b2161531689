"""Save and load weights as safetensors, and only safetensors.

The checkpoint's header is checked in full before a tensor is read
(`strata.safetensors_file`); a malformed or truncated file is one WeightsError.
A tensor of another dtype than the model's is refused unless a cast is asked
for.  Tied weights are stored once, under the name they are tied to (as the model's
`state_dict()` gives them, like `safetensors.torch.save_model`).  A checkpoint
that does not fit is refused with every missing, unexpected and mismatched
name; a pickle (`torch.save`) file is refused outright, since loading one can
run arbitrary code.

    >>> import tempfile, pathlib
    >>> import strata
    >>> model = strata.compile("specs/tiny_shakespeare.arch")
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.safetensors"
    >>> save_weights(model, path)
    >>> load_weights(model, path) is model
    True
"""

from __future__ import annotations

from pathlib import Path

import torch

from strata.backends.torch.model_tensors import model_state, quantized_modules, tied_names
from strata.backends.torch.packed import FORMAT, is_packed, packed_state, read_packed
from strata.backends.torch.spec_names import to_model_names, to_spec_names
from strata.io import atomic_output
from strata.passes import PassError
from strata.safetensors_file import DTYPE_HINT, WeightsError, read_header

__all__ = ["WeightsError", "WeightsMismatchError", "checkpoint_shapes", "load_weights", "save_weights"]


class WeightsMismatchError(WeightsError):
    """The checkpoint's names or shapes do not fit the model."""

    def __init__(self, missing: dict, unexpected: dict, mismatched: dict, path: str):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        self.path = path
        lines = [f"{path}: the checkpoint does not fit the model"]

        def shape(s):
            return "[" + ", ".join(map(str, s)) + "]"

        if missing:
            lines.append(f"  missing ({len(missing)}): in the model, not in the checkpoint")
            lines += [f"    {k} {shape(s)}" for k, s in missing.items()]
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): in the checkpoint, not in the model")
            lines += [f"    {k} {shape(s)}" for k, s in unexpected.items()]
        if mismatched:
            lines.append(f"  mismatched shapes ({len(mismatched)}): model vs checkpoint")
            lines += [f"    {k} model {shape(m)} checkpoint {shape(c)}" for k, (m, c) in mismatched.items()]
        super().__init__("\n".join(lines))

    def one_line(self) -> str:
        """The first difference and how many more, for a command's one-line error."""
        def shape(s):
            return "[" + ", ".join(map(str, s)) + "]"

        diffs = [f"{k} is {shape(m)} in the model, {shape(c)} in the checkpoint"
                 for k, (m, c) in self.mismatched.items()]
        diffs += [f"the model has {k}, the checkpoint not" for k in self.missing]
        diffs += [f"the checkpoint has {k}, the model not" for k in self.unexpected]
        more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
        return f"{self.path}: the checkpoint does not fit the model: {diffs[0] if diffs else 'they differ'}{more}"


def _unwrap(model):
    return getattr(model, "_orig_mod", model)  # torch.compile's wrapper


def checkpoint_shapes(path: str | Path) -> dict[str, tuple]:
    """Names and shapes in a safetensors file, without reading the tensors (the
    header is checked in full: `strata.safetensors_file.read_header`)."""
    tensors, _ = read_header(path)
    return {k: t.shape for k, t in tensors.items()}


def _spec_shapes(model: torch.nn.Module) -> dict[str, tuple] | None:
    """The shapes of the model's weights in the spec's own names, when its passes
    ran (None: no pass ran, the model's names are the spec's)."""
    g = getattr(model, "strata_graph", None)
    if g is None or "spec_params" not in g.graph:
        return None
    return {k: tuple(v) for k, v in g.graph.spec_params.items()}


def _problems(want: dict, have: dict, tied: dict) -> tuple[dict, dict, dict]:
    missing = {k: s for k, s in want.items() if k not in have and k not in tied}
    unexpected = {k: s for k, s in have.items() if k not in want and k not in tied}
    mismatched = {k: (want[k], have[k]) for k in want if k in have and want[k] != have[k]}
    for k, src in tied.items():
        if k in have and src in want and have[k] != want[src]:
            mismatched[k] = (want[src], have[k])
    return missing, unexpected, mismatched


def _fit(model: torch.nn.Module, have: dict[str, tuple], strict: bool, where: str) -> bool:
    """Check names and shapes `have` against `model` (raising WeightsMismatchError);
    return True when they are the spec's own names rather than the model's (the
    reading that fits better; the spec's when both fit, since carrying weights
    through a pass that keeps names, a mask, changes nothing already masked)."""
    tied = tied_names(model)
    want = {k: tuple(v.shape) for k, v in model_state(model).items()}
    spec = _spec_shapes(model)
    found = _problems(want, have, tied)
    in_spec_names = False
    if spec is not None:
        as_spec = _problems(spec, have, tied)
        if sum(map(len, as_spec)) <= sum(map(len, found)):
            found, in_spec_names = as_spec, True
    missing, unexpected, mismatched = found
    if mismatched or (strict and (missing or unexpected)):
        raise WeightsMismatchError(missing, unexpected, mismatched, where)
    return in_spec_names


def _load(model: torch.nn.Module, tensors: dict, in_spec_names: bool, strict: bool) -> list[str]:
    tied = tied_names(model)
    tensors = {k: v for k, v in tensors.items() if k not in tied}
    if in_spec_names:
        try:
            tensors = to_model_names(model.strata_graph, tensors)
        except PassError as e:
            raise WeightsError(str(e)) from None
    for k, src in tied.items():  # a tied name takes the tensor it is tied to
        if src in tensors:
            tensors[k] = tensors[src]
    with torch.no_grad():
        return model.load_state_dict(tensors, strict=strict).missing_keys


def _refuse_quantized(model: torch.nn.Module) -> None:
    if quantized_modules(model):
        raise WeightsError("this model is quantized: load float weights before quantizing "
                           "(strata.compile(spec, weights=...) loads, then quantizes)")


def load_state(model: torch.nn.Module, tensors: dict, *, strict: bool = True,
               where: str = "<state dict>", own_names: bool = False) -> torch.nn.Module:
    """Load an in-memory state dict (the spec's names or the model's, tied weights
    once or twice) into `model`, checked like `load_weights`; return the model.
    `where`: the file the tensors came from, for the message when they do not fit;
    own_names: the tensors are in the model's own names (a part of its state dict,
    which might read as the spec's too: not sent through the passes again)."""
    model = _unwrap(model)
    _refuse_quantized(model)
    in_spec = _fit(model, {k: tuple(v.shape) for k, v in tensors.items()}, strict, where)
    _load(model, dict(tensors), in_spec and not own_names, strict)
    return model


def load_fitting(model: torch.nn.Module, tensors: dict, where: str = "<state dict>") -> list[str]:
    """Load the tensors of an in-memory state dict (the spec's names or the model's)
    whose names fit `model` (shapes must); return the model's parameters left as
    they were (`strata train --init`).  `where`: the file they came from, for errors."""
    model = _unwrap(model)
    _refuse_quantized(model)
    in_spec = _fit(model, {k: tuple(v.shape) for k, v in tensors.items()}, False, where)
    missing = set(_load(model, dict(tensors), in_spec, False))
    return [k for k, _ in model.named_parameters() if k in missing]


def _model_dtypes(model: torch.nn.Module, in_spec_names: bool) -> dict[str, torch.dtype]:
    """The dtype the model holds under each checkpoint name (tied names included)."""
    state = model_state(model)
    out = {k: v.dtype for k, v in state.items()}
    if in_spec_names:  # a name the passes changed holds the model's float dtype
        floats = [v.dtype for v in state.values() if v.is_floating_point()]
        out = {k: out.get(k, floats[0] if floats else torch.float32) for k in _spec_shapes(model)}
    for k, src in tied_names(model).items():
        if src in out:
            out[k] = out[src]
    return out


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def load_weights(model: torch.nn.Module, path: str | Path, *, strict: bool = True,
                 cast: bool = False) -> torch.nn.Module:
    """Load a safetensors checkpoint into `model` (in place); return the model.

    The checkpoint may be in the model's own names or in the spec's (as
    `save_weights` and training write them), whatever passes the model has;
    names and shapes are checked before any tensor is read.  A tensor whose
    dtype differs from the model's (integers or booleans into float weights,
    float64 into float32, bfloat16 into float32) is refused unless `cast=True`
    asks for the conversion."""
    from safetensors.torch import load_file  # lazy: torch

    path = Path(path)
    model = _unwrap(model)
    _refuse_quantized(model)
    header, _ = read_header(path)
    if is_packed(header):
        return _load_packed(model, path, strict)
    in_spec = _fit(model, {k: t.shape for k, t in header.items()}, strict, str(path))
    dtypes = _model_dtypes(model, in_spec)
    wrong = [f"{k} is {t.torch_dtype}, the model's is {_name(dtypes[k])}"
             for k, t in header.items() if k in dtypes and t.torch_dtype != _name(dtypes[k])]
    if wrong and not cast:
        raise WeightsError(f"{path}: {len(wrong)} tensor(s) have another dtype than the model: "
                           f"{'; '.join(wrong[:4])}{' ...' if len(wrong) > 4 else ''}"
                           f"{DTYPE_HINT}")
    try:
        tensors = load_file(str(path))
    except Exception as e:  # SafetensorError: the file changed since its header was checked
        raise WeightsError(f"{path}: cannot read the tensors ({e})") from None
    if wrong:  # cast=True: each to the model's dtype, before any fusing concatenates them
        tensors = {k: v.to(dtypes[k]) if k in dtypes else v for k, v in tensors.items()}
    _load(model, tensors, in_spec, strict)
    return model


def _load_packed(model: torch.nn.Module, path: Path, strict: bool) -> torch.nn.Module:
    """A compressed checkpoint into a float model (training from it, `--init`): each
    quantized linear as the float weight its integers stand for.
    `strata.compile(spec, weights=path)` runs the integers in the kernels instead."""
    from safetensors.torch import load_file  # lazy: torch

    g = getattr(model, "strata_graph", None)
    if g is None:
        raise WeightsError(f"{path}: a compressed checkpoint loads into a strata model "
                           "(strata.compile(spec, weights=...))")
    try:
        tensors = load_file(str(path))
    except Exception as e:  # SafetensorError: the file changed since its header was checked
        raise WeightsError(f"{path}: cannot read the tensors ({e})") from None
    qweights, rest = read_packed(tensors, g, str(path))
    floats = [v.dtype for v in model.state_dict().values() if v.is_floating_point()]
    dtype = floats[0] if floats else torch.float32
    rest.update({f"{n}.weight": qw.dequantize(dtype) for n, qw in qweights.items()})
    rest = {k: v.to(dtype) if v.is_floating_point() else v for k, v in rest.items()}
    in_spec = _fit(model, {k: tuple(v.shape) for k, v in rest.items()}, strict, str(path))
    _load(model, rest, in_spec, strict)
    return model


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict | None = None, *,
                 packed: bool | None = None) -> None:
    """Write the model's weights to a safetensors file (atomically), in the spec's
    own names (passes undone) with each tied weight once; or, `packed` (the
    default for a quantized model), as it computes: in its own names, quantized
    linears as their integers and scales in the compressed-tensors layout, low-rank
    layers as their factors (strata/backends/torch/packed.py)."""
    from safetensors.torch import save_file  # lazy: torch

    model = _unwrap(model)
    if packed is None:
        packed = bool(quantized_modules(model)) and hasattr(model, "strata_graph")
    if packed:
        state = packed_state(model)
        with atomic_output(path) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", **(metadata or {}), "compression": FORMAT})
        return
    state = {k: v.detach().contiguous() for k, v in model_state(model).items()}
    g = getattr(model, "strata_graph", None)
    if g is not None:
        state = {k: v.contiguous() for k, v in to_spec_names(g, state).items()}
    seen: dict[int, str] = {}
    for k in list(state):  # any sharing the model did not declare: keep the first name
        key = (state[k].data_ptr(), state[k].shape, state[k].dtype)
        if state[k].numel() and key in seen:
            del state[k]
        else:
            seen[key] = k
    with atomic_output(path) as tmp:
        save_file(state, str(tmp), metadata=metadata or {"format": "pt"})
