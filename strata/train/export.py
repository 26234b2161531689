"""`strata export SOURCE --to hf|onnx -o OUT/`: a strata model leaves strata.

SOURCE is what every command that reads weights takes (strata.train.sources): a
run folder, a `strata compress` output folder, or a spec with `--weights`.

--to hf, a spec of an import-hf family (strata.interop.hf.family_export decides):
    OUT/config.json              the family's own config (model_type, architectures, ...)
    OUT/model.safetensors        the weights in the family's names and layouts
    OUT/generation_config.json   the special token ids generation uses
    OUT/tokenizer.json           the source's tokenizer as a fast tokenizer (when it has one)
    OUT/tokenizer_config.json
--to hf, any other spec: the same with custom code (strata.train.export_code).
--to hf, a quantized compress output: either, its integers in the compressed-tensors
    form and config.json's quantization_config (strata.train.export_quantized).
--to onnx: ONNX Runtime files (strata.train.export_onnx).

What a target cannot take is refused in one line (ExportError); OUT is written
whole or not at all (strata.io.atomic_folder).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from strata.backends.torch.compile import compile_graph
from strata.backends.torch.packed import is_packed
from strata.backends.torch.sparse_packed import SUFFIXES as SPARSE
from strata.backends.torch.weights_file import checkpoint_shapes
from strata.backends.torch.spec_names import to_spec_names
from strata.backends.torch.model_tensors import model_state
from strata.compiler import as_graph
from strata.compiler.ir import state_dict_shapes
from strata.dsl import load_file as load_spec_file
from strata.dsl import load_text
from strata.errors import UsageError
from strata.interop.hf.config import HFImportError
from strata.interop.hf.family_export import FamilyMatch, architecture, hf_tensors, match_family, model_facts
from strata.interop.hf.checkpoint_reader import check, save
from strata.io import atomic_folder, is_spec_path, same_file, write_atomic
from strata.passes import calibrated_passes
from strata.train.export_code import REMOTE, SOURCE, ExportError, code_files
from strata.train.export_quantized import SUFFIXES, family_tensors, only_quantize, read_packed_checkpoint
from strata.train.export_onnx import FILES as ONNX_FILES
from strata.train.export_onnx import export_onnx
from strata.train.folder import not_a_run
from strata.train.objectives import CausalLM, choose_objective
from strata.train.sources import no_other_weights, resolve_weights, spec_weights
from strata.train.tokenizer import load_tokenizer
from strata.train.tokenizer_hf import special_ids, tokenizer_files

TARGETS = ("hf", "onnx")
CONFIG, WEIGHTS, GENERATION = "config.json", "model.safetensors", "generation_config.json"
# every name --to hf may write (the custom code's files and the tokenizer's among them)
HF_FILES = (CONFIG, WEIGHTS, GENERATION, *REMOTE, SOURCE, "tokenizer.json", "tokenizer_config.json")


def _spec_model(spec: str, model: str | None):
    """The AST of the model being exported and its built graph."""
    g = as_graph(spec, model=model, need_teacher=False)
    tree = load_spec_file(spec) if is_spec_path(spec) else load_text(spec)
    name = g.graph.name
    found = [m for m in tree.models if m.name == name]
    return (found[0] if found else None), g


def _weights(g, path: Path) -> dict:
    """The float tensors in the spec's names, checked against the spec."""
    from safetensors.torch import load_file  # lazy: torch

    tensors = load_file(str(path))
    # a pruned compress output's bitmask and offsets are integers of float weights, read dense below
    sparse = {k.rsplit(".", 1)[0] for k in tensors if k.rsplit(".", 1)[-1] in SPARSE}
    quantized = sorted(k for k, v in tensors.items() if not v.is_floating_point() and k.rsplit(".", 1)[0] not in sparse)
    if quantized:
        raise ExportError(f"{quantized[0]}: quantized weights ({tensors[quantized[0]].dtype}); ONNX "
                          "Runtime takes the float model (--int8 quantizes it its own way); --to hf "
                          "takes a quantized compress output")
    problems = check(tensors, state_dict_shapes(g))
    if problems and g.graph.get("passes"):
        # a compress output stores the model's own names (after its passes, e.g. fused q/k/v):
        # loaded into that model, then named as the spec names them
        try:
            net = compile_graph(g, weights=path, quantize=False)
        except (UsageError, ValueError, KeyError, RuntimeError):
            pass  # neither naming fits: the spec's names are the ones to report
        else:
            tensors = {k: v.detach().contiguous() for k, v in to_spec_names(net.strata_graph, model_state(net)).items()}
            problems = check(tensors, state_dict_shapes(g))
    if problems:
        raise ExportError(f"{path}: the weights do not fit the spec: {'; '.join(problems[:3])}")
    return tensors


def _generation_ids(model_type: str, tok) -> dict:
    """bos / eos / pad ids: the tokenizer's specials, else none (so generate() stops
    only where strata's would: at the token count)."""
    ids = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if tok is not None:
        ids.update({k: v for k, v in special_ids(tok).items() if k in ids})
    if model_type == "t5":  # the decoder starts from pad, as T5's does
        start = ids["pad_token_id"] if ids["pad_token_id"] is not None else 0
        ids["decoder_start_token_id"] = start
        ids["pad_token_id"] = start
    return ids


def _causal(g) -> bool:
    try:
        return isinstance(choose_objective(g), CausalLM)
    except UsageError:  # no head strata trains: the outputs as they are
        return False


def export_hf(spec: str, weights: Path, tokenizer: Path | None, out: Path, model: str | None = None
              ) -> tuple[Path, str | None]:
    """Write OUT for `spec` (its `model`) with `weights` and, if any, `tokenizer`.
    Returns OUT and, when the spec is no family (custom code), why not."""
    spec_model, g = _spec_model(spec, model)
    packed = read_packed_checkpoint(g, weights)
    if g.graph.get("passes") and not (packed is not None and only_quantize(g)):
        names = ", ".join(p["name"] for p in g.graph.passes)
        match = f"passes {{ {names} }}: no family config expresses them"
    elif spec_model is None:
        match = "its definition is not in the spec file itself (imported or extended)"
    else:
        match = match_family(spec_model, dict(g.graph.vars), model_facts(g))
    quantization = None
    if isinstance(match, FamilyMatch) and packed is not None:
        hf, quantization = family_tensors(match, packed)
        config, files, note = {**match.config, "architectures": [architecture(match)]}, {}, None
    elif isinstance(match, FamilyMatch):
        tensors = _weights(g, weights)
        try:
            hf = hf_tensors(match, tensors)
        except HFImportError as e:
            raise ExportError(str(e)) from None
        config, files, note = {**match.config, "architectures": [architecture(match)]}, {}, None
    else:  # any other spec: the generated module as custom code
        if packed is None:
            _weights(g, weights)
        files, hf = code_files(g, weights, _causal(g), packed)
        config, note = json.loads(files.pop("_config")), match
        quantization = config.pop("quantization_config", None)
    dtypes = {v.dtype for k, v in hf.items() if v.is_floating_point() and k.rsplit(".", 1)[-1] not in SUFFIXES[1:]}
    config["dtype"] = str(dtypes.pop()).removeprefix("torch.") if len(dtypes) == 1 else "float32"
    if quantization is not None:
        config["quantization_config"] = quantization
    tok = None
    if tokenizer is not None:
        tok = load_tokenizer(tokenizer)
    gen = _generation_ids(config["model_type"], tok)
    config.update(gen)
    files[CONFIG] = json.dumps(config, indent=2, sort_keys=True) + "\n"
    files[GENERATION] = json.dumps({k: v for k, v in gen.items() if v is not None} |
                                   {"_from_model_config": True}, indent=2, sort_keys=True) + "\n"
    if tok is not None:
        files.update(tokenizer_files(tok, g.graph.vars.get("ctx")))
    meta = {"format": "pt", "converter": "strata export"}
    with atomic_folder(out, (WEIGHTS, *files)) as tmp:
        save({k: v.contiguous() for k, v in hf.items()}, tmp / WEIGHTS, meta)
        for name, text in files.items():
            write_atomic(tmp / name, text)
    return out, note


def _calibrated_first(spec, model, weights: Path, source: Path) -> None:
    """Float weights under a spec whose passes calibrate (GPTQ, AWQ, SmoothQuant,
    int8_static, SparseGPT, Wanda ...): what they compute is chosen on data, which
    `strata compress` does (on the run's data by default) and an export does not
    redo: refused, naming the command that does."""
    passes = calibrated_passes(as_graph(spec, model=model, need_teacher=False))
    if passes and not is_packed(checkpoint_shapes(weights)):
        labels = ", ".join(p.label() for p in passes)
        raise UsageError(f"{source}: its spec's {labels} chooses the weights on calibration data, which "
                         f"export does not do: compress first (strata compress {source} -o OUT, on the "
                         "run's data or --calibration), then export OUT")


def _check_out(out: Path, names: tuple[str, ...], inputs: list, overwrite: bool) -> None:
    """OUT is never an input's folder (a run's model.safetensors and tokenizer.json
    are names an export writes), and a file of `names` already there is replaced
    only with `overwrite` (the user's own Hugging Face download, say)."""
    if not out.is_dir():
        return
    for p in inputs:
        if p is not None and (same_file(out, p) or any(same_file(out / n, p) for n in names)):
            raise UsageError(f"{out}: holds this export's input {p}; writing there would destroy it "
                             "(give another -o)")
    clash = [n for n in names if os.path.lexists(out / n)]
    if clash and not overwrite:
        raise UsageError(f"{out / clash[0]} exists: --overwrite replaces it, or -o names another folder")


def export(source, *, to: str = "hf", out, weights=None, model: str | None = None, int8: bool = False,
           overwrite: bool = False) -> tuple[Path, str | None]:
    """`strata.export`: SOURCE (run folder, compress output, or spec + weights) -> OUT;
    returns OUT and, for custom code, why the spec is no family.  overwrite: replace
    the files an earlier export left in OUT (never an input's)."""
    if to not in TARGETS:
        raise UsageError(f"unknown export target {to!r}: choose one of {', '.join(TARGETS)}")
    if int8 and to != "onnx":
        raise UsageError("--int8 is ONNX Runtime's dynamic quantization: it goes with --to onnx")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder; -o names the folder to write")
    not_a_run(out, "export")
    src = Path(source)
    if src.is_dir():  # a run or compress output folder names its spec and weights
        no_other_weights(src, weights)
        w = resolve_weights(src)
        if w.spec is None:
            raise UsageError(f"{src}: the spec these weights were trained from is gone; give the spec "
                             "file and the folder as --weights")
        spec, model = w.spec, model or w.model
    else:
        w = spec_weights(src, weights)
        spec = str(src)
    _check_out(out, ONNX_FILES if to == "onnx" else HF_FILES,
               [src if src.is_dir() else None, w.file, w.tokenizer], overwrite)
    _calibrated_first(spec, model, w.file, src)
    if to == "onnx":
        _, g = _spec_model(spec, model)
        _weights(g, w.file)
        return export_onnx(g, w.file, w.tokenizer, out, _causal(g), int8=int8), None
    return export_hf(spec, w.file, w.tokenizer, out, model)
