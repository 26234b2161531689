"""Phi (`model_type: phi`; Phi-1, Phi-1.5, Phi-2): PhiModel and PhiForCausalLM.

One LayerNorm feeds attention and the MLP in parallel: x + attn(ln(x)) +
mlp(ln(x)); rotary positions on `partial_rotary_factor` of each head's dims
(0.5 unless the config says); the LM head has a bias.  Every weight is a plain
rename.
"""

from __future__ import annotations

from strata.interop.hf.config import ACTIVATIONS, rope_parameters
from strata.interop.hf.config import MAX_LAYERS, Config, activation, check_architecture, rope
from strata.interop.hf.decoder import heads, lm_head, prefix
from strata.interop.hf.spec_ast import block, model, parallel, ref, repeat, residual, seq, stack, use
from strata.interop.hf.checkpoint_reader import Mapping

MODEL_TYPES = ("phi",)
ARCHITECTURES = {"PhiModel": False, "PhiForCausalLM": True}

# Export (family_export.py) runs this module backwards: spec variable -> config key, and
# the candidates of the keys that shape the spec; the importer picks.
EXPORT_PREFIX = ("model.", "")
EXPORT_KEYS = {"vocab": "vocab_size", "ctx": "max_position_embeddings", "d": "hidden_size",
               "heads": "num_attention_heads", "kv_heads": "num_key_value_heads", "depth": "num_hidden_layers",
               "hidden": "intermediate_size", "eps": "layer_norm_eps", "p_embd": "embd_pdrop",
               "p_attn": "attention_dropout", "p_resid": "resid_pdrop"}
EXPORT_CHOICES = {"architectures": [["PhiForCausalLM"], ["PhiModel"]], "tie_word_embeddings": [False, True],
                  "hidden_act": list(ACTIVATIONS), "rope_parameters": lambda v, f: [rope_parameters(f)]}


def layout(cfg: Config, keys: set[str] | None) -> dict:
    arch = cfg.architecture
    check_architecture(arch, ARCHITECTURES, "phi")
    p = prefix(keys, "model.")
    head = ARCHITECTURES[arch] if arch is not None else (keys is None or p == "model.")
    if keys is not None and "lm_head.bias" in keys:
        head = True
    return {"head": head, "tied": cfg.bool("tie_word_embeddings", False), "prefix": p}


def _options(cfg: Config) -> dict:
    cfg.refuse_if("qk_layernorm", bool, "strata's qk_norm is an RMSNorm, Phi's a LayerNorm")
    d = cfg.int("hidden_size")
    n, kv, hd = heads(cfg, d, head_dim_key=None)
    base, fraction = rope(cfg, fraction_default=0.5)
    return {"vocab": cfg.int("vocab_size"), "ctx": cfg.int("max_position_embeddings", default=2048), "d": d,
            "heads": n, "kv_heads": kv, "depth": cfg.int("num_hidden_layers", high=MAX_LAYERS),
            "hidden": cfg.int("intermediate_size"),
            "eps": cfg.float("layer_norm_eps", default=1e-5, low_open=True, high=1.0),
            "act": activation(cfg, "hidden_act", "gelu_new"), "p_resid": cfg.probability("resid_pdrop", 0.0),
            "p_embd": cfg.probability("embd_pdrop", 0.0), "p_attn": cfg.probability("attention_dropout", 0.0),
            "base": base, "fraction": fraction}


def spec(cfg: Config, lay: dict):
    o = _options(cfg)
    variables = [(k, o[k]) for k in ("vocab", "ctx", "d", "heads")]
    attn = {"causal": True}
    if o["kv_heads"] != o["heads"]:
        variables.append(("kv_heads", o["kv_heads"]))
        attn = {"kv_heads": ref("kv_heads"), "causal": True}
    if o["p_attn"]:
        attn["dropout"] = ref("p_attn")
    variables += [(k, o[k]) for k in ("depth", "hidden", "eps")]
    variables += [(k, o[k]) for k in ("p_embd", "p_attn", "p_resid") if o[k]]
    drop = [use("dropout", ref("p_resid"))] if o["p_resid"] else []
    both = parallel(seq(use("attention", ref("heads"), **attn), *drop),
                    seq(use("mlp", ref("hidden"), act=ref(o["act"])), *drop))
    layer = block("layer", residual(use("layernorm", eps=ref("eps"), alias="input_norm"), both))
    rotary = {"base": o["base"]} | ({"fraction": o["fraction"]} if o["fraction"] != 1 else {})
    body = [use("embedding", ref("vocab"), ref("d"), alias="embed"), use("position", ref("rotary"), **rotary)]
    body += [use("dropout", ref("p_embd"))] if o["p_embd"] else []
    body += [repeat(ref("depth"), "layer", "layers"), use("layernorm", eps=ref("eps"), alias="final_norm")]
    if lay["head"]:
        body.append(lm_head(lay, "embed", bias=True))
    return model("phi", variables, [layer], [stack("decoder", ["tokens"], *body)])


def mapping(cfg: Config, lay: dict, keys: set[str]) -> Mapping:
    o, p = _options(cfg), lay["prefix"]
    extra = {"lm_head.weight"} if lay["tied"] else set()
    m = Mapping(ignore=lambda k: k.endswith(".rotary_emb.inv_freq") or k in extra)
    m.add("decoder.embed.weight", f"{p}embed_tokens.weight")
    for i in range(o["depth"]):
        src, dst = f"{p}layers.{i}", f"decoder.layers.{i}"
        pairs = [("input_norm", "input_layernorm"), ("attn.q", "self_attn.q_proj"), ("attn.k", "self_attn.k_proj"),
                 ("attn.v", "self_attn.v_proj"), ("attn.o", "self_attn.dense"), ("mlp.up", "mlp.fc1"),
                 ("mlp.down", "mlp.fc2")]
        for ours, theirs in pairs:
            m.add(f"{dst}.{ours}.weight", f"{src}.{theirs}.weight")
            m.add(f"{dst}.{ours}.bias", f"{src}.{theirs}.bias")
    m.add("decoder.final_norm.weight", f"{p}final_layernorm.weight")
    m.add("decoder.final_norm.bias", f"{p}final_layernorm.bias")
    if lay["head"]:
        if not lay["tied"]:
            m.add("decoder.lm_head.weight", "lm_head.weight")
        m.add("decoder.lm_head.bias", "lm_head.bias")
    return m
