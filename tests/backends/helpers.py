"""Small specs and weight mappings shared by the backend tests."""

from __future__ import annotations

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


def gpt2_state_from_hf(hf_sd: dict, n_layer: int) -> dict:
    """HF GPT2LMHeadModel names -> strata names (Conv1D weights transposed, c_attn split)."""
    out = {"decoder.wte.weight": hf_sd["transformer.wte.weight"],
           "decoder.wpe.weight": hf_sd["transformer.wpe.weight"],
           "decoder.ln_f.weight": hf_sd["transformer.ln_f.weight"],
           "decoder.ln_f.bias": hf_sd["transformer.ln_f.bias"]}
    for i in range(n_layer):
        src, dst = f"transformer.h.{i}.", f"decoder.h.{i}."
        for ln in ("ln_1", "ln_2"):
            out[dst + ln + ".weight"] = hf_sd[src + ln + ".weight"]
            out[dst + ln + ".bias"] = hf_sd[src + ln + ".bias"]
        w = hf_sd[src + "attn.c_attn.weight"].t()
        b = hf_sd[src + "attn.c_attn.bias"]
        for name, wp, bp in zip("qkv", w.chunk(3, 0), b.chunk(3, 0)):
            out[dst + f"attn.{name}.weight"], out[dst + f"attn.{name}.bias"] = wp, bp
        for s, d in (("attn.c_proj", "attn.o"), ("mlp.c_fc", "mlp.up"), ("mlp.c_proj", "mlp.down")):
            out[dst + d + ".weight"] = hf_sd[src + s + ".weight"].t()
            out[dst + d + ".bias"] = hf_sd[src + s + ".bias"]
    return {k: v.contiguous() for k, v in out.items()}


def llama_state_from_hf(hf_sd: dict, n_layer: int) -> dict:
    out = {"decoder.embed.weight": hf_sd["model.embed_tokens.weight"],
           "decoder.norm.weight": hf_sd["model.norm.weight"],
           "decoder.lm_head.weight": hf_sd["lm_head.weight"]}
    names = {"input_layernorm": "input_norm", "post_attention_layernorm": "post_attention_norm",
             "self_attn.q_proj": "attn.q", "self_attn.k_proj": "attn.k", "self_attn.v_proj": "attn.v",
             "self_attn.o_proj": "attn.o", "mlp.gate_proj": "mlp.gate", "mlp.up_proj": "mlp.up",
             "mlp.down_proj": "mlp.down"}
    for i in range(n_layer):
        for s, d in names.items():
            out[f"decoder.layers.{i}.{d}.weight"] = hf_sd[f"model.layers.{i}.{s}.weight"]
    return out


def greedy_no_cache(model, ids: torch.Tensor, n: int) -> torch.Tensor:
    """Greedy decoding by recomputing the whole sequence every step."""
    for _ in range(n):
        nxt = model(ids)[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], 1)
    return ids
