"""From a graph with passes to a running module, weights carried through:

    read the checkpoint (names and shapes checked before a tensor is read)
    run the passes with the weights flowing through them (strata/passes/weight_transfer.py)
    generate the source, build on the device, load the transformed weights
    quantize(model) / sparsify(model): the generated file's steps after loading

A pass that changes weight values (pruning masks) applied to a model compiled
without weights gets the spec's own initial weights sent through it, so what
the spec says is what the model holds.

    >>> from strata.compiler import build_file
    >>> net = compile_graph(build_file("specs/tiny_shakespeare.arch"))
    >>> type(net).__name__, net.strata_graph.graph.name
    ('TinyShakespeare', 'tiny_shakespeare')
"""

from __future__ import annotations

import os
from pathlib import Path

from strata.backends.torch import generate_source
from strata.backends.torch.loader import load_source
from strata.backends.torch.workflows.calibration import load_calibration
from strata.backends.torch.workflows.runner import RUNNER
from strata.compiler.ir import state_dict_shapes, without_passes
from strata.errors import UsageError
from strata.passes import REGISTRY, PassContext, apply_passes, make_pass
from strata.passes import report as pass_report
from strata.passes.weight_transfer import transform
from strata.resources import check_fits
from strata.safetensors_file import DTYPE_HINT, read_header

__all__ = ["compile_graph", "run_kernels"]


def _spec_fit(g0, tensors: dict) -> bool:
    """Whether `tensors` are in the names and shapes of g0 (the spec's own)."""
    want = state_dict_shapes(g0)
    tied = {f"{n}.{k}" for n, d in g0.nodes(data=True) for k in d.tied}
    have = {k: tuple(v.shape) for k, v in tensors.items() if k not in tied}
    return have == want


def _device_problems(g, device) -> None:
    """Refuse a model whose passes have no kernel on `device` (each pass's
    `device_problem` hook says why)."""
    where = device if device is not None else "cpu"
    names = {a["name"] for a in g.graph.get("applied", [])}
    for name, cls in REGISTRY.items():
        why = cls.device_problem(g, where) if name in names else None
        if why:
            raise UsageError(why)


def _initial_state(g0, device, module_name: str):
    """The spec's own model (no passes), freshly initialised: its state dict."""
    import torch  # lazy: torch

    plain = without_passes(g0)
    _check_fits(plain, device)
    mod = load_source(generate_source(plain), module_name)
    with torch.device(device or "cpu"):
        net = mod.build()
    return {k: v.detach() for k, v in net.state_dict().items()}


def _read(weights, dtype, cast: bool) -> dict:
    """The checkpoint's tensors, header checked first; a tensor of another dtype
    than the model's is refused unless `cast` (then converted, before any pass
    concatenates or factors it)."""
    import torch  # lazy: torch
    from safetensors.torch import load_file  # lazy: torch

    from strata.backends.torch.packed import is_packed  # lazy: torch
    from strata.backends.torch.weights_file import WeightsError  # lazy: torch

    header, _ = read_header(weights)
    want = str(dtype or torch.get_default_dtype()).removeprefix("torch.")
    # a compressed checkpoint's integers and int4 biases are checked against the spec once read
    wrong = [] if is_packed(header) else [f"{k} is {t.torch_dtype}, the model's is {want}"
                                          for k, t in header.items() if t.torch_dtype != want]
    if wrong and not cast:
        raise WeightsError(f"{weights}: {len(wrong)} tensor(s) have another dtype than the model: "
                           f"{'; '.join(wrong[:4])}{' ...' if len(wrong) > 4 else ''}"
                           f"{DTYPE_HINT}")
    try:
        tensors = load_file(str(Path(weights)))
    except Exception as e:  # SafetensorError: the file changed since its header was checked
        raise WeightsError(f"{weights}: cannot read the tensors ({e})") from None
    if wrong:
        tensors = {k: v.to(dtype or torch.get_default_dtype()) for k, v in tensors.items()}
    return tensors


def _check_fits(g, device) -> None:
    import torch  # lazy: torch

    if device is None or torch.device(device).type == "cpu":
        n = g.graph.parameters  # built in the default dtype first, whatever `dtype` says
        check_fits(n * torch.get_default_dtype().itemsize, f"{g.graph['name']} ({n:,} parameters)",
                   'build it with device="meta" to inspect it without allocating')


def state_dtype(dtype):
    import torch  # lazy: torch

    return dtype or torch.get_default_dtype()


def _packed(g, tensors: dict, where: str, dtype) -> tuple[dict, dict]:
    """A compressed checkpoint (the model's names): its quantized linears' integers
    and its other tensors, each float one in the model's dtype (an int4 layer's
    bf16 bias goes into the float model exactly and back to bf16 with the layer)."""
    import torch  # lazy: torch

    from strata.backends.torch.packed import read_packed  # lazy: torch
    from strata.backends.torch.weights_file import WeightsError  # lazy: torch

    int4 = {k.rpartition(".")[0] for k in tensors if k.endswith(".weight_packed")}
    qweights, rest = read_packed(tensors, g, where)
    want = dtype or torch.get_default_dtype()
    for k, v in rest.items():
        int4_bias = k.rpartition(".")[0] in int4 and k.endswith(".bias") and v.dtype == torch.bfloat16
        if v.dtype != want and not int4_bias:
            raise WeightsError(f"{where}: {k} is {str(v.dtype).removeprefix('torch.')}, the model's is "
                               f"{str(want).removeprefix('torch.')}")
    return qweights, {k: v.to(want) for k, v in rest.items()}


def compile_graph(g0, *, origin=None, weights=None, device=None, dtype=None, calibration=None,
                  quantize: bool = True, tokenizer=None, cast: bool = False, qweights=None,
                  trained: int | None = None):
    """The module for graph `g0` (passes pending in g0.graph.passes); qweights:
    {quantized linear (the model's name): QuantizedWeight} integers to run as given
    (a calibration method's), the others rounded to nearest; trained: the context
    the weights were trained at, which calibration rows are cut to (row_length).  `weights` may be a
    compressed checkpoint (strata/backends/torch/packed.py): its integers go
    straight into the kernels."""
    import torch  # lazy: torch

    from strata.backends.torch.packed import is_packed  # lazy: torch
    from strata.backends.torch.weights_file import load_state  # lazy: torch

    qweights = dict(qweights or {})
    own_names = False  # whether `state` below is in the compiled model's names
    calib = None
    if calibration is not None:
        calib = load_calibration(calibration, g0, tokenizer, trained)
    tensors = _read(weights, dtype, cast) if weights is not None else None
    todo = g0.graph.get("passes", [])
    values = any(make_pass(p["name"], p["options"]).acts_on_values for p in todo if p["name"] in REGISTRY)
    initial = todo and tensors is None and values and str(device) != "meta"
    if initial:  # the spec's initialisation through the passes: nothing trained to calibrate on
        tensors = _initial_state(g0, device, g0.graph.name)
    if tensors is not None and is_packed(tensors):
        g = apply_passes(g0, ctx=PassContext(calibration=calib, runner=RUNNER))
        found, state = _packed(g, tensors, str(weights), dtype)
        if quantize and str(device) != "meta":
            qweights.update(found)
        else:  # no kernels asked for: the float weights the integers stand for
            state.update({f"{n}.weight": qw.dequantize(state_dtype(dtype)) for n, qw in found.items()})
    elif todo and tensors is not None and _spec_fit(g0, tensors):
        found = {}
        g, state = transform(g0, tensors, calibration=calib, runner=RUNNER, quantized=found,
                             initial=bool(initial))
        # in the model's names already: a pass that keeps names (a mask) must not read them as the
        # spec's and convert them again (Wanda again, without calibration, was refused)
        own_names = True
        if quantize and str(device) != "meta":
            qweights.update(found)  # a calibration method's integers (GPTQ) run as it chose them
    else:
        g, state = apply_passes(g0, ctx=PassContext(calibration=calib, runner=RUNNER)), tensors
    if quantize:
        _device_problems(g, device)
    source = generate_source(g, origin=origin)
    module = load_source(source, g.graph.name)
    _check_fits(g, device)
    if device is not None:
        with torch.device(device):
            net = module.build()
    else:
        net = module.build()
    if dtype is not None:
        net = net.to(dtype=dtype)
    net.strata_source = source
    net.strata_graph = g
    if state is not None:
        if qweights:  # the integers replace these weights: the model's own stand in until then
            own = net.state_dict()
            state = {**{f"{n}.weight": own[f"{n}.weight"] for n in qweights if f"{n}.weight" in own}, **state}
        load_state(net, state, where=str(weights) if isinstance(weights, (str, os.PathLike)) else "<state dict>",
                   own_names=own_names)
    net.strata_report = pass_report(g)
    if quantize and str(device) != "meta":
        run_kernels(net, torch_compile=quantize == "torch_compile", qweights=qweights)
    return net


def run_kernels(net, *, torch_compile: bool = False, qweights=None):
    """The generated file's steps after loading, on a compiled model holding its
    float weights: sparsify(model), then quantize(model) (qweights: {linear:
    QuantizedWeight} integers to run as given); return the model."""
    import inspect  # lazy: startup

    module = inspect.getmodule(type(net))
    for step in ("sparsify", "quantize"):
        fn = getattr(module, step, None)
        if fn is None:
            continue
        try:
            if step == "quantize":
                fn(net, torch_compile=torch_compile, packed=qweights)
            else:
                fn(net)
        except RuntimeError as e:
            raise UsageError(f"{step}: {e}") from None
    net.strata_report += list(getattr(net, "sparsity", [])) + list(getattr(net, "quantization", []))
    return net
