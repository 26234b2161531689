"""Falcon (`model_type: falcon`): FalconModel and FalconForCausalLM checkpoints.

Rotary LayerNorm decoder, attention and MLP in parallel behind one LayerNorm
(7B) or two (`new_decoder_architecture`, 40B / 180B: `ln_attn`, `ln_mlp`), or
sequential (`parallel_attn: false`).  Multi-query (one key/value head) or, in
the new architecture, `num_kv_heads` groups.  The fused `query_key_value` holds
q, k and v as the architecture lays them out; the import picks each one's rows:

    new architecture:  per kv group, its heads / kv query heads, then k, then v
    multi_query:       every query head, then k, then v
    otherwise:         per head, q, k, v
"""

from __future__ import annotations

from strata.interop.hf.config import ACTIVATIONS, rope_parameters
from strata.interop.hf.config import MAX_LAYERS, Config, HFImportError, activation, check_architecture, rope
from strata.interop.hf.decoder import heads, lm_head, prefix
from strata.interop.hf.spec_ast import block, binop, model, parallel, ref, repeat, residual, seq, stack, use
from strata.interop.hf.checkpoint_reader import Mapping, pick

MODEL_TYPES = ("falcon",)
ARCHITECTURES = {"FalconModel": False, "FalconForCausalLM": True}

# Export (family_export.py) runs this module backwards: spec variable -> config key, and
# the candidates of the keys that shape the spec; the importer picks.
EXPORT_PREFIX = ("transformer.", "")
EXPORT_KEYS = {"vocab": "vocab_size", "ctx": "max_position_embeddings", "d": "hidden_size",
               "heads": "num_attention_heads", "kv_heads": "num_kv_heads", "depth": "num_hidden_layers",
               "eps": "layer_norm_epsilon", "p": "hidden_dropout", "p_attn": "attention_dropout",
               "hidden": "ffn_hidden_size"}
EXPORT_CHOICES = {"architectures": [["FalconForCausalLM"], ["FalconModel"]], "alibi": [False],
                  "multi_query": [True, False], "parallel_attn": [True, False],
                  "new_decoder_architecture": [False, True], "num_ln_in_parallel_attn": [None, 1, 2],
                  "tie_word_embeddings": [True, False], "activation": list(ACTIVATIONS),
                  "bias": [False, True], "rope_parameters": lambda v, f: [rope_parameters(f)]}


def layout(cfg: Config, keys: set[str] | None) -> dict:
    arch = cfg.architecture
    check_architecture(arch, ARCHITECTURES, "falcon")
    p = prefix(keys, "transformer.")
    head = ARCHITECTURES[arch] if arch is not None else (keys is None or p == "transformer.")
    if keys is not None and "lm_head.weight" in keys and not cfg.bool("tie_word_embeddings", True):
        head = True
    return {"head": head, "tied": cfg.bool("tie_word_embeddings", True), "prefix": p}


def _options(cfg: Config) -> dict:
    cfg.refuse_if("alibi", bool, "strata imports Falcon with rotary positions (Falcon's ALiBi scales "
                  "its logits differently)")
    d = cfg.int("hidden_size")
    n, _, hd = heads(cfg, d, kv_key=None, head_dim_key=None)
    new = cfg.bool("new_decoder_architecture", False)
    par = cfg.bool("parallel_attn", True)
    if new:
        kv = cfg.int("num_kv_heads", default=n)
        if n % kv:
            raise HFImportError(f"config.json: num_kv_heads ({kv}) does not divide num_attention_heads ({n})")
        norms = cfg.int("num_ln_in_parallel_attn", default=2, high=2)
        if not par:
            raise HFImportError("unsupported option parallel_attn=False in config.json: Falcon's new "
                                "decoder architecture runs attention and MLP in parallel")
    else:
        kv = 1 if cfg.bool("multi_query", True) else n
        norms = 1
    base, fraction = rope(cfg)
    return {"vocab": cfg.int("vocab_size"), "ctx": cfg.int("max_position_embeddings", default=2048), "d": d,
            "heads": n, "kv_heads": kv, "head_dim": hd, "depth": cfg.int("num_hidden_layers", high=MAX_LAYERS),
            "hidden": cfg.int("ffn_hidden_size", default=4 * d),
            "eps": cfg.float("layer_norm_epsilon", default=1e-5, low_open=True, high=1.0),
            "act": activation(cfg, "activation", "gelu"), "bias": cfg.bool("bias", False),
            "new": new, "parallel": par, "norms": norms,
            "p": cfg.probability("hidden_dropout", 0.0), "p_attn": cfg.probability("attention_dropout", 0.0),
            "base": base, "fraction": fraction}


def spec(cfg: Config, lay: dict):
    o = _options(cfg)
    variables = [(k, o[k]) for k in ("vocab", "ctx", "d", "heads")]
    attn = {}
    if o["kv_heads"] != o["heads"]:
        variables.append(("kv_heads", o["kv_heads"]))
        attn["kv_heads"] = ref("kv_heads")
    attn.update(causal=True, bias=o["bias"])
    if o["p_attn"]:
        attn["dropout"] = ref("p_attn")
    variables += [(k, o[k]) for k in ("depth", "eps")] + [(k, o[k]) for k in ("p", "p_attn") if o[k]]
    hidden = binop("*", 4, ref("d"))
    if o["hidden"] != 4 * o["d"]:
        variables.append(("hidden", o["hidden"]))
        hidden = ref("hidden")
    attention = use("attention", ref("heads"), **attn)
    mlp = use("mlp", hidden, act=ref(o["act"]), bias=o["bias"])
    norm = {"eps": ref("eps")}
    if not o["parallel"]:  # HF drops out the attention output with attention_dropout, the MLP's with hidden_
        drop_attn = [use("dropout", ref("p_attn"))] if o["p_attn"] else []
        drop = [use("dropout", ref("p"))] if o["p"] else []
        layer = block("layer", residual(use("layernorm", alias="input_norm", **norm), attention, *drop_attn),
                      residual(use("layernorm", alias="post_attention_norm", **norm), mlp, *drop))
    elif o["norms"] == 2:
        layer = block("layer", residual(parallel(seq(use("layernorm", alias="ln_attn", **norm), attention),
                                                 seq(use("layernorm", alias="ln_mlp", **norm), mlp)),
                                        *([use("dropout", ref("p"))] if o["p"] else [])))
    else:
        layer = block("layer", residual(use("layernorm", alias="input_norm", **norm), parallel(attention, mlp),
                                        *([use("dropout", ref("p"))] if o["p"] else [])))
    rotary = {"base": o["base"]} | ({"fraction": o["fraction"]} if o["fraction"] != 1 else {})
    body = [use("embedding", ref("vocab"), ref("d"), alias="embed"), use("position", ref("rotary"), **rotary),
            repeat(ref("depth"), "layer", "layers"), use("layernorm", alias="final_norm", **norm)]
    if lay["head"]:
        body.append(lm_head(lay, "embed"))
    return model("falcon", variables, [layer], [stack("decoder", ["tokens"], *body)])


def qkv_rows(heads: int, kv: int, hd: int, new: bool) -> dict[str, list[int]]:
    """Row indices of q, k and v in Falcon's fused query_key_value weight."""
    def span(start):
        return list(range(start, start + hd))

    q, k, v = [], [], []
    if new:  # per kv group: heads / kv query heads, one k, one v
        per = heads // kv
        for g in range(kv):
            base = g * (per + 2) * hd
            q += [r for j in range(per) for r in span(base + j * hd)]
            k += span(base + per * hd)
            v += span(base + (per + 1) * hd)
    elif kv == 1:  # multi-query: all query heads, then k, then v
        q, k, v = list(range(heads * hd)), span(heads * hd), span((heads + 1) * hd)
    else:  # per head: q, k, v
        for h in range(heads):
            q += span(3 * h * hd)
            k += span((3 * h + 1) * hd)
            v += span((3 * h + 2) * hd)
    return {"q": q, "k": k, "v": v}


def mapping(cfg: Config, lay: dict, keys: set[str]) -> Mapping:
    o, p = _options(cfg), lay["prefix"]
    extra = {"lm_head.weight"} if lay["tied"] else set()
    m = Mapping(ignore=lambda k: k.endswith(".inv_freq") or k in extra)
    m.add("decoder.embed.weight", f"{p}word_embeddings.weight")
    rows = qkv_rows(o["heads"], o["kv_heads"], o["head_dim"], o["new"])
    for i in range(o["depth"]):
        src, dst = f"{p}h.{i}", f"decoder.layers.{i}"
        if not o["parallel"]:
            norms = [("input_norm", "input_layernorm"), ("post_attention_norm", "post_attention_layernorm")]
        elif o["norms"] == 2:
            norms = [("ln_attn", "ln_attn"), ("ln_mlp", "ln_mlp")]
        else:
            norms = [("input_norm", "input_layernorm")]
        for ours, theirs in norms:
            m.add(f"{dst}.{ours}.weight", f"{src}.{theirs}.weight")
            m.add(f"{dst}.{ours}.bias", f"{src}.{theirs}.bias")
        qkv = f"{src}.self_attention.query_key_value"
        for name in "qkv":
            m.add(f"{dst}.attn.{name}.weight", f"{qkv}.weight", pick(rows[name]))
            if o["bias"]:
                m.add(f"{dst}.attn.{name}.bias", f"{qkv}.bias", pick(rows[name]))
        pairs = [("attn.o", "self_attention.dense"), ("mlp.up", "mlp.dense_h_to_4h"), ("mlp.down", "mlp.dense_4h_to_h")]
        for ours, theirs in pairs:
            m.add(f"{dst}.{ours}.weight", f"{src}.{theirs}.weight")
            if o["bias"]:
                m.add(f"{dst}.{ours}.bias", f"{src}.{theirs}.bias")
    m.add("decoder.final_norm.weight", f"{p}ln_f.weight")
    m.add("decoder.final_norm.bias", f"{p}ln_f.bias")
    if lay["head"] and not lay["tied"]:
        m.add("decoder.lm_head.weight", "lm_head.weight")
    return m
