"""GPT-2 (`model_type: gpt2`): GPT2Model and GPT2LMHeadModel checkpoints.

Pre-norm decoder with learned positions.  HF's Conv1D layers store weights
[in, out] (strata: [out, in]) and fuse q, k, v into one `c_attn` [d, 3d]; the
import transposes them and splits c_attn into q, k, v.
"""

from __future__ import annotations

from strata.interop.hf.config import (
    Config,
    HFImportError,
    activation,
    check_architecture,
    num,
)
from strata.interop.hf.weights import Mapping, rows, transpose

ARCHITECTURES = {"GPT2Model": False, "GPT2LMHeadModel": True}  # -> has an LM head
PREFIX = "transformer."


def layout(cfg: Config, keys: set[str] | None) -> dict:
    arch = cfg.architecture
    check_architecture(arch, ARCHITECTURES, "gpt2")
    prefixed = keys is not None and any(k.startswith(PREFIX) for k in keys)
    if arch is not None:
        head = ARCHITECTURES[arch]
    else:
        head = prefixed or (keys is None)
    tied = bool(cfg.get("tie_word_embeddings", True))
    if keys is not None and "lm_head.weight" in keys:
        head = True
    return {"head": head, "tied": tied, "prefix": PREFIX if prefixed else ""}


def _options(cfg: Config) -> dict:
    cfg.refuse_if("scale_attn_by_inverse_layer_idx", bool, "strata's attention has one logit scale")
    cfg.refuse_if("add_cross_attention", bool, "a GPT-2 with cross-attention is not a GPT-2 LM")
    d = cfg.positive("n_embd", "hidden_size")
    heads = cfg.positive("n_head", "num_attention_heads")
    if d % heads:
        raise HFImportError(f"config.json: n_head ({heads}) does not divide n_embd ({d})")
    return {
        "vocab": cfg.positive("vocab_size"), "ctx": cfg.positive("n_positions", "max_position_embeddings"),
        "d": d, "heads": heads, "depth": cfg.positive("n_layer", "num_hidden_layers"),
        "hidden": cfg.positive("n_inner") if cfg.get("n_inner") is not None else 4 * d,
        "eps": float(cfg.get("layer_norm_epsilon", 1e-5)),
        "act": activation(cfg, "activation_function", "gelu_new"),
        "scaled": bool(cfg.get("scale_attn_weights", True)),
        "p_embd": float(cfg.get("embd_pdrop", 0.1)), "p_attn": float(cfg.get("attn_pdrop", 0.1)),
        "p_resid": float(cfg.get("resid_pdrop", 0.1)),
    }


def spec(cfg: Config, lay: dict) -> str:
    o = _options(cfg)
    rd = "; dropout(p_resid)" if o["p_resid"] else ""
    attn = ["heads", "causal=true"]
    if not o["scaled"]:
        attn.append("scale=1")
    if o["p_attn"]:
        attn.append("dropout=p_attn")
    head = ""
    if lay["head"]:
        head = "    lm_head(tie=wte)\n" if lay["tied"] else "    lm_head(vocab)\n"
    return f"""\
model gpt2 {{
  vocab   = {o['vocab']}
  ctx     = {o['ctx']}
  d       = {o['d']}
  heads   = {o['heads']}
  depth   = {o['depth']}
  hidden  = {o['hidden']}
  eps     = {num(o['eps'])}
  p_embd  = {num(o['p_embd'])}
  p_attn  = {num(o['p_attn'])}
  p_resid = {num(o['p_resid'])}

  block layer {{
    residual {{ layernorm(eps=eps) as ln_1; attention({', '.join(attn)}){rd} }}
    residual {{ layernorm(eps=eps) as ln_2; mlp(hidden, act={o['act']}){rd} }}
  }}

  stack decoder(tokens) {{
    embedding(vocab, d) as wte
    position(learned, ctx) as wpe
{"    dropout(p_embd)" + chr(10) if o['p_embd'] else ""}\
    repeat(depth) layer as h
    layernorm(eps=eps) as ln_f
{head}\
  }}
}}
"""


def mapping(cfg: Config, lay: dict, keys: set[str]) -> Mapping:
    o, p = _options(cfg), lay["prefix"]
    d = o["d"]
    # Older checkpoints saved the causal-mask buffers; a tied head may be saved twice.
    extra = {"lm_head.weight"} if lay["tied"] else set()
    m = Mapping(ignore=lambda k: k.endswith((".attn.bias", ".attn.masked_bias")) or k in extra)
    m.add("decoder.wte.weight", f"{p}wte.weight")
    m.add("decoder.wpe.weight", f"{p}wpe.weight")
    for i in range(o["depth"]):
        src, dst = f"{p}h.{i}", f"decoder.h.{i}"
        for ln in ("ln_1", "ln_2"):
            m.add(f"{dst}.{ln}.weight", f"{src}.{ln}.weight")
            m.add(f"{dst}.{ln}.bias", f"{src}.{ln}.bias")
        for j, name in enumerate("qkv"):  # c_attn: [d, 3d] -> q, k, v [d, d] each
            m.add(f"{dst}.attn.{name}.weight", f"{src}.attn.c_attn.weight",
                  rows(j * d, (j + 1) * d, then=transpose))
            m.add(f"{dst}.attn.{name}.bias", f"{src}.attn.c_attn.bias", rows(j * d, (j + 1) * d))
        pairs = [("attn.o", "attn.c_proj"), ("mlp.up", "mlp.c_fc"), ("mlp.down", "mlp.c_proj")]
        for ours, theirs in pairs:
            m.add(f"{dst}.{ours}.weight", f"{src}.{theirs}.weight", transpose)
            m.add(f"{dst}.{ours}.bias", f"{src}.{theirs}.bias")
    m.add("decoder.ln_f.weight", f"{p}ln_f.weight")
    m.add("decoder.ln_f.bias", f"{p}ln_f.bias")
    if lay["head"] and not lay["tied"]:
        m.add("decoder.lm_head.weight", "lm_head.weight")
    return m
