"""`strata export SOURCE --to onnx -o OUT/`: the generated module through
`torch.onnx.export` (the dynamo exporter), for ONNX Runtime.

    OUT/model.onnx                input_ids (batch, seq >= 2) -> logits, present.{i}.{k,v}
    OUT/decoder_with_past.onnx    input_ids (batch, 1), past.{i}.{k,v} (batch, kv_heads, past, head_dim)
                                  -> logits, present.{i}.{k,v} (past + 1 positions)   [causal LMs]
    OUT/onnx.json                 what the files hold (layers, names, context), for the runner
    OUT/tokenizer.json            the source's strata tokenizer, when it has one

A model without an LM head gets model.onnx alone: input_ids -> its first output.
`--int8` runs ONNX Runtime's dynamic quantization on each file (int8 weights of
MatMul / Gemm).  The generated attention asks `T > 1` of a symbolic length; for
export that question is answered (sequences of 2 or more in model.onnx, one
token in the decode graph), so the graphs carry no branch.  A one-token prompt
runs model.onnx on the token twice: position 0 sees only itself (causal).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from strata.backends.torch.compile import compile_graph
from strata.compiler.positions import position_limits
from strata.io import atomic_folder, write_atomic
from strata.train.export_code import ExportError

MODEL, DECODER, INFO, TOKENIZER = "model.onnx", "decoder_with_past.onnx", "onnx.json", "tokenizer.json"
# every name an export writes, the exporter's external data (NAME.data) too
FILES = (MODEL, DECODER, INFO, TOKENIZER, MODEL + ".data", DECODER + ".data")
MAX_SEQ = 4096  # the longest sequence the graphs accept when the spec names no context


@contextlib.contextmanager
def _decided_causal_flag(net):
    """During export, the generated module's `F.scaled_dot_product_attention` gets
    `is_causal` as a Python bool (the exporter's length symbols make it a SymBool,
    which the operator refuses); everything else in `F` is untouched."""
    def sdpa(*args, is_causal=False, **kw):
        return F.scaled_dot_product_attention(*args, is_causal=bool(is_causal), **kw)

    scope = type(net).forward.__globals__
    old = scope.get("F")
    proxy = types.SimpleNamespace(**{n: getattr(F, n) for n in dir(F) if not n.startswith("__")})
    proxy.scaled_dot_product_attention = sdpa
    scope["F"] = proxy
    try:
        yield
    finally:
        scope["F"] = old


def _step_module(net, layers: int):
    """The module with its cache as tensors: (input_ids, *past) -> (logits, *present)."""
    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, input_ids, *past):
            cache = self.net.new_cache(None)
            if past:
                cache.layers = [(past[2 * i], past[2 * i + 1]) for i in range(layers)]
                cache.length = cache.end = past[0].shape[2]
            logits = self.net(input_ids, cache=cache)
            return (logits, *[t for kv in cache.layers for t in kv])

    return Step().eval()


def _example_length(g) -> int:
    """The traced prompt's length: longer than every sliding window.  The generated
    stack builds no mask while T fits the window (SDPA's causal fast path), a
    Python branch the exporter answers once for the example; past the window the
    mask it builds is right for every length."""
    windows = [d.attrs.get("window") or 0 for _, d in g.nodes(data=True) if d.get("op") == "attention"]
    return max([4, *(w + 1 for w in windows)])


def _names(layers: int, prefix: str) -> list[str]:
    return [f"{prefix}.{i}.{kv}" for i in range(layers) for kv in "kv"]


def _export(module, args, path: Path, inputs, outputs, dynamic, what: str) -> None:
    try:
        with torch.no_grad():
            torch.onnx.export(module, args, str(path), dynamo=True, input_names=inputs, output_names=outputs,
                              dynamic_shapes=dynamic, verbose=False)
    except Exception as e:  # the exporter's own errors, whatever their type: one line, the reason
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "Error" in ln and "export" not in ln.lower()[:20]), lines[-1] if lines else "")
        raise ExportError(f"{what}: torch.onnx.export cannot take it: {why[:200]}") from None


def quantize_int8(folder: Path, files: list[str]) -> None:
    """ONNX Runtime's dynamic quantization of each file, in place (int8 weights,
    activations quantized on the fly)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # lazy: optional

    for f in files:
        q = folder / f"{f}.int8"
        quantize_dynamic(str(folder / f), str(q), weight_type=QuantType.QInt8)
        q.replace(folder / f)


def export_onnx(g, weights: Path, tokenizer: Path | None, out: Path, causal: bool, int8: bool = False) -> Path:
    net = compile_graph(g, weights=weights, quantize=False).eval()
    name = g.graph.name
    for step in ("quantize", "sparsify"):
        if f"\ndef {step}(" in net.strata_source:
            raise ExportError(f"model {name}: its {step} pass needs strata's kernels; export the float "
                              "model (and use --int8 for ONNX Runtime's own int8)")
    inputs = [p.name for p in inspect.signature(net.forward).parameters.values()
              if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
    if len(inputs) != 1:
        raise ExportError(f"model {name}: {len(inputs)} inputs ({', '.join(inputs)}); the ONNX export takes "
                          "one-input models (decoders, encoders), not encoder-decoders yet: export it --to hf")
    # the positions' own limit (learned, sinusoidal), not a variable that happens to be named ctx:
    # `position(learned, maxlen)` ran past its table in ONNX Runtime; rotary has none
    ctx = min((p.ctx for p in position_limits(g)), default=None)
    top = int(ctx) if isinstance(ctx, int) and ctx >= 2 else MAX_SEQ
    batch, seq = torch.export.Dim("batch", max=1024), torch.export.Dim("seq", min=2, max=top)
    ids = torch.zeros(2, min(_example_length(g), top), dtype=torch.long)
    files = [MODEL]
    info = {"format": "strata-onnx", "version": 1, "model": name, "causal": causal, "context": ctx,
            "int8": int8, "files": {}}
    with atomic_folder(out, FILES) as tmp, _decided_causal_flag(net):  # an earlier export's replaced
        if causal:
            cache = net.new_cache(None)
            with torch.no_grad():
                net(ids, cache=cache)
            layers = len(cache.layers)
            step = _step_module(net, layers)
            _export(step, (ids,), tmp / MODEL, ["input_ids"], ["logits", *_names(layers, "present")],
                    ({0: batch, 1: seq},), f"model {name} (prefill)")
            with torch.no_grad():
                _, *past = step(ids)
            pos = torch.export.Dim("past", min=1, max=top)
            _export(step, (ids[:, :1], *past), tmp / DECODER, ["input_ids", *_names(layers, "past")],
                    ["logits", *_names(layers, "present")], ({0: batch}, tuple({0: batch, 2: pos} for _ in past)),
                    f"model {name} (decode step)")
            files.append(DECODER)
            info["layers"] = layers
        else:
            class Forward(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.net = net

                def forward(self, input_ids):
                    return self.net(input_ids)

            _export(Forward().eval(), (ids,), tmp / MODEL, ["input_ids"], ["output"], ({0: batch, 1: seq},),
                    f"model {name}")
        if int8:
            quantize_int8(tmp, files)
        for f in files:
            info["files"][f] = f
        if tokenizer is not None:
            write_atomic(tmp / TOKENIZER, Path(tokenizer).read_text())
        write_atomic(tmp / INFO, json.dumps(info, indent=2) + "\n")
        for extra in tmp.iterdir():  # the exporter's side files (external data) stay; nothing else
            if extra.name not in (MODEL, DECODER, INFO, TOKENIZER) and extra.suffix != ".data":
                extra.unlink()
    return out
