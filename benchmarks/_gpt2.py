"""GPT-2 small with random weights, as HF builds it and as strata imports it (the
same weights), for the generation benchmarks."""

from __future__ import annotations

import os
import tempfile

import _smoke
import torch

import strata.api
from strata.interop import import_hf


def random_gpt2(*specs: str, smoke: bool = False):
    """(HF's GPT2LMHeadModel: seed 0, SDPA, eval, no end token so that generate always
    makes max_new_tokens; strata's import of it, compiled; and one compiled model
    more for each of `specs`, a text appended to the imported spec, such as
    "passes { fuse_qkv }"; "" gives another copy of the import).  `smoke`: at
    _smoke.GPT2's toy size."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(attn_implementation="sdpa", **(_smoke.GPT2 if smoke else {}))).eval()
    hf.generation_config.eos_token_id = None  # always max_new_tokens
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        arch, weights = import_hf(d, os.path.join(d, "out"))
        ours = [strata.api.compile(arch, weights=weights).eval()]
        for extra in specs:
            with open(arch, "a", encoding="utf-8") as f:
                f.write("\n" + extra + "\n")
            ours.append(strata.api.compile(arch, weights=weights).eval())
    return hf, *ours
