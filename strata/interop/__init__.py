"""Interop with other model formats: Hugging Face transformers folders
(GPT-2, BERT, Llama, Mistral, GPT-NeoX, Qwen2, OPT, Mixtral, Phi, Falcon, Gemma 2, T5) ->
strata spec + strata-named safetensors, and back (hf/family_export.py: the importer run
backwards; `strata export` in strata.train.export writes the folder).

    >>> from strata.interop import hf_to_spec
    >>> print(hf_to_spec({"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2,
    ...                   "vocab_size": 10, "n_positions": 4}).splitlines()[2])
    model gpt2 {
"""

from strata.interop.hf import HFImportError, hf_to_spec, import_hf

__all__ = ["HFImportError", "hf_to_spec", "import_hf"]
