"""Llama (`model_type: llama`) and Mistral (`model_type: mistral`):
LlamaModel / LlamaForCausalLM and MistralModel / MistralForCausalLM checkpoints.

Pre-norm decoder with RMSNorm, rotary positions, a gated MLP, optional GQA
(num_key_value_heads) and, for Mistral, sliding-window attention.  HF's
q_proj / k_proj rows are already in the rotate-half layout strata's rotary
uses, so every weight is a plain rename.
"""

from __future__ import annotations

from strata.interop.hf.config import (
    GATED_ACTIVATIONS,
    MAX_LAYERS,
    Config,
    HFImportError,
    activation,
    check_architecture,
    rope,
    rope_parameters,
)
from strata.interop.hf.decoder import (
    attention_sizes,
    llama_mapping,
    map_gated_mlp,
    map_llama_attention,
    map_norm_and_head,
)
from strata.interop.hf.spec_ast import block, model, ref, repeat, residual, stack, use
from strata.interop.hf.checkpoint_reader import Mapping

MODEL_TYPES = ("llama", "mistral")
ARCHITECTURES = {"LlamaModel": False, "LlamaForCausalLM": True,
                 "MistralModel": False, "MistralForCausalLM": True}
PREFIX = "model."
NAMES = {"llama": "Llama", "mistral": "Mistral"}  # model_type -> class name prefix

# Export (family_export.py) runs this module backwards: spec variable -> config key, and
# the candidates of the keys that shape the spec; the importer picks.
EXPORT_PREFIX = (PREFIX, "")
EXPORT_KEYS = {"vocab": "vocab_size", "ctx": "max_position_embeddings", "d": "hidden_size",
               "heads": "num_attention_heads", "kv_heads": "num_key_value_heads", "head_dim": "head_dim",
               "window": "sliding_window", "p_attn": "attention_dropout", "depth": "num_hidden_layers",
               "hidden": "intermediate_size", "eps": "rms_norm_eps"}
EXPORT_CHOICES = {"architectures": lambda v, f: [[f"{NAMES[f['model_type']]}{c}"] for c in ("ForCausalLM", "Model")],
                  "tie_word_embeddings": [False, True], "hidden_act": list(GATED_ACTIVATIONS),
                  "attention_bias": [False, True], "mlp_bias": [False, True],
                  "rope_parameters": lambda v, f: [rope_parameters(f)]}


def layout(cfg: Config, keys: set[str] | None) -> dict:
    arch = cfg.architecture
    check_architecture(arch, ARCHITECTURES, cfg.model_type)
    prefixed = keys is not None and any(k.startswith(PREFIX) for k in keys)
    head = ARCHITECTURES[arch] if arch is not None else (prefixed or keys is None)
    if keys is not None and "lm_head.weight" in keys:
        head = True
    tied = cfg.bool("tie_word_embeddings", False)
    return {"head": head, "tied": tied, "prefix": PREFIX if prefixed else ""}


def _options(cfg: Config) -> dict:
    d = cfg.int("hidden_size")
    heads = cfg.int("num_attention_heads")
    kv = cfg.int("num_key_value_heads", default=heads)
    if heads % kv:
        raise HFImportError(f"config.json: num_key_value_heads ({kv}) does not divide "
                            f"num_attention_heads ({heads})")
    head_dim = cfg.int("head_dim") if cfg.has("head_dim") else None
    if head_dim is None:
        if d % heads:
            raise HFImportError(f"config.json: num_attention_heads ({heads}) does not divide "
                                f"hidden_size ({d}) and there is no head_dim")
        head_dim = d // heads
    base, fraction = rope(cfg)
    # Llama configs may carry a sliding_window that LlamaAttention never uses.
    window = cfg.int("sliding_window") if cfg.model_type == "mistral" and cfg.has("sliding_window") \
        else None
    return {
        "vocab": cfg.int("vocab_size"),
        "ctx": cfg.int("max_position_embeddings") if cfg.has("max_position_embeddings") else None,
        "d": d, "heads": heads, "kv_heads": kv, "head_dim": head_dim,
        "depth": cfg.int("num_hidden_layers", high=MAX_LAYERS), "hidden": cfg.int("intermediate_size"),
        "eps": cfg.float("rms_norm_eps", default=1e-6, low_open=True, high=1.0),
        "act": activation(cfg, "hidden_act", "silu", gated=True),
        "attn_bias": cfg.bool("attention_bias", False),
        "mlp_bias": cfg.bool("mlp_bias", False),
        "p_attn": cfg.probability("attention_dropout", 0.0),
        "base": base, "fraction": fraction, "window": window,
    }


def spec(cfg: Config, lay: dict):
    o = _options(cfg)
    variables = [("vocab", o["vocab"])]
    if o["ctx"]:
        variables.append(("ctx", o["ctx"]))
    variables += [("d", o["d"]), ("heads", o["heads"])]
    attn = attention_sizes(o, variables)
    attn["causal"] = True
    if o["window"]:
        variables.append(("window", o["window"]))
        attn["window"] = ref("window")
    attn["bias"] = o["attn_bias"]
    if o["p_attn"]:
        variables.append(("p_attn", o["p_attn"]))
        attn["dropout"] = ref("p_attn")
    variables += [("depth", o["depth"]), ("hidden", o["hidden"]), ("eps", o["eps"])]
    rotary = {"base": o["base"]}
    if o["fraction"] != 1:
        rotary["fraction"] = o["fraction"]
    layer = block(
        "layer",
        residual(use("rmsnorm", eps=ref("eps"), alias="input_norm"),
                 use("attention", ref("heads"), **attn)),
        residual(use("rmsnorm", eps=ref("eps"), alias="post_attention_norm"),
                 use("mlp", ref("hidden"), act=ref(o["act"]), bias=o["mlp_bias"])))
    body = [use("embedding", ref("vocab"), ref("d"), alias="embed"),
            use("position", ref("rotary"), **rotary),
            repeat(ref("depth"), "layer", "layers"),
            use("rmsnorm", eps=ref("eps"), alias="norm")]
    if lay["head"]:
        body.append(use("lm_head", tie=ref("embed")) if lay["tied"] else use("lm_head", ref("vocab")))
    return model(cfg.model_type, variables, [layer], [stack("decoder", ["tokens"], *body)])


def mapping(cfg: Config, lay: dict, keys: set[str]) -> Mapping:
    o, p = _options(cfg), lay["prefix"]
    m = llama_mapping(lay)
    for i in range(o["depth"]):
        src, dst = f"{p}layers.{i}", f"decoder.layers.{i}"
        map_llama_attention(m, src, dst, "qkvo" if o["attn_bias"] else "")
        map_gated_mlp(m, src, dst, bias=o["mlp_bias"])
    return map_norm_and_head(m, lay)
