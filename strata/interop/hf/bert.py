"""BERT (`model_type: bert`): BertModel, BertForMaskedLM, BertForPreTraining,
BertForNextSentencePrediction and BertForSequenceClassification checkpoints.

Post-norm encoder: word + learned position + token-type embeddings summed and
normalized, then per layer attention -> add -> LayerNorm -> MLP -> add ->
LayerNorm.  The heads the checkpoint holds are imported: the tanh pooler, the
masked-LM head (`cls.predictions`, its decoder tied to the word embeddings
unless tie_word_embeddings is false), the next-sentence head
(`cls.seq_relationship`) and a sequence classifier.
"""

from __future__ import annotations

from strata.interop.hf.config import (
    Config,
    HFImportError,
    activation,
    check_architecture,
    num,
)
from strata.interop.hf.weights import Mapping

# architecture -> (pooler, mlm, nsp, classifier) it has when the tensors cannot tell
ARCHITECTURES = {
    "BertModel": (True, False, False, False),
    "BertForMaskedLM": (False, True, False, False),
    "BertForPreTraining": (True, True, True, False),
    "BertForNextSentencePrediction": (True, False, True, False),
    "BertForSequenceClassification": (True, False, False, True),
}
PREFIX = "bert."


def layout(cfg: Config, keys: set[str] | None) -> dict:
    arch = cfg.architecture
    check_architecture(arch, ARCHITECTURES, "bert")
    if keys is None:
        pooler, mlm, nsp, cls = ARCHITECTURES[arch or "BertModel"]
        return {"pooler": pooler, "mlm": mlm, "nsp": nsp, "classifier": cls, "prefix": PREFIX}
    p = PREFIX if any(k.startswith(PREFIX) for k in keys) else ""
    nsp = "cls.seq_relationship.weight" in keys
    cls = "classifier.weight" in keys
    return {"pooler": f"{p}pooler.dense.weight" in keys,
            "mlm": "cls.predictions.transform.dense.weight" in keys, "nsp": nsp,
            "classifier": cls, "prefix": p}


def _options(cfg: Config) -> dict:
    cfg.refuse_if("position_embedding_type", lambda v: v != "absolute",
                  "strata's BERT uses absolute (learned) positions")
    cfg.refuse_if("is_decoder", bool, "strata imports BERT as an encoder")
    cfg.refuse_if("add_cross_attention", bool, "strata imports BERT as an encoder")
    d = cfg.positive("hidden_size")
    heads = cfg.positive("num_attention_heads")
    if d % heads:
        raise HFImportError(f"config.json: num_attention_heads ({heads}) does not divide "
                            f"hidden_size ({d})")
    labels = cfg.get("id2label")
    return {
        "vocab": cfg.positive("vocab_size"), "ctx": cfg.positive("max_position_embeddings"), "d": d,
        "heads": heads, "depth": cfg.positive("num_hidden_layers"),
        "hidden": cfg.positive("intermediate_size"), "types": cfg.positive("type_vocab_size"),
        "eps": float(cfg.get("layer_norm_eps", 1e-12)),
        "act": activation(cfg, "hidden_act", "gelu"),
        "p": float(cfg.get("hidden_dropout_prob", 0.1)),
        "p_attn": float(cfg.get("attention_probs_dropout_prob", 0.1)),
        "p_cls": float(cfg.get("classifier_dropout", cfg.get("hidden_dropout_prob", 0.1))),
        "labels": len(labels) if isinstance(labels, dict) and labels else cfg.get("num_labels", 2),
        "tied": bool(cfg.get("tie_word_embeddings", True)),
    }


def spec(cfg: Config, lay: dict) -> str:
    o = _options(cfg)
    pd = "; dropout(p)" if o["p"] else ""
    attn = "attention(heads, dropout=p_attn)" if o["p_attn"] else "attention(heads)"
    heads = [k for k in ("pooler", "mlm", "nsp", "classifier") if lay[k]]
    if (lay["nsp"] or lay["classifier"]) and not lay["pooler"] or lay["nsp"] and lay["classifier"]:
        raise HFImportError(f"unsupported BERT checkpoint: heads {', '.join(heads)} in an "
                            "unexpected combination")
    tail = []
    if lay["nsp"]:
        tail.append("branch { pooler; nsp_head(2) } as nsp")
    elif lay["classifier"]:
        drop = "dropout(p_cls); " if o["p_cls"] else ""
        tail.append(f"branch {{ pooler; {drop}classifier({o['labels']}) }} as logits")
    elif lay["pooler"]:
        tail.append("branch { pooler } as pooled")
    if lay["mlm"]:
        target = "tie=word_embeddings" if o["tied"] else "vocab"
        tail.append(f"mlm_head({target}, act={o['act']}, eps=eps)")
    body = "".join(f"    {t}\n" for t in tail)
    return f"""\
model bert {{
  vocab  = {o['vocab']}
  ctx    = {o['ctx']}
  types  = {o['types']}
  d      = {o['d']}
  heads  = {o['heads']}
  depth  = {o['depth']}
  hidden = {o['hidden']}
  eps    = {num(o['eps'])}
  p      = {num(o['p'])}
  p_attn = {num(o['p_attn'])}
{f"  p_cls  = {num(o['p_cls'])}" + chr(10) if lay['classifier'] else ""}\

  block layer {{
    residual {{ {attn}{pd} }}
    layernorm(eps=eps) as attention_norm
    residual {{ mlp(hidden, act={o['act']}){pd} }}
    layernorm(eps=eps) as output_norm
  }}

  stack encoder(tokens) {{
    embedding(vocab, d) as word_embeddings
    position(learned, ctx) as position_embeddings
    token_types(types) as token_type_embeddings
    layernorm(eps=eps) as embeddings_norm
{"    dropout(p)" + chr(10) if o['p'] else ""}\
    repeat(depth) layer as layer
{body}\
  }}
}}
"""


def _norm(keys: set[str], base: str) -> tuple[str, str]:
    """LayerNorm tensor names: `weight`/`bias`, or TF-converted `gamma`/`beta`."""
    if f"{base}.gamma" in keys and f"{base}.weight" not in keys:
        return f"{base}.gamma", f"{base}.beta"
    return f"{base}.weight", f"{base}.bias"


def mapping(cfg: Config, lay: dict, keys: set[str]) -> Mapping:
    o, p = _options(cfg), lay["prefix"]
    ignore = {f"{p}embeddings.position_ids", f"{p}embeddings.token_type_ids"}
    m = Mapping(ignore=lambda k: k in ignore)

    def dense(ours, theirs):
        m.add(f"{ours}.weight", f"{theirs}.weight")
        m.add(f"{ours}.bias", f"{theirs}.bias")

    def norm(ours, theirs):
        w, b = _norm(keys, theirs)
        m.add(f"{ours}.weight", w)
        m.add(f"{ours}.bias", b)

    e = f"{p}embeddings"
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        m.add(f"encoder.{name}.weight", f"{e}.{name}.weight")
    norm("encoder.embeddings_norm", f"{e}.LayerNorm")
    for i in range(o["depth"]):
        src, dst = f"{p}encoder.layer.{i}", f"encoder.layer.{i}"
        for ours, theirs in (("q", "query"), ("k", "key"), ("v", "value")):
            dense(f"{dst}.attn.{ours}", f"{src}.attention.self.{theirs}")
        dense(f"{dst}.attn.o", f"{src}.attention.output.dense")
        norm(f"{dst}.attention_norm", f"{src}.attention.output.LayerNorm")
        dense(f"{dst}.mlp.up", f"{src}.intermediate.dense")
        dense(f"{dst}.mlp.down", f"{src}.output.dense")
        norm(f"{dst}.output_norm", f"{src}.output.LayerNorm")
    if lay["pooler"]:
        dense("encoder.pooler.dense", f"{p}pooler.dense")
    if lay["nsp"]:
        dense("encoder.nsp_head", "cls.seq_relationship")
    if lay["classifier"]:
        dense("encoder.classifier", "classifier")
    if lay["mlm"]:
        dense("encoder.mlm_head.dense", "cls.predictions.transform.dense")
        norm("encoder.mlm_head.norm", "cls.predictions.transform.LayerNorm")
        # The decoder's bias: HF ties cls.predictions.bias to decoder.bias and saves
        # it once as cls.predictions.bias; untied checkpoints save both, and only
        # decoder.bias is used by the forward (cls.predictions.bias is then dead).
        bias = "cls.predictions.decoder.bias"
        if bias not in keys:
            bias = "cls.predictions.bias"
        m.add("encoder.mlm_head.decoder.bias", bias)
        ignore.update({"cls.predictions.bias", "cls.predictions.decoder.bias"})
        if o["tied"]:
            ignore.add("cls.predictions.decoder.weight")
        else:
            m.add("encoder.mlm_head.decoder.weight", "cls.predictions.decoder.weight")
    return m
