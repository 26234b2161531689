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

from strata.interop.hf.config import ACTIVATIONS
from strata.interop.hf.config import (
    MAX_LAYERS,
    Config,
    HFImportError,
    activation,
    check_architecture,
)
from strata.interop.hf.spec_ast import (
    block,
    branch,
    model,
    ref,
    repeat,
    residual,
    stack,
    use,
)
from strata.interop.hf.checkpoint_reader import Mapping

MODEL_TYPES = ("bert",)
# architecture -> (pooler, mlm, nsp, classifier) it has when the tensors cannot tell
ARCHITECTURES = {
    "BertModel": (True, False, False, False),
    "BertForMaskedLM": (False, True, False, False),
    "BertForPreTraining": (True, True, True, False),
    "BertForNextSentencePrediction": (True, False, True, False),
    "BertForSequenceClassification": (True, False, False, True),
}
PREFIX = "bert."
MAX_LABELS = 1_000_000

# Export (family_export.py) runs this module backwards: spec variable -> config key, and
# the candidates of the keys that shape the spec; the importer picks.
EXPORT_PREFIX = ("bert.", "")
EXPORT_KEYS = {"vocab": "vocab_size", "ctx": "max_position_embeddings", "types": "type_vocab_size",
               "d": "hidden_size", "heads": "num_attention_heads", "depth": "num_hidden_layers",
               "hidden": "intermediate_size", "eps": "layer_norm_eps", "p": "hidden_dropout_prob",
               "p_attn": "attention_probs_dropout_prob", "p_cls": "classifier_dropout"}
# the head and its tie together: one at a time, an untied masked-LM head is as
# far from BertModel's pooler as from a tied head, and the search stays put
EXPORT_CHOICES = {"hidden_act": list(ACTIVATIONS),
                  ("architectures", "tie_word_embeddings"): [([a], t) for a in ARCHITECTURES
                                                             for t in (True, False)],
                  # the classifier's classes (2 is the default, left out)
                  "num_labels": lambda v, f: [None, *(n for n in f.get("classes", ()) if n != 2)]}


def export_copies(config: dict) -> dict[str, str]:
    """An untied masked-LM checkpoint holds `cls.predictions.decoder.bias` (what the
    forward adds) and `cls.predictions.bias` (saved, unused); the export mapping
    writes the bias as the latter (a tied head's one name), so the former gets it too."""
    if config.get("tie_word_embeddings") is False:
        return {"cls.predictions.decoder.bias": "cls.predictions.bias"}
    return {}


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


def _labels(cfg: Config) -> int:
    """How many classes: id2label's size (an object), else num_labels (default 2)."""
    labels = cfg.raw.get("id2label")
    if labels is not None and not isinstance(labels, dict):
        raise HFImportError(f"config.json: 'id2label' should be an object, got {type(labels).__name__}")
    if labels:
        if len(labels) > MAX_LABELS:
            raise HFImportError(f"config.json: 'id2label' has {len(labels):,} labels "
                                f"(at most {MAX_LABELS:,})")
        return len(labels)
    return cfg.int("num_labels", default=2, high=MAX_LABELS)


def _options(cfg: Config) -> dict:
    cfg.refuse_if("position_embedding_type", lambda v: v != "absolute",
                  "strata's BERT uses absolute (learned) positions")
    cfg.refuse_if("is_decoder", bool, "strata imports BERT as an encoder")
    cfg.refuse_if("add_cross_attention", bool, "strata imports BERT as an encoder")
    d = cfg.int("hidden_size")
    heads = cfg.int("num_attention_heads")
    if d % heads:
        raise HFImportError(f"config.json: num_attention_heads ({heads}) does not divide "
                            f"hidden_size ({d})")
    p = cfg.probability("hidden_dropout_prob", 0.1)
    return {
        "vocab": cfg.int("vocab_size"), "ctx": cfg.int("max_position_embeddings"), "d": d,
        "heads": heads, "depth": cfg.int("num_hidden_layers", high=MAX_LAYERS),
        "hidden": cfg.int("intermediate_size"), "types": cfg.int("type_vocab_size"),
        "eps": cfg.float("layer_norm_eps", default=1e-12, low_open=True, high=1.0),
        "act": activation(cfg, "hidden_act", "gelu"),
        "p": p,
        "p_attn": cfg.probability("attention_probs_dropout_prob", 0.1),
        "p_cls": cfg.probability("classifier_dropout", p),
        "labels": _labels(cfg),
        "tied": cfg.bool("tie_word_embeddings", True),
    }


def spec(cfg: Config, lay: dict):
    o = _options(cfg)
    heads = [k for k in ("pooler", "mlm", "nsp", "classifier") if lay[k]]
    if (lay["nsp"] or lay["classifier"]) and not lay["pooler"] or lay["nsp"] and lay["classifier"]:
        raise HFImportError(f"unsupported BERT checkpoint: heads {', '.join(heads)} in an "
                            "unexpected combination")
    drop = [use("dropout", ref("p"))] if o["p"] else []
    attn = use("attention", ref("heads"), dropout=ref("p_attn")) if o["p_attn"] else \
        use("attention", ref("heads"))
    eps = {"eps": ref("eps")}
    layer = block(
        "layer",
        residual(attn, *drop),
        use("layernorm", alias="attention_norm", **eps),
        residual(use("mlp", ref("hidden"), act=ref(o["act"])), *drop),
        use("layernorm", alias="output_norm", **eps))
    body = [use("embedding", ref("vocab"), ref("d"), alias="word_embeddings"),
            use("position", ref("learned"), ref("ctx"), alias="position_embeddings"),
            use("token_types", ref("types"), alias="token_type_embeddings"),
            use("layernorm", alias="embeddings_norm", **eps), *drop,
            repeat(ref("depth"), "layer", "layer")]
    if lay["nsp"]:
        body.append(branch(use("pooler"), use("nsp_head", 2), alias="nsp"))
    elif lay["classifier"]:
        cls_drop = [use("dropout", ref("p_cls"))] if o["p_cls"] else []
        body.append(branch(use("pooler"), *cls_drop, use("classifier", o["labels"]), alias="logits"))
    elif lay["pooler"]:
        body.append(branch(use("pooler"), alias="pooled"))
    if lay["mlm"]:
        target = {"tie": ref("word_embeddings")} if o["tied"] else {}
        vocab = [] if o["tied"] else [ref("vocab")]
        body.append(use("mlm_head", *vocab, **target, act=ref(o["act"]), eps=ref("eps")))
    variables = [(k, o[k]) for k in ("vocab", "ctx", "types", "d", "heads", "depth", "hidden",
                                     "eps", "p", "p_attn")]
    if lay["classifier"]:
        variables.append(("p_cls", o["p_cls"]))
    return model("bert", variables, [layer], [stack("encoder", ["tokens"], *body)])


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
