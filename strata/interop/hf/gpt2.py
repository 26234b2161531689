"""GPT-2 (`model_type: gpt2`): GPT2Model and GPT2LMHeadModel checkpoints.

Pre-norm decoder with learned positions.  HF's Conv1D layers store weights
[in, out] (strata: [out, in]) and fuse q, k, v into one `c_attn` [d, 3d]; the
import transposes them and splits c_attn into q, k, v.
"""

from __future__ import annotations

from strata.interop.hf.config import (
    ACTIVATIONS,
    MAX_LAYERS,
    Config,
    HFImportError,
    activation,
    check_architecture,
)
from strata.interop.hf.spec_ast import block, model, ref, repeat, residual, stack, use
from strata.interop.hf.checkpoint_reader import Mapping, rows, transpose

MODEL_TYPES = ("gpt2",)
ARCHITECTURES = {"GPT2Model": False, "GPT2LMHeadModel": True}  # -> has an LM head
PREFIX = "transformer."

# Export (family_export.py) runs this module backwards: spec variable -> config key, and
# the candidates of the keys that shape the spec; the importer picks.
EXPORT_PREFIX = (PREFIX, "")
EXPORT_KEYS = {"vocab": "vocab_size", "ctx": "n_positions", "d": "n_embd", "heads": "n_head",
               "depth": "n_layer", "hidden": "n_inner", "eps": "layer_norm_epsilon",
               "p_embd": "embd_pdrop", "p_attn": "attn_pdrop", "p_resid": "resid_pdrop"}
EXPORT_CHOICES = {"architectures": [[a] for a in reversed(ARCHITECTURES)],
                  "tie_word_embeddings": [True, False],
                  "activation_function": list(ACTIVATIONS), "scale_attn_weights": [True, False]}


def layout(cfg: Config, keys: set[str] | None) -> dict:
    arch = cfg.architecture
    check_architecture(arch, ARCHITECTURES, "gpt2")
    prefixed = keys is not None and any(k.startswith(PREFIX) for k in keys)
    if arch is not None:
        head = ARCHITECTURES[arch]
    else:
        head = prefixed or (keys is None)
    tied = cfg.bool("tie_word_embeddings", True)
    if keys is not None and "lm_head.weight" in keys:
        head = True
    return {"head": head, "tied": tied, "prefix": PREFIX if prefixed else ""}


def _options(cfg: Config) -> dict:
    cfg.refuse_if("scale_attn_by_inverse_layer_idx", bool, "strata's attention has one logit scale")
    cfg.refuse_if("add_cross_attention", bool, "a GPT-2 with cross-attention is not a GPT-2 LM")
    d = cfg.int("n_embd", "hidden_size")
    heads = cfg.int("n_head", "num_attention_heads")
    if d % heads:
        raise HFImportError(f"config.json: n_head ({heads}) does not divide n_embd ({d})")
    return {
        "vocab": cfg.int("vocab_size"), "ctx": cfg.int("n_positions", "max_position_embeddings"),
        "d": d, "heads": heads, "depth": cfg.int("n_layer", "num_hidden_layers", high=MAX_LAYERS),
        "hidden": cfg.int("n_inner", default=4 * d),
        "eps": cfg.float("layer_norm_epsilon", default=1e-5, low_open=True, high=1.0),
        "act": activation(cfg, "activation_function", "gelu_new"),
        "scaled": cfg.bool("scale_attn_weights", True),
        "p_embd": cfg.probability("embd_pdrop", 0.1), "p_attn": cfg.probability("attn_pdrop", 0.1),
        "p_resid": cfg.probability("resid_pdrop", 0.1),
    }


def spec(cfg: Config, lay: dict):
    o = _options(cfg)
    drop = [use("dropout", ref("p_resid"))] if o["p_resid"] else []
    attn = {"causal": True}
    if not o["scaled"]:
        attn["scale"] = 1
    if o["p_attn"]:
        attn["dropout"] = ref("p_attn")
    eps = {"eps": ref("eps")}
    layer = block(
        "layer",
        residual(use("layernorm", alias="ln_1", **eps), use("attention", ref("heads"), **attn), *drop),
        residual(use("layernorm", alias="ln_2", **eps),
                 use("mlp", ref("hidden"), act=ref(o["act"])), *drop))
    body = [use("embedding", ref("vocab"), ref("d"), alias="wte"),
            use("position", ref("learned"), ref("ctx"), alias="wpe")]
    if o["p_embd"]:
        body.append(use("dropout", ref("p_embd")))
    body += [repeat(ref("depth"), "layer", "h"), use("layernorm", alias="ln_f", **eps)]
    if lay["head"]:
        body.append(use("lm_head", tie=ref("wte")) if lay["tied"] else use("lm_head", ref("vocab")))
    variables = [(k, o[k]) for k in ("vocab", "ctx", "d", "heads", "depth", "hidden", "eps",
                                     "p_embd", "p_attn", "p_resid")]
    return model("gpt2", variables, [layer], [stack("decoder", ["tokens"], *body)])


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
