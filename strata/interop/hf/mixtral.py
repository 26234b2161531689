"""Mixtral (`model_type: mixtral`): MixtralModel and MixtralForCausalLM checkpoints.

Mistral's decoder with each MLP a mixture of SwiGLU experts: a softmax router
picks `num_experts_per_tok` of `num_local_experts` per token and renormalises
their weights, as strata's `moe` does.  Experts come in either layout: one
tensor per expert (`block_sparse_moe.experts.N.w1/w3/w2` = gate/up/down, what
save_pretrained writes) or stacked (`mlp.experts.gate_up_proj` [experts,
2 * hidden, d] and `mlp.experts.down_proj` [experts, d, hidden], transformers >=
5's own modules); the router is `block_sparse_moe.gate` / `mlp.gate`.
"""

from __future__ import annotations

from strata.interop.hf.config import GATED_ACTIVATIONS, rope_parameters
from strata.interop.hf.config import MAX_LAYERS, Config, activation, check_architecture, rope
from strata.interop.hf.decoder import (
    attention_sizes,
    heads,
    llama_mapping,
    lm_head,
    map_llama_attention,
    map_norm_and_head,
    prefix,
)
from strata.interop.hf.spec_ast import block, model, ref, repeat, residual, stack, use
from strata.interop.hf.checkpoint_reader import Mapping, rows, select

MODEL_TYPES = ("mixtral",)
ARCHITECTURES = {"MixtralModel": False, "MixtralForCausalLM": True}
MAX_EXPERTS = 4096

# Export (family_export.py) runs this module backwards: spec variable -> config key, and
# the candidates of the keys that shape the spec; the importer picks.
EXPORT_PREFIX = ("model.", "")
EXPORT_KEYS = {"vocab": "vocab_size", "ctx": "max_position_embeddings", "d": "hidden_size",
               "heads": "num_attention_heads", "kv_heads": "num_key_value_heads", "head_dim": "head_dim",
               "window": "sliding_window", "p_attn": "attention_dropout", "depth": "num_hidden_layers",
               "hidden": "intermediate_size", "experts": "num_local_experts", "top_k": "num_experts_per_tok",
               "eps": "rms_norm_eps"}
EXPORT_CHOICES = {"architectures": [["MixtralForCausalLM"], ["MixtralModel"]],
                  "tie_word_embeddings": [False, True], "hidden_act": list(GATED_ACTIVATIONS),
                  "rope_parameters": lambda v, f: [rope_parameters(f)]}


def layout(cfg: Config, keys: set[str] | None) -> dict:
    arch = cfg.architecture
    check_architecture(arch, ARCHITECTURES, "mixtral")
    p = prefix(keys, "model.")
    head = ARCHITECTURES[arch] if arch is not None else (keys is None or p == "model.")
    if keys is not None and "lm_head.weight" in keys:
        head = True
    stacked = keys is not None and any(k.endswith(".mlp.experts.gate_up_proj") for k in keys)
    return {"head": head, "tied": cfg.bool("tie_word_embeddings", False), "prefix": p, "stacked": stacked}


def _options(cfg: Config) -> dict:
    cfg.refuse_if("router_jitter_noise", lambda v: v != 0,
                  "strata's router has no jitter noise (it only acts in training)")
    d = cfg.int("hidden_size")
    n, kv, hd = heads(cfg, d)
    experts = cfg.int("num_local_experts", high=MAX_EXPERTS)
    base, fraction = rope(cfg)
    return {"vocab": cfg.int("vocab_size"),
            "ctx": cfg.int("max_position_embeddings") if cfg.has("max_position_embeddings") else None,
            "d": d, "heads": n, "kv_heads": kv, "head_dim": hd,
            "depth": cfg.int("num_hidden_layers", high=MAX_LAYERS), "hidden": cfg.int("intermediate_size"),
            "experts": experts, "top_k": cfg.int("num_experts_per_tok", high=experts),
            "eps": cfg.float("rms_norm_eps", default=1e-5, low_open=True, high=1.0),
            "act": activation(cfg, "hidden_act", "silu", gated=True),
            "p_attn": cfg.probability("attention_dropout", 0.0), "base": base, "fraction": fraction,
            "window": cfg.int("sliding_window") if cfg.has("sliding_window") else None}


def spec(cfg: Config, lay: dict):
    o = _options(cfg)
    variables = [("vocab", o["vocab"])] + ([("ctx", o["ctx"])] if o["ctx"] else [])
    variables += [("d", o["d"]), ("heads", o["heads"])]
    attn = attention_sizes(o, variables)
    attn.update(causal=True)
    if o["window"]:
        variables.append(("window", o["window"]))
        attn["window"] = ref("window")
    attn["bias"] = False
    if o["p_attn"]:
        variables.append(("p_attn", o["p_attn"]))
        attn["dropout"] = ref("p_attn")
    variables += [("depth", o["depth"]), ("hidden", o["hidden"]), ("experts", o["experts"]),
                  ("top_k", o["top_k"]), ("eps", o["eps"])]
    rotary = {"base": o["base"]} | ({"fraction": o["fraction"]} if o["fraction"] != 1 else {})
    layer = block(
        "layer",
        residual(use("rmsnorm", eps=ref("eps"), alias="input_norm"), use("attention", ref("heads"), **attn)),
        residual(use("rmsnorm", eps=ref("eps"), alias="post_attention_norm"),
                 use("moe", ref("hidden"), ref("experts"), ref("top_k"), act=ref(o["act"]))))
    body = [use("embedding", ref("vocab"), ref("d"), alias="embed"), use("position", ref("rotary"), **rotary),
            repeat(ref("depth"), "layer", "layers"), use("rmsnorm", eps=ref("eps"), alias="norm")]
    if lay["head"]:
        body.append(lm_head(lay, "embed"))
    return model("mixtral", variables, [layer], [stack("decoder", ["tokens"], *body)])


def mapping(cfg: Config, lay: dict, keys: set[str]) -> Mapping:
    o, p = _options(cfg), lay["prefix"]
    h = o["hidden"]
    m = llama_mapping(lay)
    for i in range(o["depth"]):
        src, dst = f"{p}layers.{i}", f"decoder.layers.{i}"
        map_llama_attention(m, src, dst)
        moe = f"{dst}.moe"
        if lay["stacked"]:
            m.add(f"{moe}.router.weight", f"{src}.mlp.gate.weight")
            for e in range(o["experts"]):  # consecutive: one stacked tensor is read at a time
                m.add(f"{moe}.experts.{e}.gate.weight", f"{src}.mlp.experts.gate_up_proj", rows(0, h, then=select(e)))
                m.add(f"{moe}.experts.{e}.up.weight", f"{src}.mlp.experts.gate_up_proj",
                      rows(h, 2 * h, then=select(e)))
            for e in range(o["experts"]):
                m.add(f"{moe}.experts.{e}.down.weight", f"{src}.mlp.experts.down_proj", select(e))
        else:
            m.add(f"{moe}.router.weight", f"{src}.block_sparse_moe.gate.weight")
            for e in range(o["experts"]):
                for ours, theirs in (("gate", "w1"), ("up", "w3"), ("down", "w2")):
                    m.add(f"{moe}.experts.{e}.{ours}.weight", f"{src}.block_sparse_moe.experts.{e}.{theirs}.weight")
    return map_norm_and_head(m, lay)
