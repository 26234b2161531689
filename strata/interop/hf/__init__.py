"""Import a local Hugging Face model folder (config.json + safetensors) as a
strata spec and a strata-named safetensors checkpoint.

    config.json ──hf_to_spec──► model.arch ──build_text──► IR ─► state_dict_shapes
    *.safetensors ──family.mapping (rename / transpose / split)──► tensors ─┘ checked
                                                                  └──► weights.safetensors

Families: gpt2.py (GPT-2), bert.py (BERT), llama.py (Llama, Mistral).
Never imports transformers; torch only when tensors are read.
"""

from __future__ import annotations

import json
from pathlib import Path

from strata.interop.hf.config import Config, HFImportError, family, header, hf_to_spec

__all__ = ["HFImportError", "hf_to_spec", "import_hf", "read_config"]

DTYPES = ("float32", "float16", "bfloat16")


def read_config(src: Path) -> dict:
    if not src.exists():
        raise HFImportError(f"{src}: no such folder")
    if not src.is_dir():
        raise HFImportError(f"{src}: not a folder; give the Hugging Face model folder "
                            "(config.json + model.safetensors)")
    path = src / "config.json"
    if not path.is_file():
        raise HFImportError(f"{src}: no config.json; is this a Hugging Face model folder "
                            "(as written by save_pretrained)?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise HFImportError(f"{path}: not valid JSON ({e})") from None


def _problems(title: str, problems: list[str]) -> HFImportError:
    shown = "; ".join(problems[:4]) + (f"; ... ({len(problems) - 4} more)" if len(problems) > 4 else "")
    return HFImportError(f"{title}: {shown}")


def import_hf(src_dir: str | Path, out_dir: str | Path, *, dtype: str | None = None
              ) -> tuple[Path, Path]:
    """Convert a Hugging Face folder to OUT/model.arch + OUT/weights.safetensors.

    Every tensor name and shape is checked against the spec's state_dict before
    anything is written; both files are written atomically.

        >>> import_hf("hf/gpt2", "out/gpt2")  # doctest: +SKIP
        (PosixPath('out/gpt2/model.arch'), PosixPath('out/gpt2/weights.safetensors'))
    """
    from strata.compiler import build_text
    from strata.compiler.ir import state_dict_shapes
    from strata.errors import SpecError
    from strata.interop.hf import weights as W
    from strata.io import write_atomic

    if dtype is not None and dtype not in DTYPES:
        raise HFImportError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    src, out = Path(src_dir), Path(out_dir)
    cfg = Config(read_config(src))
    fam = family(cfg.model_type)
    fam.spec(cfg, fam.layout(cfg, None))  # refuse an unsupported config before reading tensors
    ckpt = W.Checkpoint(src)
    keys = ckpt.keys()
    lay = fam.layout(cfg, keys)
    body = fam.spec(cfg, lay)
    text = header(cfg, str(src.resolve())) + body

    arch_path, weights_path = out / "model.arch", out / "weights.safetensors"
    try:
        g = build_text(text, str(arch_path))
    except SpecError as e:  # a bug in the importer, not in the user's folder
        raise HFImportError(f"the generated spec does not build ({e.diagnostics[0].message}); "
                            "please report this with the config.json") from None
    expected = state_dict_shapes(g)
    mapping = fam.mapping(cfg, lay, keys)
    problems = W.check(W.convert(ckpt, mapping, meta=True), expected)  # shapes only, no data
    if problems:
        raise _problems("the checkpoint does not match the generated spec", problems)

    # The parameter count goes in the header; a comment moves no span that matters.
    text = header(cfg, str(src.resolve())) + f"# {g.graph['parameters']:,} parameters.\n" + body
    tensors = W.convert(ckpt, mapping)
    if dtype is not None:
        import torch

        tensors = {k: v.to(getattr(torch, dtype)) for k, v in tensors.items()}
    meta = {"format": "pt", "source": str(src), "converter": "strata import-hf",
            "model_type": str(cfg.model_type)}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HFImportError(f"{out}: cannot create the output folder ({e.strerror})") from None
    W.save(tensors, weights_path, meta)
    write_atomic(arch_path, text)
    return arch_path, weights_path
