"""Qwen2 (`model_type: qwen2`): Qwen2Model and Qwen2ForCausalLM checkpoints.

Llama's decoder with biases on the q, k and v projections (not on o), and a
sliding window on the layers `layer_types` names (`use_sliding_window`; from
`max_window_layers` on in older configs).  Every weight is a plain rename.
"""

from __future__ import annotations

from strata.interop.hf.config import (
    GATED_ACTIVATIONS,
    MAX_LAYERS,
    Config,
    activation,
    check_architecture,
    rope,
    rope_parameters,
)
from strata.interop.hf.decoder import (
    attention_sizes,
    heads,
    layer_patterns,
    llama_mapping,
    lm_head,
    map_gated_mlp,
    map_llama_attention,
    map_norm_and_head,
    prefix,
    window_option,
)
from strata.interop.hf.spec_ast import block, model, ref, repeat, residual, stack, use
from strata.interop.hf.checkpoint_reader import Mapping

MODEL_TYPES = ("qwen2",)
ARCHITECTURES = {"Qwen2Model": False, "Qwen2ForCausalLM": True}

# Export (family_export.py) runs this module backwards: spec variable -> config key, and
# the candidates of the keys that shape the spec; the importer picks.
EXPORT_PREFIX = ("model.", "")
EXPORT_KEYS = {"vocab": "vocab_size", "ctx": "max_position_embeddings", "d": "hidden_size",
               "heads": "num_attention_heads", "kv_heads": "num_key_value_heads", "head_dim": "head_dim",
               "window": "sliding_window", "p_attn": "attention_dropout", "depth": "num_hidden_layers",
               "hidden": "intermediate_size", "eps": "rms_norm_eps"}
EXPORT_CHOICES = {"architectures": [["Qwen2ForCausalLM"], ["Qwen2Model"]], "tie_word_embeddings": [False, True],
                  "hidden_act": list(GATED_ACTIVATIONS), "rope_parameters": lambda v, f: [rope_parameters(f)],
                  ("use_sliding_window", "layer_types"): lambda v, f: [
                      (False, None), *((True, p) for p in layer_patterns(v, f) if p)]}


def layout(cfg: Config, keys: set[str] | None) -> dict:
    arch = cfg.architecture
    check_architecture(arch, ARCHITECTURES, "qwen2")
    p = prefix(keys, "model.")
    head = ARCHITECTURES[arch] if arch is not None else (keys is None or p == "model.")
    if keys is not None and "lm_head.weight" in keys:
        head = True
    return {"head": head, "tied": cfg.bool("tie_word_embeddings", False), "prefix": p}


def _options(cfg: Config) -> dict:
    d = cfg.int("hidden_size")
    n, kv, hd = heads(cfg, d)
    depth = cfg.int("num_hidden_layers", high=MAX_LAYERS)
    base, fraction = rope(cfg)
    window = None
    if cfg.bool("use_sliding_window", False):
        if cfg.has("layer_types"):
            window = window_option(cfg, "layer_types", depth)
        else:  # older configs: layers from max_window_layers on slide
            k = cfg.int("max_window_layers", default=depth, low=0, high=MAX_LAYERS)
            window = window_option(cfg, "max_window_layers", depth, [i >= k for i in range(depth)])
    return {"vocab": cfg.int("vocab_size"),
            "ctx": cfg.int("max_position_embeddings") if cfg.has("max_position_embeddings") else None,
            "d": d, "heads": n, "kv_heads": kv, "head_dim": hd, "depth": depth,
            "hidden": cfg.int("intermediate_size"),
            "eps": cfg.float("rms_norm_eps", default=1e-6, low_open=True, high=1.0),
            "act": activation(cfg, "hidden_act", "silu", gated=True),
            "p_attn": cfg.probability("attention_dropout", 0.0), "base": base, "fraction": fraction,
            "window": window,
            "window_size": cfg.int("sliding_window") if window is not None else None}


def spec(cfg: Config, lay: dict):
    o = _options(cfg)
    variables = [("vocab", o["vocab"])] + ([("ctx", o["ctx"])] if o["ctx"] else [])
    variables += [("d", o["d"]), ("heads", o["heads"])]
    attn = attention_sizes(o, variables)
    attn.update(causal=True, bias=True, out_bias=False)
    if o["window"] is not None:
        variables.append(("window", o["window_size"]))
        attn["window"] = o["window"]
    if o["p_attn"]:
        variables.append(("p_attn", o["p_attn"]))
        attn["dropout"] = ref("p_attn")
    variables += [("depth", o["depth"]), ("hidden", o["hidden"]), ("eps", o["eps"])]
    rotary = {"base": o["base"]} | ({"fraction": o["fraction"]} if o["fraction"] != 1 else {})
    layer = block(
        "layer",
        residual(use("rmsnorm", eps=ref("eps"), alias="input_norm"), use("attention", ref("heads"), **attn)),
        residual(use("rmsnorm", eps=ref("eps"), alias="post_attention_norm"),
                 use("mlp", ref("hidden"), act=ref(o["act"]), bias=False)))
    indexed = o["window"] is not None and o["window"] != ref("window")
    body = [use("embedding", ref("vocab"), ref("d"), alias="embed"), use("position", ref("rotary"), **rotary),
            repeat(ref("depth"), "layer", "layers", index="i" if indexed else None),
            use("rmsnorm", eps=ref("eps"), alias="norm")]
    if lay["head"]:
        body.append(lm_head(lay, "embed"))
    return model("qwen2", variables, [layer], [stack("decoder", ["tokens"], *body)])


def mapping(cfg: Config, lay: dict, keys: set[str]) -> Mapping:
    o, p = _options(cfg), lay["prefix"]
    m = llama_mapping(lay)
    for i in range(o["depth"]):
        src, dst = f"{p}layers.{i}", f"decoder.layers.{i}"
        map_llama_attention(m, src, dst, "qkv")
        map_gated_mlp(m, src, dst)
    return map_norm_and_head(m, lay)
