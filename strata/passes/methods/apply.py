"""The calibrated methods as the weight transforms of the quantize and prune
passes: each streams the calibration data block by block (ctx.stream: the
backend's strata/backends/torch/workflows/stream.py) and
rewrites the state dict in place; the pass's record gets what was done.

    quantize(..., method=gptq)   weights := GPTQ's choice on the scheme's grid;
                                 the integers go to ctx.quantized[linear]; streamed
                                 sequentially inside a block unless sequential=false
    quantize(..., method=awq)    W := W diag(s), norm := norm / s (AWQ's search), and
                                 down / o likewise with up / v; then W := AWQ's clipping
    quantize(..., smooth=a)      W := W diag(s), norm := norm / s (SmoothQuant), and
                                 down / o likewise with up / v
    quantize(int8_static, ...)   each linear's activation scale := max |x| / 127.5 over
                                 the calibration inputs it reads (after any smoothing);
                                 its integers and that scale go to ctx.quantized[linear]
    prune(..., method=sparsegpt) W := SparseGPT's pruned and updated weights

Errors recorded per linear are relative output errors on the calibration
inputs, sqrt(tr(D H D^T) / tr(W H W^T)) with D the change to W, for the method
and for the plain rounding / magnitude mask it replaces.
"""

from __future__ import annotations

from strata.passes.methods.awq import awq_clip, awq_scale, awq_scale_at
from strata.passes.methods.blocks import PROBE, block_of, common_module, input_of
from strata.passes.methods.scale_fold import apply_pair, apply_scale, linear_pairs, norm_groups, \
    unpaired_reason
from strata.passes.methods.gptq import gptq
from strata.passes.methods.grid import Grid
from strata.passes.methods.smoothquant import smooth_scale
from strata.passes.methods.sparsegpt import sparsegpt

__all__ = ["calibrated_prune", "calibrated_quantize", "magnitude_masks"]

AWQ_ROWS = 4096  # input rows AWQ's search multiplies (per input: [rows, in] floats)


def _rel(W, D, H) -> float:
    W, D = W.double(), D.double()
    den = float(((W @ H) * W).sum())
    return round((float(((D @ H) * D).sum()) / den) ** 0.5, 6) if den > 0 else 0.0


def _magnitude(W, amount: float, nm):
    import torch  # lazy: torch

    if nm is not None:
        groups = W.abs().view(W.shape[0], -1, nm[1])
        keep = torch.zeros_like(groups, dtype=torch.bool)
        keep.scatter_(2, groups.topk(nm[1] - nm[0], dim=2).indices, True)
        return W * keep.view_as(W)
    keep = torch.ones(W.numel(), dtype=torch.bool)
    keep[W.abs().flatten().argsort()[:int(W.numel() * amount)]] = False
    return W * keep.view_as(W)


def calibrated_quantize(o, record: dict, state: dict, ctx) -> dict:
    """The quantize pass's transform for method=gptq / awq, smooth=alpha or
    int8_static's activation scales (options `o`)."""
    g, out = ctx.graph, dict(state)
    nodes = [n for n in record["linears"] if f"{n}.weight" in out]
    grid = Grid(o.scheme, None if o.group_size == "channel" else o.group_size)
    skipped: dict[str, str] = {}
    if o.method == "gptq":
        errors: dict[str, dict] = {}

        def handle(block, stats):
            for n in block:
                s = stats[input_of(g, n)]
                if s["n"] == 0:
                    skipped[n] = "no calibration input reached it"
                    continue
                W = out[f"{n}.weight"]
                qw = gptq(W, s["H"], grid, act_order=o.act_order, observer=o.observer)
                errors[n] = {"gptq": _rel(W, W.double() - qw.weight.double(), s["H"]),
                             "rtn": _rel(W, W.double() - grid.rtn(W).weight.double(), s["H"])}
                out[f"{n}.weight"] = qw.weight
                ctx.quantized[n] = qw
        cost = ctx.stream(out, nodes, handle, sequential=o.sequential is not False)
        record["error"] = errors
    elif o.method == "rtn" and o.smooth is None:  # int8_static alone: the scales of what each linear reads
        in_scales: dict[str, float] = {}
        cost = ctx.stream(out, nodes, lambda block, stats: in_scales.update(
            _input_scales(g, block, stats, {}, skipped)), hessian=False)
        _static(ctx, out, grid, in_scales, record)
    else:
        awq = o.method == "awq"
        static = o.scheme == "int8_static"
        in_scales = {}
        groups, skipped = norm_groups(g, nodes, out)
        pairs = linear_pairs(g, nodes, out)  # {down: up, o: v}: a scale folds exactly into the producer
        for n in pairs:
            skipped.pop(n, None)
        for n in list(skipped):
            skipped[n] = unpaired_reason(g, n) or skipped[n]
        chosen = {r for rs in groups.values() for r in rs if r in nodes}
        scales: dict[str, dict] = {}
        clips: dict[str, dict] = {}

        def handle(block, stats):
            xs = {}  # AWQ: each linear's input rows as it reads them after the scales
            # SmoothQuant: input node -> the s [in] this block's readers now read x / s by (the stats
            # were measured before; a later block's are measured after, so this is the block's own)
            applied = {}
            for norm, readers in groups.items():
                sel = [r for r in readers if r in block]
                if not sel or norm in scales:
                    # one scale a norm, chosen where it is first read, for all its readers: an
                    # encoder's final norm is read by every decoder block's cross-attention, and
                    # scaling it again at each would compound the migration
                    continue
                s = stats[norm] if norm in stats else stats[input_of(g, sel[0])]
                if any(r not in block and r in nodes for r in readers):  # the same x reaches them all
                    sel = [r for r in readers if r in nodes]
                Ws = [out[f"{r}.weight"] for r in sel]
                if awq:
                    module = _module_of(sel)
                    if module in stats[PROBE]:  # the reference's loss: the attention's or MLP's output
                        scale, alpha, err, rtn = awq_scale_at(
                            dict(zip(sel, Ws)), s["mean"], grid, lambda r, m=module: stats[PROBE](m, r))
                    else:
                        scale, alpha, err, rtn = awq_scale(Ws, s["x"], s["mean"], grid)
                        module = None
                    scales[norm] = {"alpha": alpha, "error": round(err, 6), "rtn_error": round(rtn, 6),
                                    "measured_at": module or "each linear's output"}
                    xs.update({r: s["x"] / scale.float() for r in sel})
                else:
                    scale = smooth_scale(Ws, s["absmax"], o.smooth)
                    scales[norm] = {"alpha": o.smooth, "max_scale": round(float(scale.max()), 4),
                                    "min_scale": round(float(scale.min()), 4)}
                    applied[norm] = scale
                apply_scale(g, out, norm, readers, scale)
            for n in block:
                s = stats[input_of(g, n)]
                if s["n"] == 0:
                    skipped[n] = "no calibration input reached it"
                    continue
                if not awq:  # SmoothQuant: down's input (act(gate) * up) is where SwiGLU's outliers are
                    if n in pairs:
                        scale = smooth_scale([out[f"{n}.weight"]], s["absmax"], o.smooth)
                        scales[n] = {"alpha": o.smooth, "max_scale": round(float(scale.max()), 4),
                                     "min_scale": round(float(scale.min()), 4), "folded_into": pairs[n]}
                        apply_pair(out, pairs[n], n, scale)
                        applied[input_of(g, n)] = scale
                    continue
                xs.setdefault(n, s["x"])
                if n in pairs:
                    scale, alpha, err, rtn = awq_scale([out[f"{n}.weight"]], s["x"], s["mean"], grid)
                    scales[n] = {"alpha": alpha, "error": round(err, 6), "rtn_error": round(rtn, 6),
                                 "folded_into": pairs[n]}
                    apply_pair(out, pairs[n], n, scale)
                    xs[n] = s["x"] / scale.float()
            if not awq:
                if static:
                    in_scales.update(_input_scales(g, block, stats, applied, skipped))
                return
            for n in block:
                if n in xs and g.nodes[n].attrs.get("role") not in ("q", "k"):
                    W = out[f"{n}.weight"]
                    clipped, err, plain = awq_clip(W, xs[n], grid)
                    out[f"{n}.weight"] = clipped.to(W.dtype)
                    clips[n] = {"error": round(err, 6), "rtn_error": round(plain, 6)}
        probe = (lambda part: {_module_of([r for r in rs if r in part]) for rs in groups.values()
                               if any(r in part for r in rs)} - {""}) if awq else None
        cost = ctx.stream(out, nodes if awq or static else sorted(chosen | set(pairs)), handle, hessian=False,
                          rows=AWQ_ROWS if awq else 0, modules=probe)
        record["scales"] = scales
        if static:
            _static(ctx, out, grid, in_scales, record)
        if awq:
            record["clip"] = clips
    record["skipped"] = skipped
    record["calibration"] = cost
    return out


def _input_scales(g, block: list[str], stats: dict, applied: dict, skipped: dict) -> dict[str, float]:
    """int8_static: {linear: the scale of its int8 activations}, the largest |x| it
    read over the calibration data / 127.5 (compressed-tensors' symmetric min / max
    observer), x divided by the SmoothQuant scale folded into it (`applied`)."""
    out = {}
    for n in block:
        key = input_of(g, n)
        s = stats[key]
        if s["n"] == 0:
            skipped[n] = "no calibration input reached it"
            continue
        amax = s["absmax"] / applied[key] if key in applied else s["absmax"]
        out[n] = max(float(amax.max()) / 127.5, 1e-12)
    return out


def _static(ctx, out: dict, grid: Grid, in_scales: dict[str, float], record: dict) -> None:
    """Hand on each int8_static linear's integers (of its final weight) with its
    activation scale; the record keeps the scales."""
    import torch  # lazy: torch

    for n, sc in in_scales.items():
        qw = grid.rtn(out[f"{n}.weight"])
        qw.input_scale = torch.tensor([sc], dtype=torch.float32)
        ctx.quantized[n] = qw
    record["input_scale"] = {n: float(f"{sc:.6g}") for n, sc in in_scales.items()}


def _module_of(readers: list[str]) -> str:
    """The module around a norm's readers whose output AWQ's loss is measured
    at (q, k, v -> the attention; gate, up -> the MLP): the innermost holding
    them all, inside their block; "" when that is the block itself or none."""
    m = common_module(readers)
    return m if m and len(m) > len(block_of(readers[0])) else ""


def magnitude_masks(o, record: dict, state: dict) -> dict:
    """The same count (or n:m pattern) of smallest weights zeroed: on weights
    SparseGPT already pruned this keeps exactly its zeros."""
    out = dict(state)
    nm = tuple(int(v) for v in o.pattern.split(":")) if o.pattern else None
    for n in record["layers"]:
        if f"{n}.weight" in out:
            out[f"{n}.weight"] = _magnitude(out[f"{n}.weight"], o.amount, nm)
    return out


def calibrated_prune(o, record: dict, state: dict, ctx) -> dict:
    """The prune pass's transform for method=sparsegpt (options `o`)."""
    g, out = ctx.graph, dict(state)
    nodes = [n for n in record["layers"] if f"{n}.weight" in out]
    nm = tuple(int(v) for v in o.pattern.split(":")) if o.pattern else None
    errors: dict[str, dict] = {}

    def handle(block, stats):
        for n in block:
            s = stats[input_of(g, n)]
            W = out[f"{n}.weight"]
            if s["n"] == 0:  # nothing to weigh by: the magnitude mask
                out[f"{n}.weight"] = _magnitude(W, o.amount, nm)
                continue
            pruned, keep = sparsegpt(W, s["H"], o.amount, nm=nm)
            errors[n] = {"sparsegpt": _rel(W, W.double() - pruned.double(), s["H"]),
                         "magnitude": _rel(W, W.double() - _magnitude(W, o.amount, nm).double(), s["H"])}
            out[f"{n}.weight"] = pruned
            record["density"][n] = round(float(keep.float().mean()), 6)
    record["calibration"] = ctx.stream(out, nodes, handle)
    record["error"] = errors
    return out
