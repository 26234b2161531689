"""Small specs and helpers shared by the backend tests."""

from __future__ import annotations

import tempfile

import torch

GPT2_SPEC = """
model gpt2_small_test {{
  vocab = {vocab}
  ctx   = {ctx}
  d     = {d}
  heads = {heads}
  depth = {depth}
  block layer {{
    residual {{ layernorm; attention(heads, causal=true) }}
    residual {{ layernorm; mlp(4*d, act=gelu_tanh) }}
  }}
  stack decoder(tokens) {{
    embedding(vocab, d) as wte
    position(learned, ctx) as wpe
    repeat(depth) layer as h
    layernorm as ln_f
    lm_head(tie=wte)
  }}
}}
"""

LLAMA_SPEC = """
model llama_test {{
  vocab = {vocab}
  d = {d}
  heads = {heads}
  kv_heads = {kv_heads}
  depth = {depth}
  hidden = {hidden}
  eps = 1e-5
  block layer {{
    residual {{ rmsnorm(eps=eps) as input_norm; attention(heads, kv_heads=kv_heads, causal=true, bias=false{window}) }}
    residual {{ rmsnorm(eps=eps) as post_attention_norm; mlp(hidden, act=swiglu, bias=false) }}
  }}
  stack decoder(tokens) {{
    embedding(vocab, d) as embed
    position(rotary, base={base})
    repeat(depth) layer as layers
    rmsnorm(eps=eps) as norm
    lm_head(vocab)
  }}
}}
"""

TINY_SPEC = """
model tiny {
  stack decoder(tokens) {
    embedding(32, 16) as wte
    position(learned, 64) as wpe
    repeat(2) {
      residual { layernorm; attention(2, causal=true) }
      residual { layernorm; mlp(32) }
    } as h
    layernorm as ln_f
    lm_head(tie=wte)
  }
}
"""


def hf_state_in_strata_names(hf_model) -> dict:
    """The weights of a Hugging Face model under strata's state_dict keys, renamed
    by `strata.interop.import_hf` itself (save_pretrained to a temporary folder,
    import, read back), so the tests hold no second copy of the families' maps."""
    from safetensors.torch import load_file

    from strata.interop import import_hf

    with tempfile.TemporaryDirectory() as tmp:
        hf_model.save_pretrained(f"{tmp}/hf")
        _, weights = import_hf(f"{tmp}/hf", f"{tmp}/strata")
        return load_file(str(weights))


def greedy_no_cache(model, ids: torch.Tensor, n: int) -> torch.Tensor:
    """Greedy decoding by recomputing the whole sequence every step."""
    for _ in range(n):
        nxt = model(ids)[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], 1)
    return ids
