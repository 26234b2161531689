"""`strata compress SPEC --weights W [--pass ...] -o OUT/`: a checkpoint through
the passes, written as a spec again.

    OUT/model.arch          the compressed model's spec (strata/passes/spec_writer.py)
    OUT/weights.safetensors its weights, in its own names (what save_weights writes)
    OUT/report.json         what each pass did, parameters and bytes before / after,
                            logits SQNR of the compressed model against the original,
                            and the run the weights came from (its objective, settings, data)
    OUT/tokenizer.json      the tokenizer of that run, when there is one

The folder is written whole or not at all: everything is made in a temporary
folder beside OUT, then moved into place (a failure leaves OUT as it was).

`strata check / summary / diagram / compile / train` take OUT/model.arch like
any spec; compiling it with OUT/weights.safetensors gives the compressed model.

In code::

    compress("gpt2.arch", "gpt2.safetensors", "out/", passes=['quantize(int8_dynamic)'])
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from strata.backends.torch.compile import _device_problems, _spec_fit, compile_graph, run_kernels
from strata.backends.torch.spec_names import to_spec_names
from strata.backends.torch.workflows.calibration import MAX_ROWS, _context, _vocab, held_out_rows, model_inputs, \
    trained_context
from strata.backends.torch.workflows.runner import RUNNER
from strata.compiler import build_file, build_text
from strata.compiler.cost import weight_bytes
from strata.compiler.ir import param_count, without_passes
from strata.errors import UsageError
from strata.io import atomic_folder, read_regular, write_atomic
from strata.passes import apply_passes, make_pass, report
from strata.passes.spec_writer import compressed_spec
from strata.passes.text import parse_pass_texts
from strata.passes.weight_transfer import transform
from strata.safetensors_file import tensor_bytes

__all__ = ["CompressResult", "compress", "eval_table", "forward_latency"]

FILES = ("model.arch", "weights.safetensors", "report.json")
TOKENIZER = "tokenizer.json"  # a copy of the run's, so eval / generate read text with it
# rows, length of the random ids the logits are compared on without held-out calibration rows
SQNR_TOKENS = (2, 64)


@dataclass
class CompressResult:
    out: Path
    report: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        r = self.report
        out = [f"wrote {self.out / f}" for f in FILES + (TOKENIZER,) if (self.out / f).is_file()]
        if r.get("calibrated_on"):
            out.append(f"  {r['calibrated_on']}")
        for p in r["passes"]:
            out.append(f"  {p['report']}")
            layers = p.get("auto", {}).get("layers", {})  # quantize(auto): each linear's choice
            w = max(map(len, layers), default=0)
            out += [f"    {n:<{w}}  {x['scheme']:<11} {x['bits']:6.2f} bits  KL " +
                    ", ".join(f"{s} {v:.3g}" for s, v in x["kl"].items()) for n, x in layers.items()]
        p, b = r["parameters"], r["weight_bytes"]
        out.append(f"  parameters {p['before']:,} -> {p['after']:,}; weights {b['before'] / 2**20:.1f} MiB "
                   f"-> {b['compiled'] / 2**20:.1f} MiB compiled ({b['file'] / 2**20:.1f} MiB on disk)")
        sqnr = r["logits"]["sqnr_db"]
        on = r["logits"].get("ids_from", "random ids")
        out.append(f"  logits SQNR {sqnr:.1f} dB against the original, on {on}" if sqnr is not None
                   else f"  logits equal to the original's, on {on}")
        if r.get("finetune"):
            f = r["finetune"]
            out.append(f"  finetune {f['steps']} steps ({f['seconds']:.0f} s), distilled from the original: "
                       f"held-out perplexity {f['before']['perplexity']:.4g} -> {f['after']['perplexity']:.4g} "
                       f"(original {f['teacher']['perplexity']:.4g})")
        if r.get("eval"):
            out += eval_table(r["eval"])
        return out


def eval_table(e: dict) -> list[str]:
    """The original and the compressed model side by side: quality, bytes on disk,
    forward latency."""
    o, c = e["original"], e["compressed"]
    rows = [("", "original", "compressed", "")]
    if "perplexity" in o:  # a language model: as `strata eval` prints it
        rows.append(("perplexity", f"{o['perplexity']:.2f}", f"{c['perplexity']:.2f}",
                     f"{c['perplexity'] / o['perplexity']:.3f}x"))
    elif "accuracy" in o:  # a classifier: its loss is the row below
        rows.append(("accuracy", f"{o['accuracy']:.2%}", f"{c['accuracy']:.2%}",
                     f"{c['accuracy'] / o['accuracy']:.3f}x" if o["accuracy"] else ""))
    unit = "predictions" if "perplexity" in o else "examples"
    rows.append(("loss", f"{o['loss']:.4f}", f"{c['loss']:.4f}", f"{c['count']:,} {unit}, {o['data']}"))
    if e.get("bytes_on_disk"):
        b = e["bytes_on_disk"]
        rows.append(("weights on disk", f"{b['original'] / 2**20:.2f} MiB", f"{b['compressed'] / 2**20:.2f} MiB",
                     f"{b['compressed'] / b['original']:.3f}x"))
    if e.get("latency"):
        t = e["latency"]
        rows.append(("forward", f"{t['original_ms']:.2f} ms", f"{t['compressed_ms']:.2f} ms",
                     f"{t['ratio']:.2f}x (median of {t['repeats']}, side by side, "
                     f"{t['batch'][0]}x{t['batch'][1]} tokens)"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return ["  " + f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip()
            for r in rows]


def forward_latency(original, compressed, g, repeats: int = 10) -> dict:
    """Milliseconds per forward pass of the two models on the same random batch
    (SQNR_TOKENS), timed in turns so that both see the same machine load; medians."""
    import torch  # lazy: torch

    x = model_inputs(g, _ids(g))
    times: dict[str, list[float]] = {"original": [], "compressed": []}
    with torch.no_grad():
        for i in range(repeats + 2):  # two rounds of warm-up
            for name, net in (("original", original), ("compressed", compressed)):
                start = time.perf_counter()
                net(*x)
                if i >= 2:
                    times[name].append((time.perf_counter() - start) * 1e3)
    o, c = statistics.median(times["original"]), statistics.median(times["compressed"])
    return {"original_ms": round(o, 3), "compressed_ms": round(c, 3), "ratio": round(c / o, 3),
            "repeats": repeats, "batch": list(x[0].shape)}


def _sqnr(ref, y) -> float | None:
    """Signal-to-quantization-noise ratio in dB (None when the two are equal)."""
    err = (ref.float() - y.float()).norm()
    if err == 0:
        return None
    return round(float(20 * (ref.float().norm() / err).log10()), 2)


def _classify(g, adapters: str = "merge") -> tuple[list[str], list[str], list[dict], list[dict]]:
    """(passes kept in the new spec, notes on what the weights now hold,
    structured records, applied entries to merge into the weights): each pass
    says how it is stored (its `stored` hook; adapters="keep" keeps LoRA's
    adapters, the lora pass written in the new spec)."""
    kept, notes, structured, merge = [], [], [], []
    for a in g.graph.get("applied", []):
        s = make_pass(a["name"], a["options"]).stored(a, g, adapters)
        kept += s.kept
        notes += s.notes
        if s.structured is not None:
            structured.append(s.structured)
        if s.merge:
            merge.append(a)
    return kept, notes, structured, merge


def _merged_lora(g0, adapters: str) -> list[str]:
    """With adapters merged, the labels of the lora passes taken out of g0's passes when
    others run too.  The weights compress reads hold no adapters apart (a LoRA run saves
    them merged; a kept one is merged on reading), so a lora pass would add zero adapters,
    and those stood in the way of the passes after it: quantize refused the linears that
    carry them, fuse_qkv and prune passed them over, low_rank's factors did not load."""
    passes = [(p, make_pass(p["name"], p["options"])) for p in g0.graph.passes]
    if adapters != "merge" or all(made.adds_adapters for _, made in passes):
        return []
    g0.graph.passes = [p for p, made in passes if not made.adds_adapters]
    return [made.label() for _, made in passes if made.adds_adapters]


def _ids(g):
    """SQNR_TOKENS of random ids (seeded: the same on every run)."""
    import torch  # lazy: torch

    gen = torch.Generator().manual_seed(0)
    T = min(_context(g), SQNR_TOKENS[1])
    return torch.randint(0, _vocab(g) or 2, (SQNR_TOKENS[0], T), generator=gen)


def compress(spec: str | Path, weights: str | Path, out: str | Path, *, passes: list[str] = (),
             model: str | None = None, calibration=None, tokenizer=None, overwrite: bool = False,
             source_run: dict | None = None, adapters: str = "merge", tune=None,
             calibrated_on: str | None = None, cli: bool = False) -> CompressResult:
    """Run the spec's passes and `passes` on `weights` (a .safetensors file); write
    OUT (see the module docstring).  tokenizer: the tokenizer.json of the run the
    weights came from (read calibration text with it; copied into OUT);
    source_run: that run's objective, settings and data, kept in report.json;
    adapters: "merge" LoRA adapters into their base weights (one matmul a layer,
    the serving form) or "keep" them as adapters (the base weights and lora_a /
    lora_b stored apart, the lora pass written in the new spec);
    tune(student, teacher, g0, g) -> dict: trains the compressed model (float
    weights, in place) before it is written (strata.train.recover), its
    figures kept as report.json's "finetune"; calibrated_on: where `calibration`
    came from, in words, when the caller chose it (report.json's "calibrated_on");
    cli: a pass refused for the adapters kept names `--adapters merge`, else
    `adapters="merge"` (the words of the caller's user)."""
    if adapters not in ("merge", "keep"):
        raise UsageError(f"adapters={adapters!r}: merge (into the weights) or keep (as adapters)")
    from safetensors.torch import load_file  # lazy: torch

    from strata.backends.torch.packed import is_packed  # lazy: torch
    from strata.backends.torch.weights_file import checkpoint_shapes  # lazy: torch
    from strata.passes.qparams import QUANTIZED  # lazy: torch

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    clash = [f for f in FILES + (TOKENIZER,) if (out / f).exists()]
    if clash and not overwrite:
        raise UsageError(f"{out / clash[0]} exists: --overwrite replaces it, or -o names another folder")
    g0 = build_file(spec, model=model, need_teacher=False)
    g0.graph.passes = list(g0.graph.passes) + parse_pass_texts(list(passes), g0)
    if not g0.graph.passes:
        raise UsageError("no passes to apply: the spec has no passes { } and no --pass was given")
    merged = _merged_lora(g0, adapters)
    if is_packed(checkpoint_shapes(weights)):  # a compressed checkpoint compressed again
        tensors = _float_state(spec, model, weights)
    else:
        tensors = load_file(str(weights))
        if not _spec_fit(g0, tensors) and _spec_fit(apply_passes(build_file(spec, model=model, need_teacher=False)), tensors):
            # in the names of the spec's model after its passes (a compress output of float
            # factors or kept adapters): the spec's own names, as a packed one's
            tensors = _float_state(spec, model, weights)
    if not _spec_fit(g0, tensors):
        raise UsageError(f"{weights}: compress reads weights in the spec's own names and shapes (as "
                         "save_weights, strata train and import-hf write them); these do not fit "
                         f"{Path(spec).name}")
    # the logits are compared on rows calibration did not fit to (on its own rows GPTQ reads
    # several dB better than on any others), else on random ids
    calib, held = held_out_rows(calibration, g0, SQNR_TOKENS[0], tokenizer, trained_context(source_run)) \
        if calibration is not None else (None, None)
    quantized: dict = {}  # a calibration method's integers (GPTQ), by linear
    merge = None if adapters == "merge" else "--adapters merge" if cli else 'adapters="merge"'
    g, state = transform(g0, dict(tensors), calibration=calib, runner=RUNNER, quantized=quantized, merge=merge)
    _device_problems(g, None)  # what cannot run here is refused before anything is written
    kept, notes, structured, merge = _classify(g, adapters)
    notes = [f"{label}: the adapters are merged into its weights" for label in merged] + notes
    for a in reversed(merge):  # merged (LoRA's adapters): the compressed model is for serving
        state = make_pass(a["name"], a["options"]).revert(a["record"], state)
    with atomic_folder(out, FILES + (TOKENIZER,)) as tmp:
        state.update({f"{n}{QUANTIZED}": qw for n, qw in quantized.items() if f"{n}.weight" in state})
        rep = _write(tmp, out, spec, weights, model, g0, g, state, tensors, _compared_on(g0, held, calib),
                     kept, notes, structured, tune)
        if tokenizer is not None:
            write_atomic(tmp / TOKENIZER, read_regular(tokenizer, 256 << 20, "tokenizer"))
        rep["source_run"] = source_run
        if calibrated_on is not None:
            rep["calibrated_on"] = calibrated_on
        rep["tokenizer"] = TOKENIZER if tokenizer is not None else None
        write_atomic(tmp / "report.json", json.dumps(rep, indent=2) + "\n")
    return CompressResult(out, rep)


def _compared_on(g0, held, calib) -> tuple:
    """(ids the logits are compared on, their row numbers in the calibration data
    or None, what they are in words)."""
    if held is not None:
        return held[0], held[1], f"held-out rows {held[1]} of the calibration data"
    why = "" if calib is None else f" (calibration used all {calib.shape[0]} rows; more than {MAX_ROWS} leave some out)"
    return _ids(g0), None, "random ids" + why


def _write(tmp: Path, out: Path, spec, weights, model, g0, g, state, tensors, compared, kept, notes,
           structured, tune=None) -> dict:
    """model.arch and weights.safetensors into `tmp` (paths in the spec written
    relative to `out`, its final place, a sibling of `tmp`), checked by compiling
    them back; the report's figures (the logits compared on `compared`: _compared_on)."""
    import torch  # lazy: torch

    from strata.backends.torch.packed import quantization_config  # lazy: torch
    from strata.backends.torch.sparse_packed import sparsity_config  # lazy: torch
    from strata.backends.torch.weights_file import load_state, save_weights  # lazy: torch
    from strata.passes.qparams import QUANTIZED  # lazy: torch

    arch = tmp / "model.arch"
    text = compressed_spec(spec, model, g0, g, structured, kept, notes, out)
    net = compile_graph(build_text(text, str(arch), need_teacher=False), quantize=False)
    # a calibration method's integers for a linear travel as state[linear + QUANTIZED]
    qweights = {k.removesuffix(QUANTIZED): state[k] for k in state if k.endswith(QUANTIZED)}
    state = {k: v for k, v in state.items() if not k.endswith(QUANTIZED)}
    load_state(net, state)
    base = compile_graph(without_passes(g0))
    load_state(base, tensors)
    # fine-tuning holds quantized linears' weights (their integers stay valid) and pruned zeros
    tuned = tune(net, base, g0, net.strata_graph) if tune is not None else None
    run_kernels(net.eval(), qweights=qweights)  # the compressed model, in memory
    write_atomic(arch, text)
    save_weights(net, tmp / "weights.safetensors", packed=True)  # what it computes with

    ids, rows, ids_from = compared
    small = compile_graph(build_file(arch, need_teacher=False), weights=tmp / "weights.safetensors")
    with torch.no_grad():
        ref, got = base.eval()(*model_inputs(g0, ids)), small.eval()(*model_inputs(g0, ids))
        mem = net(*model_inputs(g0, ids))
    ref, got = (ref, got) if isinstance(ref, torch.Tensor) else (_first(ref), _first(got))
    mem = mem if isinstance(mem, torch.Tensor) else _first(mem)
    before = param_count(g0)
    return {
        "spec": str(spec), "weights": str(weights), "model": g0.graph.name,
        "passes": [{"pass": p["name"], "options": p["options"], "report": line,
                    **make_pass(p["name"], p["options"]).details(p["record"])}
                   for p, line in zip(g.graph.applied, report(g))],
        "written_passes": kept, "notes": notes,
        "parameters": {"before": before, "after": param_count(small.strata_graph)},
        "nonzero_parameters": int(sum(int((v != 0).sum()) for v in state.values() if v.is_floating_point())),
        "weight_bytes": {"before": before * 4, "compiled": weight_bytes(small.strata_graph),
                         "file": (tmp / "weights.safetensors").stat().st_size,
                         # the file less its header: what `summary` prints for OUT/model.arch
                         "file_tensors": tensor_bytes(tmp / "weights.safetensors")},
        "kernels": [x for x in small.strata_report if ": " in x and " on " in x],
        "logits": {"sqnr_db": _sqnr(ref, got), "ids": list(ids.shape), "held_out_rows": rows, "ids_from": ids_from,
                   "max_abs_diff": round(float((ref - got).abs().max()), 6),
                   # the file loaded back computes what the compressed model in memory computed
                   "loaded_equals_in_memory": bool(torch.equal(mem, got))},
        "kept_float": {n: why for p in g.graph.applied for n, why in p["record"].get("kept_float", {}).items()},
        "quantization_config": quantization_config(small.strata_graph),
        "sparsity_config": sparsity_config(small.strata_graph),  # pruned linears stored sparse
        **({"finetune": tuned} if tuned is not None else {}),
    }


def _float_state(spec, model, weights) -> dict:
    """A compressed checkpoint's model as float weights in its spec's own names
    (quantized linears as the floats their integers stand for)."""
    from strata.backends.torch.model_tensors import model_state  # lazy: torch

    net = compile_graph(build_file(spec, model=model, need_teacher=False), weights=weights, quantize=False)
    return {k: v.detach().contiguous() for k, v in to_spec_names(net.strata_graph, model_state(net)).items()}


def _first(outputs):
    """The main output of a model with several (a dict or tuple of tensors)."""
    return next(iter(outputs.values())) if isinstance(outputs, dict) else outputs[0]
