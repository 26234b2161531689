"""GPT-NeoX (`model_type: gpt_neox`; Pythia): GPTNeoXModel and GPTNeoXForCausalLM.

LayerNorm decoder with rotary positions on the first `rotary_pct` of each
head's dims and, by default, parallel residuals: x + attn(ln1(x)) + mlp(ln2(x)).
The fused `query_key_value` [3d, d] interleaves q, k and v per head (rows
h*3*hd ... of head h: its q, then k, then v): the import picks each one's rows.
"""

from __future__ import annotations

from strata.interop.hf.config import ACTIVATIONS, rope_parameters
from strata.interop.hf.config import MAX_LAYERS, Config, activation, check_architecture, rope
from strata.interop.hf.decoder import heads, lm_head, prefix
from strata.interop.hf.spec_ast import block, model, parallel, ref, repeat, residual, seq, stack, use
from strata.interop.hf.checkpoint_reader import Mapping, pick

MODEL_TYPES = ("gpt_neox",)
ARCHITECTURES = {"GPTNeoXModel": False, "GPTNeoXForCausalLM": True}

# Export (family_export.py) runs this module backwards: spec variable -> config key, and
# the candidates of the keys that shape the spec; the importer picks.
EXPORT_PREFIX = ("gpt_neox.", "")
EXPORT_KEYS = {"vocab": "vocab_size", "ctx": "max_position_embeddings", "d": "hidden_size",
               "heads": "num_attention_heads", "depth": "num_hidden_layers", "hidden": "intermediate_size",
               "eps": "layer_norm_eps", "p": "hidden_dropout", "p_attn": "attention_dropout"}
EXPORT_CHOICES = {"architectures": [["GPTNeoXForCausalLM"], ["GPTNeoXModel"]],
                  "tie_word_embeddings": [False, True], "hidden_act": list(ACTIVATIONS),
                  "use_parallel_residual": [True, False], "attention_bias": [True, False],
                  "rope_parameters": lambda v, f: [rope_parameters(f)]}


def layout(cfg: Config, keys: set[str] | None) -> dict:
    arch = cfg.architecture
    check_architecture(arch, ARCHITECTURES, "gpt_neox")
    p = prefix(keys, "gpt_neox.")
    head = ARCHITECTURES[arch] if arch is not None else (keys is None or p == "gpt_neox.")
    if keys is not None and "embed_out.weight" in keys:
        head = True
    return {"head": head, "tied": cfg.bool("tie_word_embeddings", False), "prefix": p}


def _options(cfg: Config) -> dict:
    d = cfg.int("hidden_size")
    n, _, hd = heads(cfg, d, kv_key=None, head_dim_key=None)
    base, fraction = rope(cfg, base_key="rotary_emb_base", fraction_key="rotary_pct", fraction_default=0.25)
    return {"vocab": cfg.int("vocab_size"), "ctx": cfg.int("max_position_embeddings", default=2048),
            "d": d, "heads": n, "head_dim": hd, "depth": cfg.int("num_hidden_layers", high=MAX_LAYERS),
            "hidden": cfg.int("intermediate_size", default=4 * d),
            "eps": cfg.float("layer_norm_eps", default=1e-5, low_open=True, high=1.0),
            "act": activation(cfg, "hidden_act", "gelu"),
            "parallel": cfg.bool("use_parallel_residual", True), "bias": cfg.bool("attention_bias", True),
            "p": cfg.probability("hidden_dropout", 0.0), "p_attn": cfg.probability("attention_dropout", 0.0),
            "base": base, "fraction": fraction}


def spec(cfg: Config, lay: dict):
    o = _options(cfg)
    variables = [(k, o[k]) for k in ("vocab", "ctx", "d", "heads", "depth", "hidden", "eps")]
    drop = [use("dropout", ref("p"))] if o["p"] else []
    attn = {"causal": True, "bias": o["bias"]}
    if o["p_attn"]:
        attn["dropout"] = ref("p_attn")
    variables += [(k, o[k]) for k in ("p", "p_attn") if o[k]]
    attention = [use("layernorm", eps=ref("eps"), alias="input_norm"), use("attention", ref("heads"), **attn),
                 *drop]
    mlp = [use("layernorm", eps=ref("eps"), alias="post_attention_norm"),
           use("mlp", ref("hidden"), act=ref(o["act"])), *drop]
    if o["parallel"]:
        layer = block("layer", residual(parallel(seq(*attention), seq(*mlp))))
    else:
        layer = block("layer", residual(*attention), residual(*mlp))
    rotary = {"base": o["base"]} | ({"fraction": o["fraction"]} if o["fraction"] != 1 else {})
    body = [use("embedding", ref("vocab"), ref("d"), alias="embed"), use("position", ref("rotary"), **rotary),
            *drop, repeat(ref("depth"), "layer", "layers"), use("layernorm", eps=ref("eps"), alias="final_norm")]
    if lay["head"]:
        body.append(lm_head(lay, "embed"))
    return model("gpt_neox", variables, [layer], [stack("decoder", ["tokens"], *body)])


def mapping(cfg: Config, lay: dict, keys: set[str]) -> Mapping:
    o, p = _options(cfg), lay["prefix"]
    n, hd = o["heads"], o["head_dim"]
    extra = {"embed_out.weight"} if lay["tied"] else set()
    m = Mapping(ignore=lambda k: k.endswith((".attention.bias", ".attention.masked_bias", ".inv_freq"))
                or k in extra)
    m.add("decoder.embed.weight", f"{p}embed_in.weight")
    for i in range(o["depth"]):
        src, dst = f"{p}layers.{i}", f"decoder.layers.{i}"
        for ours, theirs in (("input_norm", "input_layernorm"), ("post_attention_norm", "post_attention_layernorm")):
            m.add(f"{dst}.{ours}.weight", f"{src}.{theirs}.weight")
            m.add(f"{dst}.{ours}.bias", f"{src}.{theirs}.bias")
        qkv = f"{src}.attention.query_key_value"
        for j, name in enumerate("qkv"):  # head h's rows: [q_h; k_h; v_h], each hd long
            index = [h * 3 * hd + j * hd + r for h in range(n) for r in range(hd)]
            m.add(f"{dst}.attn.{name}.weight", f"{qkv}.weight", pick(index))
            if o["bias"]:
                m.add(f"{dst}.attn.{name}.bias", f"{qkv}.bias", pick(index))
        m.add(f"{dst}.attn.o.weight", f"{src}.attention.dense.weight")
        if o["bias"]:
            m.add(f"{dst}.attn.o.bias", f"{src}.attention.dense.bias")
        for ours, theirs in (("up", "dense_h_to_4h"), ("down", "dense_4h_to_h")):
            m.add(f"{dst}.mlp.{ours}.weight", f"{src}.mlp.{theirs}.weight")
            m.add(f"{dst}.mlp.{ours}.bias", f"{src}.mlp.{theirs}.bias")
    m.add("decoder.final_norm.weight", f"{p}final_layer_norm.weight")
    m.add("decoder.final_norm.bias", f"{p}final_layer_norm.bias")
    if lay["head"] and not lay["tied"]:
        m.add("decoder.lm_head.weight", "embed_out.weight")
    return m
