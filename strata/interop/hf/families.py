"""The family modules import-hf knows, and a config.json turned into spec text
through its family.

    >>> text = hf_to_spec({"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4,
    ...                    "vocab_size": 100, "n_positions": 32})
    >>> "mlp(hidden, act=gelu_tanh)" in text
    True
"""

from __future__ import annotations

from typing import Any

from strata.dsl import ast as A
from strata.dsl.formatter import format_spec
import strata.interop.hf.bert as bert
import strata.interop.hf.falcon as falcon
import strata.interop.hf.gemma2 as gemma2
import strata.interop.hf.gpt2 as gpt2
import strata.interop.hf.gpt_neox as gpt_neox
import strata.interop.hf.llama as llama
import strata.interop.hf.mixtral as mixtral
import strata.interop.hf.opt as opt
import strata.interop.hf.phi as phi
import strata.interop.hf.qwen2 as qwen2
import strata.interop.hf.t5 as t5
from strata.interop.hf.config import Config, HFImportError, header, show

__all__ = ["FAMILIES", "family", "spec_text", "hf_to_spec"]

# Every family module (see config.py for what one holds); a new family is one
# more module here.
FAMILIES = (gpt2, bert, llama, gpt_neox, qwen2, opt, mixtral, phi, falcon, gemma2, t5)


def family(model_type: Any):
    """The family module that handles `model_type`."""
    table = {t: fam for fam in FAMILIES for t in fam.MODEL_TYPES}
    if model_type not in table:
        if model_type is None:
            raise HFImportError("config.json has no 'model_type'; is this a Hugging Face "
                                "transformers model folder?")
        raise HFImportError(f"unsupported model_type {show(model_type)}: strata imports "
                            f"{', '.join(sorted(table))}")
    return table[model_type]


def spec_text(cfg: Config, lay: dict, *, source: str | None = None,
              parameters: int | None = None) -> str:
    """The .arch text of the spec for `cfg`: the family builds the AST, the
    formatter writes it (so nothing from config.json is pasted as text)."""
    fam = family(cfg.model_type)
    model = fam.spec(cfg, lay)
    model.comment = header(cfg, source, parameters)
    return format_spec(A.SpecFile(models=[model]))


def hf_to_spec(config: dict, *, keys: set[str] | None = None, source: str | None = None) -> str:
    """The strata spec (.arch text) of a Hugging Face config.json dict.

    `keys`, the checkpoint's tensor names where known, decides which heads the
    checkpoint holds (e.g. BERT's pooler / MLM head); without it the config's
    `architectures` entry decides.

        >>> spec = hf_to_spec({"model_type": "llama", "vocab_size": 100, "hidden_size": 64,
        ...     "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
        ...     "intermediate_size": 96})
        >>> "kv_heads = 2" in spec
        True
    """
    cfg = Config(config)
    fam = family(cfg.model_type)
    return spec_text(cfg, fam.layout(cfg, keys), source=source)
