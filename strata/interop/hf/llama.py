"""Llama (`model_type: llama`) and Mistral (`model_type: mistral`):
LlamaModel / LlamaForCausalLM and MistralModel / MistralForCausalLM checkpoints.

Pre-norm decoder with RMSNorm, rotary positions, a gated MLP, optional GQA
(num_key_value_heads) and, for Mistral, sliding-window attention.  HF's
q_proj / k_proj rows are already in the rotate-half layout strata's rotary
uses, so every weight is a plain rename.
"""

from __future__ import annotations

from strata.interop.hf.config import (
    Config,
    HFImportError,
    activation,
    check_architecture,
    num,
    rope,
)
from strata.interop.hf.weights import Mapping

ARCHITECTURES = {"LlamaModel": False, "LlamaForCausalLM": True,
                 "MistralModel": False, "MistralForCausalLM": True}
PREFIX = "model."


def layout(cfg: Config, keys: set[str] | None) -> dict:
    arch = cfg.architecture
    check_architecture(arch, ARCHITECTURES, cfg.model_type)
    prefixed = keys is not None and any(k.startswith(PREFIX) for k in keys)
    head = ARCHITECTURES[arch] if arch is not None else (prefixed or keys is None)
    if keys is not None and "lm_head.weight" in keys:
        head = True
    tied = bool(cfg.get("tie_word_embeddings", False))
    return {"head": head, "tied": tied, "prefix": PREFIX if prefixed else ""}


def _options(cfg: Config) -> dict:
    d = cfg.positive("hidden_size")
    heads = cfg.positive("num_attention_heads")
    kv = cfg.positive("num_key_value_heads") if cfg.get("num_key_value_heads") else heads
    if heads % kv:
        raise HFImportError(f"config.json: num_key_value_heads ({kv}) does not divide "
                            f"num_attention_heads ({heads})")
    head_dim = cfg.positive("head_dim") if cfg.get("head_dim") is not None else None
    if head_dim is None:
        if d % heads:
            raise HFImportError(f"config.json: num_attention_heads ({heads}) does not divide "
                                f"hidden_size ({d}) and there is no head_dim")
        head_dim = d // heads
    base, fraction = rope(cfg)
    # Llama configs may carry a sliding_window that LlamaAttention never uses.
    window = cfg.get("sliding_window") if cfg.model_type == "mistral" else None
    if window is not None:
        window = cfg.positive("sliding_window")
    return {
        "vocab": cfg.positive("vocab_size"), "ctx": cfg.get("max_position_embeddings"), "d": d,
        "heads": heads, "kv_heads": kv, "head_dim": head_dim,
        "depth": cfg.positive("num_hidden_layers"), "hidden": cfg.positive("intermediate_size"),
        "eps": float(cfg.get("rms_norm_eps", 1e-6)),
        "act": activation(cfg, "hidden_act", "silu", gated=True),
        "attn_bias": bool(cfg.get("attention_bias", False)),
        "mlp_bias": bool(cfg.get("mlp_bias", False)),
        "p_attn": float(cfg.get("attention_dropout", 0.0)),
        "base": base, "fraction": fraction, "window": window,
    }


def spec(cfg: Config, lay: dict) -> str:
    o = _options(cfg)
    variables = [("vocab", o["vocab"])]
    if o["ctx"]:
        variables.append(("ctx", o["ctx"]))
    variables += [("d", o["d"]), ("heads", o["heads"])]
    attn = ["heads"]
    if o["kv_heads"] != o["heads"]:
        variables.append(("kv_heads", o["kv_heads"]))
        attn.append("kv_heads=kv_heads")
    if o["head_dim"] != o["d"] // o["heads"] or o["d"] % o["heads"]:
        variables.append(("head_dim", o["head_dim"]))
        attn.append("head_dim=head_dim")
    attn.append("causal=true")
    if o["window"]:
        variables.append(("window", o["window"]))
        attn.append("window=window")
    attn.append(f"bias={'true' if o['attn_bias'] else 'false'}")
    if o["p_attn"]:
        variables.append(("p_attn", num(o["p_attn"])))
        attn.append("dropout=p_attn")
    variables += [("depth", o["depth"]), ("hidden", o["hidden"]), ("eps", num(o["eps"]))]
    width = max(len(k) for k, _ in variables)
    assigns = "\n".join(f"  {k.ljust(width)} = {v}" for k, v in variables)
    pos = f"position(rotary, base={num(o['base'])}"
    pos += f", fraction={num(o['fraction'])})" if o["fraction"] != 1 else ")"
    head = ""
    if lay["head"]:
        head = "    lm_head(tie=embed)\n" if lay["tied"] else "    lm_head(vocab)\n"
    return f"""\
model {cfg.model_type} {{
{assigns}

  block layer {{
    residual {{
      rmsnorm(eps=eps) as input_norm
      attention({', '.join(attn)})
    }}
    residual {{
      rmsnorm(eps=eps) as post_attention_norm
      mlp(hidden, act={o['act']}, bias={'true' if o['mlp_bias'] else 'false'})
    }}
  }}

  stack decoder(tokens) {{
    embedding(vocab, d) as embed
    {pos}
    repeat(depth) layer as layers
    rmsnorm(eps=eps) as norm
{head}\
  }}
}}
"""


def mapping(cfg: Config, lay: dict, keys: set[str]) -> Mapping:
    o, p = _options(cfg), lay["prefix"]
    extra = {"lm_head.weight"} if lay["tied"] else set()
    m = Mapping(ignore=lambda k: k.endswith(".rotary_emb.inv_freq") or k in extra)
    m.add("decoder.embed.weight", f"{p}embed_tokens.weight")
    for i in range(o["depth"]):
        src, dst = f"{p}layers.{i}", f"decoder.layers.{i}"
        m.add(f"{dst}.input_norm.weight", f"{src}.input_layernorm.weight")
        m.add(f"{dst}.post_attention_norm.weight", f"{src}.post_attention_layernorm.weight")
        for ours, theirs in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"), ("o", "o_proj")):
            m.add(f"{dst}.attn.{ours}.weight", f"{src}.self_attn.{theirs}.weight")
            if o["attn_bias"]:
                m.add(f"{dst}.attn.{ours}.bias", f"{src}.self_attn.{theirs}.bias")
        for name in ("gate", "up", "down"):
            m.add(f"{dst}.mlp.{name}.weight", f"{src}.mlp.{name}_proj.weight")
            if o["mlp_bias"]:
                m.add(f"{dst}.mlp.{name}.bias", f"{src}.mlp.{name}_proj.bias")
    m.add("decoder.norm.weight", f"{p}norm.weight")
    if lay["head"] and not lay["tied"]:
        m.add("decoder.lm_head.weight", "lm_head.weight")
    return m
