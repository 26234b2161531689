"""From a graph with passes to a running module, weights carried through:

    read the checkpoint (names and shapes checked before a tensor is read)
    run the passes with the weights flowing through them (strata/passes/weights.py)
    generate the source, build on the device, load the transformed weights
    quantize(model) / sparsify(model): the generated file's steps after loading

A pass that changes weight values (pruning masks) applied to a model compiled
without weights gets the spec's own initial weights sent through it, so what
the spec says is what the model holds.

    >>> # net = compile_graph(build_file("m.arch"), weights="w.safetensors")
"""

from __future__ import annotations

from pathlib import Path

from strata.errors import UsageError

__all__ = ["compile_graph"]


def _spec_fit(g0, tensors: dict) -> bool:
    """Whether `tensors` are in the names and shapes of g0 (the spec's own)."""
    from strata.compiler.ir import state_dict_shapes

    want = state_dict_shapes(g0)
    tied = {f"{n}.{k}" for n, d in g0.nodes(data=True) for k in d["tied"]}
    have = {k: tuple(v.shape) for k, v in tensors.items() if k not in tied}
    return have == want


def _device_problems(g, device) -> None:
    from strata.passes.quantize import device_problem

    where = device if device is not None else "cpu"
    for n, d in g.nodes(data=True):
        why = device_problem(d["attrs"].get("quant_scheme") or "", where) if d["attrs"].get("quant_scheme") else None
        if why:
            raise UsageError(f"{n}: {why}")
    if g.graph.get("sparse_2_4") and str(where).split(":")[0] != "meta":
        import torch

        dev = torch.device(where)
        if dev.type != "cuda" or torch.cuda.get_device_capability(dev) < (8, 0):
            raise UsageError("prune(method=\"2:4\") runs on the semi-structured sparse kernels of CUDA GPUs "
                             f"of compute capability >= 8.0, not on {dev.type}; on this device use "
                             "prune(method=structured) for speed or magnitude for sparsity")


def _initial_state(g0, device, module_name: str):
    """The spec's own model (no passes), freshly initialised: its state dict."""
    import torch

    from strata.backends.torch import generate_source
    from strata.backends.torch.loader import load_source

    plain = g0.copy()
    plain.graph = {**g0.graph, "passes": []}
    _check_fits(plain, device)
    mod = load_source(generate_source(plain), module_name)
    with torch.device(device or "cpu"):
        net = mod.build()
    return {k: v.detach() for k, v in net.state_dict().items()}


def _read(weights, dtype, cast: bool) -> dict:
    """The checkpoint's tensors, header checked first; a tensor of another dtype
    than the model's is refused unless `cast` (then converted, before any pass
    concatenates or factors it)."""
    import torch
    from safetensors.torch import load_file

    from strata.backends.torch.weights import WeightsError
    from strata.safetensors_file import read_header

    header, _ = read_header(weights)
    want = str(dtype or torch.get_default_dtype()).removeprefix("torch.")
    wrong = [f"{k} is {t.torch_dtype}, the model's is {want}" for k, t in header.items()
             if t.torch_dtype != want]
    if wrong and not cast:
        raise WeightsError(f"{weights}: {len(wrong)} tensor(s) have another dtype than the model: "
                           f"{'; '.join(wrong[:4])}{' ...' if len(wrong) > 4 else ''}; pass "
                           "cast=True (--cast) to convert them, or build the model in that dtype")
    try:
        tensors = load_file(str(Path(weights)))
    except Exception as e:  # SafetensorError: the file changed since its header was checked
        raise WeightsError(f"{weights}: cannot read the tensors ({e})") from None
    if wrong:
        tensors = {k: v.to(dtype or torch.get_default_dtype()) for k, v in tensors.items()}
    return tensors


def _check_fits(g, device) -> None:
    import torch

    if device is None or torch.device(device).type == "cpu":
        from strata.resources import check_fits

        n = g.graph["parameters"]  # built in the default dtype first, whatever `dtype` says
        check_fits(n * torch.get_default_dtype().itemsize, f"{g.graph['name']} ({n:,} parameters)",
                   'build it with device="meta" to inspect it without allocating')


def compile_graph(g0, *, origin=None, weights=None, device=None, dtype=None, calibration=None,
                  quantize: bool = True, tokenizer=None, cast: bool = False):
    """The module for graph `g0` (passes pending in g0.graph["passes"])."""
    import torch

    from strata.backends.torch import generate_source
    from strata.backends.torch.loader import load_source
    from strata.backends.torch.weights import load_state
    from strata.passes import REGISTRY, apply_passes, make_pass
    from strata.passes import report as pass_report
    from strata.passes.weights import transform

    calib = None
    if calibration is not None:
        from strata.passes.calibration import load_calibration

        calib = load_calibration(calibration, g0, tokenizer)
    tensors = _read(weights, dtype, cast) if weights is not None else None
    todo = g0.graph.get("passes", [])
    values = any(make_pass(p["name"], p["options"]).acts_on_values for p in todo if p["name"] in REGISTRY)
    if todo and tensors is None and values and str(device) != "meta":
        tensors = _initial_state(g0, device, g0.graph["name"])
    if todo and tensors is not None and _spec_fit(g0, tensors):
        g, state = transform(g0, tensors, calibration=calib)
    else:
        from strata.passes import PassContext

        g, state = apply_passes(g0, ctx=PassContext(calibration=calib)), tensors
    if quantize:
        _device_problems(g, device)
    source = generate_source(g, origin=origin)
    module = load_source(source, g.graph["name"])
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
        load_state(net, state)
    net.strata_report = pass_report(g)
    if quantize and str(device) != "meta":
        for step in ("sparsify", "quantize"):
            fn = getattr(module, step, None)
            if fn is None:
                continue
            try:
                fn(net, torch_compile=True) if step == "quantize" and quantize == "torch_compile" else fn(net)
            except RuntimeError as e:
                raise UsageError(f"{step}: {e}") from None
        net.strata_report += list(getattr(net, "sparsity", [])) + list(getattr(net, "quantization", []))
    return net
