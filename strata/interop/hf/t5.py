"""T5 (`model_type: t5`; T5 v1.0 and v1.1, Flan-T5): T5ForConditionalGeneration,
T5Model and T5EncoderModel checkpoints.

Pre-norm encoder and decoder with RMSNorm and no biases, unscaled attention
logits plus a bucketed relative position bias (`position(relative)`: one table
per stack, stored in its first layer's self-attention; bidirectional in the
encoder, causal in the decoder), ReLU MLPs (v1.0) or gated tanh-GELU ones
(`feed_forward_proj: gated-gelu`, v1.1), and one embedding (`shared`) for both
stacks.  The LM head is `shared` itself unless the checkpoint holds its own
`lm_head.weight` (v1.1); it sees the decoder's output scaled by d ** -0.5 when
`scale_decoder_outputs` (transformers >= 5) or, in older configs,
`tie_word_embeddings` is not false.

T5's MLP drops out between its activation and `wo`; strata's `mlp` has no
dropout there, so only the residual and attention dropouts are imported (the
forward in eval mode is the same).
"""

from __future__ import annotations

from strata.interop.hf.config import (
    ACTIVATIONS,
    GATED_ACTIVATIONS,
    MAX_LAYERS,
    Config,
    HFImportError,
    check_architecture,
    show,
)
from strata.interop.hf.spec_ast import binop, block, model, neg, ref, repeat, residual, stack, use
from strata.interop.hf.checkpoint_reader import Mapping

MODEL_TYPES = ("t5",)
# architecture -> (decoder, LM head)
ARCHITECTURES = {"T5ForConditionalGeneration": (True, True), "T5Model": (True, False),
                 "T5EncoderModel": (False, False)}

# Export (family_export.py) runs this module backwards: spec variable -> config key, and
# the candidates of the keys that shape the spec; the importer picks.
EXPORT_KEYS = {"vocab": "vocab_size", "d": "d_model", "heads": "num_heads", "d_kv": "d_kv", "d_ff": "d_ff",
               "depth": "num_layers", "decoder_depth": "num_decoder_layers", "eps": "layer_norm_epsilon",
               "p": "dropout_rate", "buckets": "relative_attention_num_buckets",
               "max_distance": "relative_attention_max_distance"}
EXPORT_CHOICES = {"architectures": [[a] for a in ARCHITECTURES], "tie_word_embeddings": [True, False],
                  "feed_forward_proj": list(ACTIVATIONS) + [f"gated-{a}" for a in GATED_ACTIVATIONS
                                                           if a != "gelu_new"],
                  "scale_decoder_outputs": [None, True, False]}


def layout(cfg: Config, keys: set[str] | None) -> dict:
    arch = cfg.architecture
    check_architecture(arch, ARCHITECTURES, "t5")
    decoder, head = ARCHITECTURES[arch or "T5ForConditionalGeneration"]
    own_head = False
    if keys is not None:
        decoder = any(k.startswith("decoder.") for k in keys)
        own_head = "lm_head.weight" in keys
        head = decoder and (head or own_head)
    return {"decoder": decoder, "head": head, "tied": not own_head}


def _activation(cfg: Config) -> str:
    """feed_forward_proj: `relu`, `gelu`, ... or `gated-gelu`, `gated-silu`, ...; the
    gated GELU is the tanh one (HF maps `gated-gelu` to gelu_new)."""
    proj = cfg.raw.get("feed_forward_proj", "relu")
    gated = isinstance(proj, str) and proj.startswith("gated-")
    act = proj[len("gated-"):] if gated else proj
    if gated and act == "gelu":
        act = "gelu_new"
    table = GATED_ACTIVATIONS if gated else ACTIVATIONS
    if not isinstance(act, str) or act not in table or proj.count("-") > 1:
        choices = ", ".join(sorted(ACTIVATIONS) + [f"gated-{a}" for a in sorted(GATED_ACTIVATIONS)])
        raise HFImportError(f"unsupported option feed_forward_proj={show(proj)} in config.json: "
                            f"strata supports {choices}")
    return table[act]


def _options(cfg: Config) -> dict:
    d = cfg.int("d_model")
    depth = cfg.int("num_layers", high=MAX_LAYERS)
    buckets = cfg.int("relative_attention_num_buckets", default=32, low=4, high=2 ** 16)
    distance = cfg.int("relative_attention_max_distance", default=128)
    if distance <= buckets // 2:
        raise HFImportError(f"config.json: relative_attention_max_distance ({distance}) should exceed "
                            f"relative_attention_num_buckets // 2 ({buckets // 2})")
    if cfg.has("scale_decoder_outputs"):
        scale = cfg.bool("scale_decoder_outputs", True)
    else:
        scale = cfg.bool("tie_word_embeddings", True)
    return {"vocab": cfg.int("vocab_size"), "d": d, "heads": cfg.int("num_heads"), "d_kv": cfg.int("d_kv"),
            "d_ff": cfg.int("d_ff"), "depth": depth,
            "decoder_depth": cfg.int("num_decoder_layers", default=depth, high=MAX_LAYERS),
            "buckets": buckets, "max_distance": distance,
            "eps": cfg.float("layer_norm_epsilon", default=1e-6, low_open=True, high=1.0),
            "p": cfg.probability("dropout_rate", 0.1), "act": _activation(cfg), "scale": scale}


def spec(cfg: Config, lay: dict):
    o = _options(cfg)
    variables = [(k, o[k]) for k in ("vocab", "d", "heads", "d_kv", "d_ff", "depth")]
    if lay["decoder"] and o["decoder_depth"] != o["depth"]:
        variables.append(("decoder_depth", o["decoder_depth"]))
    variables += [(k, o[k]) for k in ("eps", "p") if k == "eps" or o[k]]
    drop = [use("dropout", ref("p"))] if o["p"] else []
    attn = {"head_dim": ref("d_kv"), "bias": False, "scale": 1} | ({"dropout": ref("p")} if o["p"] else {})

    def norm(alias):
        return use("rmsnorm", eps=ref("eps"), alias=alias)

    mlp = residual(norm("mlp_norm"), use("mlp", ref("d_ff"), act=ref(o["act"]), bias=False), *drop)
    blocks = [block("encoder_layer", residual(norm("attn_norm"), use("attention", ref("heads"), **attn), *drop), mlp)]
    position = {"buckets": ref("buckets"), "max_distance": ref("max_distance")}
    variables += [("buckets", o["buckets"]), ("max_distance", o["max_distance"])]
    stacks = [stack("encoder", ["src"], use("embedding", ref("vocab"), ref("d"), alias="embed"),
                    use("position", ref("relative"), alias="rel_pos", **position), *drop,
                    repeat(ref("depth"), "encoder_layer", "layers"), norm("norm"), *drop)]
    if lay["decoder"]:
        blocks.append(block(
            "decoder_layer",
            residual(norm("attn_norm"), use("attention", ref("heads"), causal=True, **attn), *drop),
            residual(norm("cross_attn_norm"), use("cross_attention", ref("heads"), ref("memory"), **attn), *drop),
            mlp))
        body = [use("embedding", ref("vocab"), ref("d"), tie=ref("encoder.embed"), alias="embed"),
                use("position", ref("relative"), alias="rel_pos", **position), *drop,
                repeat(ref("decoder_depth" if o["decoder_depth"] != o["depth"] else "depth"), "decoder_layer",
                       "layers"),
                norm("norm"), *drop]
        if lay["head"]:
            scale = {"scale": binop("**", ref("d"), neg(0.5))} if o["scale"] else {}
            body.append(use("lm_head", tie=ref("encoder.embed"), **scale) if lay["tied"]
                        else use("lm_head", ref("vocab"), **scale))
        stacks.append(stack("decoder", ["tgt", ("memory", "encoder")], *body))
    return model("t5", variables, blocks, stacks)


def mapping(cfg: Config, lay: dict, keys: set[str]) -> Mapping:
    o = _options(cfg)
    # the stacks' own copies of the shared embedding, when a checkpoint saved them
    m = Mapping(ignore=lambda k: k in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
                or k == "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight")
    m.add("encoder.embed.weight", "shared.weight")
    gated = o["act"] in ("geglu_tanh", "geglu", "swiglu")
    ff = [("up", "wi_1"), ("gate", "wi_0"), ("down", "wo")] if gated else [("up", "wi"), ("down", "wo")]
    stacks = [("encoder", o["depth"])] + ([("decoder", o["decoder_depth"])] if lay["decoder"] else [])
    for name, depth in stacks:
        m.add(f"{name}.rel_pos.weight", f"{name}.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        for i in range(depth):
            src, dst = f"{name}.block.{i}.layer", f"{name}.layers.{i}"
            for n in "qkvo":
                m.add(f"{dst}.attn.{n}.weight", f"{src}.0.SelfAttention.{n}.weight")
            m.add(f"{dst}.attn_norm.weight", f"{src}.0.layer_norm.weight")
            if name == "decoder":
                for n in "qkvo":
                    m.add(f"{dst}.cross_attn.{n}.weight", f"{src}.1.EncDecAttention.{n}.weight")
                m.add(f"{dst}.cross_attn_norm.weight", f"{src}.1.layer_norm.weight")
            j = 2 if name == "decoder" else 1
            m.add(f"{dst}.mlp_norm.weight", f"{src}.{j}.layer_norm.weight")
            for ours, theirs in ff:
                m.add(f"{dst}.mlp.{ours}.weight", f"{src}.{j}.DenseReluDense.{theirs}.weight")
        m.add(f"{name}.norm.weight", f"{name}.final_layer_norm.weight")
    if lay["head"] and not lay["tied"]:
        m.add("decoder.lm_head.weight", "lm_head.weight")
    return m
