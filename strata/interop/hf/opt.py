"""OPT (`model_type: opt`): OPTModel and OPTForCausalLM checkpoints.

LayerNorm decoder, pre-norm (125M, 1.3B and up) or post-norm (350M:
`do_layer_norm_before: false`), ReLU MLPs, learned positions whose table
starts two rows before position 0 (`position(learned, ctx, offset=2)`), and,
where `word_embed_proj_dim` differs from `hidden_size` (350M), bias-free
projections from the embedding width in and out.  The LM head is tied to the
embedding.  Every weight is a plain rename.
"""

from __future__ import annotations

from strata.interop.hf.config import ACTIVATIONS
from strata.interop.hf.config import MAX_LAYERS, Config, activation, check_architecture
from strata.interop.hf.decoder import heads, lm_head, prefix
from strata.interop.hf.spec_ast import block, model, ref, repeat, residual, stack, use
from strata.interop.hf.checkpoint_reader import Mapping

MODEL_TYPES = ("opt",)
ARCHITECTURES = {"OPTModel": False, "OPTForCausalLM": True}
OFFSET = 2  # OPTLearnedPositionalEmbedding's rows before position 0

# Export (family_export.py) runs this module backwards: spec variable -> config key, and
# the candidates of the keys that shape the spec; the importer picks.
EXPORT_PREFIX = ("model.decoder.", "decoder.")
EXPORT_KEYS = {"vocab": "vocab_size", "ctx": "max_position_embeddings", "d": "hidden_size",
               "width": "word_embed_proj_dim", "heads": "num_attention_heads", "depth": "num_hidden_layers",
               "hidden": "ffn_dim", "p": "dropout", "p_attn": "attention_dropout"}
EXPORT_CHOICES = {"architectures": [["OPTForCausalLM"], ["OPTModel"]], "tie_word_embeddings": [True, False],
                  "activation_function": list(ACTIVATIONS), "enable_bias": [True, False],
                  "do_layer_norm_before": [True, False], "_remove_final_layer_norm": [None, True]}


def layout(cfg: Config, keys: set[str] | None) -> dict:
    arch = cfg.architecture
    check_architecture(arch, ARCHITECTURES, "opt")
    p = prefix(keys, "model.decoder.", "decoder.")
    head = ARCHITECTURES[arch] if arch is not None else (keys is None or p == "model.decoder.")
    if keys is not None and "lm_head.weight" in keys and not cfg.bool("tie_word_embeddings", True):
        head = True
    return {"head": head, "tied": cfg.bool("tie_word_embeddings", True), "prefix": p or "model.decoder."}


def _options(cfg: Config) -> dict:
    cfg.refuse_if("layer_norm_elementwise_affine", lambda v: v is False,
                  "strata's LayerNorm has a weight and a bias")
    d = cfg.int("hidden_size")
    n, _, _ = heads(cfg, d, kv_key=None, head_dim_key=None)
    pre = cfg.bool("do_layer_norm_before", True)
    return {"vocab": cfg.int("vocab_size"), "ctx": cfg.int("max_position_embeddings"), "d": d,
            "width": cfg.int("word_embed_proj_dim", default=d), "heads": n,
            "depth": cfg.int("num_hidden_layers", high=MAX_LAYERS), "hidden": cfg.int("ffn_dim"),
            "act": activation(cfg, "activation_function", "relu"), "bias": cfg.bool("enable_bias", True),
            "pre": pre, "final_norm": pre and not cfg.bool("_remove_final_layer_norm", False),
            "p": cfg.probability("dropout", 0.1), "p_attn": cfg.probability("attention_dropout", 0.0)}


def spec(cfg: Config, lay: dict):
    o = _options(cfg)
    variables = [(k, o[k]) for k in ("vocab", "ctx", "d")]
    if o["width"] != o["d"]:
        variables.append(("width", o["width"]))
    variables += [(k, o[k]) for k in ("heads", "depth", "hidden")] + [(k, o[k]) for k in ("p", "p_attn") if o[k]]
    drop = [use("dropout", ref("p"))] if o["p"] else []
    bias = {} if o["bias"] else {"bias": False}
    attn = use("attention", ref("heads"), causal=True, **bias, **({"dropout": ref("p_attn")} if o["p_attn"] else {}))
    mlp = use("mlp", ref("hidden"), act=ref(o["act"]), **bias)
    attn_norm, mlp_norm = use("layernorm", alias="self_attn_norm"), use("layernorm", alias="mlp_norm")
    if o["pre"]:
        layer = block("layer", residual(attn_norm, attn, *drop), residual(mlp_norm, mlp, *drop))
    else:  # 350M: each sub-layer's norm after its residual
        layer = block("layer", residual(attn, *drop), attn_norm, residual(mlp, *drop), mlp_norm)
    body = [use("embedding", ref("vocab"), ref("width" if o["width"] != o["d"] else "d"), alias="embed_tokens")]
    if o["width"] != o["d"]:
        body.append(use("linear", ref("d"), bias=False, alias="project_in"))
    body += [use("position", ref("learned"), ref("ctx"), offset=OFFSET, alias="embed_positions"),
             repeat(ref("depth"), "layer", "layers")]
    if o["final_norm"]:
        body.append(use("layernorm", alias="final_norm"))
    if o["width"] != o["d"]:
        body.append(use("linear", ref("width"), bias=False, alias="project_out"))
    if lay["head"]:
        body.append(lm_head(lay, "embed_tokens"))
    return model("opt", variables, [layer], [stack("decoder", ["tokens"], *body)])


def mapping(cfg: Config, lay: dict, keys: set[str]) -> Mapping:
    o, p = _options(cfg), lay["prefix"]
    extra = {"lm_head.weight"} if lay["tied"] else set()
    m = Mapping(ignore=lambda k: k in extra)
    m.add("decoder.embed_tokens.weight", f"{p}embed_tokens.weight")
    m.add("decoder.embed_positions.weight", f"{p}embed_positions.weight")
    for name in ("project_in", "project_out"):
        if o["width"] != o["d"]:
            m.add(f"decoder.{name}.weight", f"{p}{name}.weight")
    for i in range(o["depth"]):
        src, dst = f"{p}layers.{i}", f"decoder.layers.{i}"
        pairs = [("self_attn_norm", "self_attn_layer_norm"), ("mlp_norm", "final_layer_norm")]
        pairs += [(f"attn.{a}", f"self_attn.{b}") for a, b in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"),
                                                               ("o", "out_proj"))]
        pairs += [("mlp.up", "fc1"), ("mlp.down", "fc2")]
        for ours, theirs in pairs:
            m.add(f"{dst}.{ours}.weight", f"{src}.{theirs}.weight")
            if o["bias"] or "norm" in ours:
                m.add(f"{dst}.{ours}.bias", f"{src}.{theirs}.bias")
    if o["final_norm"]:
        m.add("decoder.final_norm.weight", f"{p}final_layer_norm.weight")
        m.add("decoder.final_norm.bias", f"{p}final_layer_norm.bias")
    if lay["head"] and not lay["tied"]:
        m.add("decoder.lm_head.weight", "lm_head.weight")
    return m
