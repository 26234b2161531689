"""Gemma 2 (`model_type: gemma2`): Gemma2Model and Gemma2ForCausalLM checkpoints.

Grouped-query decoder with RMSNorms that scale by 1 + w (`unit_offset`) before
and after both attention and MLP, tanh-GELU gated MLPs (`geglu_tanh`), the
embedding scaled by sqrt(d) and tied to the LM head, logits scaled by
query_pre_attn_scalar ** -0.5, tanh soft-capping of attention
(`attn_logit_softcapping`) and final (`final_logit_softcapping`) logits, and a
sliding window on the layers `layer_types` names (every other one).  Every
weight is a plain rename.
"""

from __future__ import annotations

from strata.interop.hf.config import (
    GATED_ACTIVATIONS,
    MAX_LAYERS,
    NULL,
    Config,
    activation,
    check_architecture,
    rope,
    rope_parameters,
)
from strata.interop.hf.decoder import (
    heads,
    layer_patterns,
    llama_mapping,
    lm_head,
    map_gated_mlp,
    map_norm_and_head,
    map_self_attention,
    prefix,
    window_option,
)
from strata.interop.hf.spec_ast import binop, block, call, model, neg, ref, repeat, residual, stack, use
from strata.interop.hf.checkpoint_reader import Mapping

MODEL_TYPES = ("gemma2",)
ARCHITECTURES = {"Gemma2Model": False, "Gemma2ForCausalLM": True}

# Export (family_export.py) runs this module backwards: spec variable -> config key, and
# the candidates of the keys that shape the spec; the importer picks.
EXPORT_PREFIX = ("model.", "")
EXPORT_KEYS = {"vocab": "vocab_size", "ctx": "max_position_embeddings", "d": "hidden_size",
               "heads": "num_attention_heads", "kv_heads": "num_key_value_heads", "head_dim": "head_dim",
               "query_scalar": "query_pre_attn_scalar", "softcap": "attn_logit_softcapping",
               "window": "sliding_window", "p_attn": "attention_dropout", "depth": "num_hidden_layers",
               "hidden": "intermediate_size", "eps": "rms_norm_eps", "final_softcap": "final_logit_softcapping"}
EXPORT_INTS = {"query_pre_attn_scalar"}  # Gemma2Config types it int
EXPORT_CHOICES = {"architectures": [["Gemma2ForCausalLM"], ["Gemma2Model"]],
                  "tie_word_embeddings": [True, False], "hidden_activation": list(GATED_ACTIVATIONS),
                  "attention_bias": [False, True], "rope_parameters": lambda v, f: [rope_parameters(f)],
                  "layer_types": layer_patterns,
                  # Gemma2Config's defaults cap the logits; a spec without a cap says null
                  "attn_logit_softcapping": lambda v, f: [v.get("softcap", NULL)],
                  "final_logit_softcapping": lambda v, f: [v.get("final_softcap", NULL)]}


def layout(cfg: Config, keys: set[str] | None) -> dict:
    arch = cfg.architecture
    check_architecture(arch, ARCHITECTURES, "gemma2")
    p = prefix(keys, "model.")
    head = ARCHITECTURES[arch] if arch is not None else (keys is None or p == "model.")
    tied = cfg.bool("tie_word_embeddings", True)
    if keys is not None and "lm_head.weight" in keys and not tied:
        head = True
    return {"head": head, "tied": tied, "prefix": p}


def _options(cfg: Config) -> dict:
    cfg.refuse_if("use_bidirectional_attention", bool, "strata imports Gemma 2 as a causal decoder")
    d = cfg.int("hidden_size")
    n, kv, hd = heads(cfg, d)
    depth = cfg.int("num_hidden_layers", high=MAX_LAYERS)
    if cfg.has("layer_types"):
        window = window_option(cfg, "layer_types", depth)
    else:  # Gemma2Config's default: layers 0, 2, 4, ... slide
        window = window_option(cfg, "layer_types", depth, [i % 2 == 0 for i in range(depth)])
    if window is not None and not cfg.has("sliding_window"):
        window = None
    act_key = "hidden_activation" if cfg.has("hidden_activation") else "hidden_act"
    caps = {k: cfg.float(k, low=0, low_open=True) if cfg.has(k) else None
            for k in ("attn_logit_softcapping", "final_logit_softcapping")}
    base, fraction = rope(cfg)
    return {"vocab": cfg.int("vocab_size"), "ctx": cfg.int("max_position_embeddings", default=8192), "d": d,
            "heads": n, "kv_heads": kv, "head_dim": hd, "depth": depth, "hidden": cfg.int("intermediate_size"),
            "eps": cfg.float("rms_norm_eps", default=1e-6, low_open=True, high=1.0),
            "act": activation(cfg, act_key, "gelu_pytorch_tanh", gated=True),
            "bias": cfg.bool("attention_bias", False), "p_attn": cfg.probability("attention_dropout", 0.0),
            "query_scalar": cfg.float("query_pre_attn_scalar", default=float(hd), low=0, low_open=True),
            "window": window, "window_size": cfg.int("sliding_window") if window is not None else None,
            "softcap": caps["attn_logit_softcapping"], "final_softcap": caps["final_logit_softcapping"],
            "base": base, "fraction": fraction}


def spec(cfg: Config, lay: dict):
    o = _options(cfg)
    variables = [(k, o[k]) for k in ("vocab", "ctx", "d", "heads")]
    attn = {}
    if o["kv_heads"] != o["heads"]:
        variables.append(("kv_heads", o["kv_heads"]))
        attn["kv_heads"] = ref("kv_heads")
    variables.append(("head_dim", o["head_dim"]))
    attn.update(head_dim=ref("head_dim"), causal=True, bias=o["bias"])
    if o["query_scalar"] != o["head_dim"]:
        variables.append(("query_scalar", o["query_scalar"]))
        attn["scale"] = binop("**", ref("query_scalar"), neg(0.5))
    if o["softcap"]:
        variables.append(("softcap", o["softcap"]))
        attn["softcap"] = ref("softcap")
    if o["window"] is not None:
        variables.append(("window", o["window_size"]))
        attn["window"] = o["window"]
    if o["p_attn"]:
        variables.append(("p_attn", o["p_attn"]))
        attn["dropout"] = ref("p_attn")
    variables += [(k, o[k]) for k in ("depth", "hidden", "eps")]

    def norm(alias):
        return use("rmsnorm", eps=ref("eps"), unit_offset=True, alias=alias)

    layer = block(
        "layer",
        residual(norm("input_norm"), use("attention", ref("heads"), **attn), norm("post_attention_norm")),
        residual(norm("pre_feedforward_norm"), use("mlp", ref("hidden"), act=ref(o["act"]), bias=False),
                 norm("post_feedforward_norm")))
    indexed = o["window"] is not None and o["window"] != ref("window")
    rotary = {"base": o["base"]} | ({"fraction": o["fraction"]} if o["fraction"] != 1 else {})
    body = [use("embedding", ref("vocab"), ref("d"), scale=call("sqrt", ref("d")), alias="embed"),
            use("position", ref("rotary"), **rotary),
            repeat(ref("depth"), "layer", "layers", index="i" if indexed else None), norm("norm")]
    if lay["head"]:
        if o["final_softcap"]:
            variables.append(("final_softcap", o["final_softcap"]))
        body.append(lm_head(lay, "embed", **({"softcap": ref("final_softcap")} if o["final_softcap"] else {})))
    return model("gemma2", variables, [layer], [stack("decoder", ["tokens"], *body)])


def mapping(cfg: Config, lay: dict, keys: set[str]) -> Mapping:
    o, p = _options(cfg), lay["prefix"]
    m = llama_mapping(lay)
    for i in range(o["depth"]):
        src, dst = f"{p}layers.{i}", f"decoder.layers.{i}"
        for name in ("input", "post_attention", "pre_feedforward", "post_feedforward"):
            m.add(f"{dst}.{name}_norm.weight", f"{src}.{name}_layernorm.weight")
        map_self_attention(m, src, dst, "qkvo" if o["bias"] else "")
        map_gated_mlp(m, src, dst)
    return map_norm_and_head(m, lay)
