"""Import a local Hugging Face model folder (config.json + safetensors) as a
strata spec and a strata-named safetensors checkpoint.

    config.json ──hf_to_spec──► model.arch ──build_text──► IR ─► state_dict_shapes
    *.safetensors ──family.mapping (rename / transpose / split)──► tensors ─┘ checked
                                                                  └──► weights.safetensors

Families: gpt2.py (GPT-2), bert.py (BERT), llama.py (Llama, Mistral), gpt_neox.py
(GPT-NeoX, Pythia), qwen2.py, opt.py, mixtral.py, phi.py, falcon.py, gemma2.py,
t5.py; decoder.py holds what the decoder families share.
Never imports transformers; torch only when tensors are read.
"""

from __future__ import annotations

import os
from pathlib import Path

from strata.compiler import build_text
from strata.compiler.ir import state_dict_shapes
from strata.errors import SpecError, UsageError
import strata.interop.hf.checkpoint_reader as W
from strata.interop.hf.config import Config, HFImportError, read_json
from strata.interop.hf.families import FAMILIES, family, hf_to_spec, spec_text
from strata.io import atomic_folder, same_file, write_atomic

__all__ = ["FAMILIES", "HFImportError", "hf_to_spec", "import_hf", "read_config"]

DTYPES = ("float32", "float16", "bfloat16")


def read_config(src: Path) -> dict:
    if not src.exists():
        raise HFImportError(f"{src}: no such folder")
    if not src.is_dir():
        raise HFImportError(f"{src}: not a folder; give the Hugging Face model folder "
                            "(config.json + model.safetensors)")
    path = src / "config.json"
    if not path.exists():
        raise HFImportError(f"{src}: no config.json; is this a Hugging Face model folder "
                            "(as written by save_pretrained)?")
    return read_json(path, "config.json")


def _problems(title: str, problems: list[str]) -> HFImportError:
    shown = "; ".join(problems[:4]) + (f"; ... ({len(problems) - 4} more)" if len(problems) > 4 else "")
    return HFImportError(f"{title}: {shown}")


def _check_output(out: Path, inputs: list[Path], overwrite: bool = False) -> tuple[Path, Path]:
    """OUT must be a folder (or not exist yet); neither output may be one of the
    files the import reads, and one already there is replaced only with
    `overwrite` (the user's own model.arch, or an earlier import)."""
    if out.exists() and not out.is_dir():
        raise HFImportError(f"{out}: exists and is not a folder; -o names the folder to write "
                            "model.arch and weights.safetensors into")
    arch_path, weights_path = out / "model.arch", out / "weights.safetensors"
    for written in (arch_path, weights_path):
        if written.is_dir():
            raise HFImportError(f"{written}: is a directory; remove it or choose another -o")
        for read in inputs:
            if same_file(written, read):
                raise HFImportError(f"{written}: is {read}, which the import reads; "
                                    "choose another -o")
    clash = [p for p in (arch_path, weights_path) if os.path.lexists(p)]
    if clash and not overwrite:
        raise HFImportError(f"{clash[0]} exists: --overwrite replaces it, or -o names another folder")
    return arch_path, weights_path


def import_hf(src_dir: str | Path, out_dir: str | Path, *, dtype: str | None = None,
              overwrite: bool = False) -> tuple[Path, Path]:
    """Convert a Hugging Face folder to OUT/model.arch + OUT/weights.safetensors.

    Every tensor name, shape and dtype is checked against the spec before
    anything is written; the folder gets both files or neither.  Files of
    those names already in OUT are replaced only with `overwrite=True`.

    With a Hugging Face folder at hf/gpt2::

        import_hf("hf/gpt2", "out/gpt2")
        # (PosixPath('out/gpt2/model.arch'), PosixPath('out/gpt2/weights.safetensors'))
    """
    if dtype is not None and dtype not in DTYPES:
        raise HFImportError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    src, out = Path(src_dir), Path(out_dir)
    cfg = Config(read_config(src))
    fam = family(cfg.model_type)
    fam.spec(cfg, fam.layout(cfg, None))  # refuse an unsupported config before reading tensors
    ckpt = W.Checkpoint(src)
    arch_path, weights_path = _check_output(out, [src / "config.json", *ckpt.paths()], overwrite)
    keys = ckpt.keys()
    lay = fam.layout(cfg, keys)
    source = str(src.resolve())
    text = spec_text(cfg, lay, source=source)
    try:
        g = build_text(text, str(arch_path))
    except SpecError as e:
        raise HFImportError(f"the spec made from config.json does not build: "
                            f"{e.diagnostics[0].message} (if config.json is sound, please report "
                            "this)") from None
    expected = state_dict_shapes(g)
    mapping = fam.mapping(cfg, lay, keys)
    problems = W.check(W.convert(ckpt, mapping, meta=True), expected)  # shapes only, no data
    if problems:
        raise _problems("the checkpoint does not match the generated spec", problems)
    W.check_float(ckpt, mapping)

    # The parameter count goes in the header; a comment moves no span that matters.
    text = spec_text(cfg, lay, source=source, parameters=g.graph.parameters)
    tensors = W.convert(ckpt, mapping)
    if dtype is not None:
        import torch  # lazy: torch

        tensors = {k: v.to(getattr(torch, dtype)) for k, v in tensors.items()}
    meta = {"format": "pt", "source": source, "converter": "strata import-hf",
            "model_type": str(cfg.model_type)}
    try:  # both files or neither: made beside OUT, moved in last
        with atomic_folder(out, (arch_path.name, weights_path.name)) as tmp:
            W.save(tensors, tmp / weights_path.name, meta)
            write_atomic(tmp / arch_path.name, text)
    except UsageError as e:
        raise HFImportError(str(e)) from None
    return arch_path, weights_path
