"""Issue 11, item 2: `import-hf` writes specs from checked values only.

Every config.json value is type- and range-checked (one line naming the key
otherwise); the spec is built as an AST and written by the formatter, so no
config value — and not the folder's name — can add a statement, an import, a
train section or a second model; shard paths stay inside the folder; integer
and boolean weights are refused.  The folders are made here, by hand, with
HF's tensor names (no transformers needed)."""

from __future__ import annotations

import json
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strata.dsl import ast as A
from strata.dsl import load_text
from strata.dsl.formatter import format_spec
from strata.interop import HFImportError, hf_to_spec
from tests.hostile.harness import check_all, ok, run_batch, usage_error
from tests.optional import require

GPT2 = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 1, "n_embd": 8,
        "n_head": 2, "vocab_size": 10, "n_positions": 4}
LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 10,
         "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": 12}
BERT = {"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 10, "hidden_size": 8,
        "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": 12,
        "max_position_embeddings": 4, "type_vocab_size": 2}
# One small valid config per model_type every family imports: the property test
# below runs over all of them (a new family adds its own here).
BASES = {"gpt2": GPT2, "llama": LLAMA, "mistral": {**LLAMA, "model_type": "mistral"}, "bert": BERT,
         "gpt_neox": {**LLAMA, "model_type": "gpt_neox", "architectures": ["GPTNeoXForCausalLM"],
                      "rotary_pct": 0.5},
         "qwen2": {**LLAMA, "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]},
         "opt": {**LLAMA, "model_type": "opt", "architectures": ["OPTForCausalLM"], "ffn_dim": 12,
                 "max_position_embeddings": 8},
         "mixtral": {**LLAMA, "model_type": "mixtral", "architectures": ["MixtralForCausalLM"],
                     "num_local_experts": 2, "num_experts_per_tok": 1},
         "phi": {**LLAMA, "model_type": "phi", "architectures": ["PhiForCausalLM"]},
         "falcon": {**LLAMA, "model_type": "falcon", "architectures": ["FalconForCausalLM"]},
         "gemma2": {**LLAMA, "model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"], "head_dim": 4},
         "t5": {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "vocab_size": 10,
                "d_model": 8, "d_kv": 4, "d_ff": 12, "num_layers": 1, "num_heads": 2}}


def gpt2_tensors(cfg: dict, dtype=None) -> dict:
    """A GPT2LMHeadModel checkpoint's tensors (HF names, Conv1D [in, out] layout)."""
    torch = require("torch")
    d, v, n = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    t = {"transformer.wte.weight": (v, d), "transformer.wpe.weight": (n, d),
         "transformer.ln_f.weight": (d,), "transformer.ln_f.bias": (d,)}
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        t.update({p + "ln_1.weight": (d,), p + "ln_1.bias": (d,), p + "ln_2.weight": (d,),
                  p + "ln_2.bias": (d,), p + "attn.c_attn.weight": (d, 3 * d),
                  p + "attn.c_attn.bias": (3 * d,), p + "attn.c_proj.weight": (d, d),
                  p + "attn.c_proj.bias": (d,), p + "mlp.c_fc.weight": (d, 4 * d),
                  p + "mlp.c_fc.bias": (4 * d,), p + "mlp.c_proj.weight": (4 * d, d),
                  p + "mlp.c_proj.bias": (d,)})
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=g).to(dtype or torch.float32) for k, s in t.items()}


def save(tensors: dict) -> bytes:
    from safetensors.torch import save

    return save(tensors)


def folder(cfg=GPT2, tensors=None, name="hf") -> dict:
    """Files of a Hugging Face folder for Case(files=...)."""
    return {f"{name}/config.json": json.dumps(cfg),
            f"{name}/model.safetensors": save(tensors if tensors is not None else gpt2_tensors(cfg))}


# ------------------------------------------------------------ checked values

@pytest.mark.parametrize("base, key, value, message", [
    (GPT2, "n_layer", "2", "'n_layer' should be a positive integer, got '2'"),
    (GPT2, "n_layer", 2.0, "'n_layer' should be a positive integer, got 2.0"),
    (GPT2, "n_layer", True, "'n_layer' should be a positive integer, got True"),
    (GPT2, "n_layer", 10 ** 9, "'n_layer' should be a positive integer (at most 10,000)"),
    (GPT2, "n_embd", 2 ** 40, "'n_embd' should be a positive integer (at most 2,147,483,647)"),
    (GPT2, "vocab_size", -1, "'vocab_size' should be a positive integer, got -1"),
    (GPT2, "layer_norm_epsilon", math.nan, "'layer_norm_epsilon' should be a finite number in (0, 1]"),
    (GPT2, "layer_norm_epsilon", math.inf, "'layer_norm_epsilon' should be a finite number"),
    (GPT2, "layer_norm_epsilon", "1e-5\nimport \"/etc/passwd\"", "'layer_norm_epsilon' should be"),
    (GPT2, "resid_pdrop", 1.5, "'resid_pdrop' should be a finite number in [0, 1), got 1.5"),
    (GPT2, "attn_pdrop", [0.1], "'attn_pdrop' should be a finite number in [0, 1), got [0.1]"),
    (GPT2, "tie_word_embeddings", "yes", "'tie_word_embeddings' should be true or false, got 'yes'"),
    (GPT2, "scale_attn_weights", 1, "'scale_attn_weights' should be true or false, got 1"),
    (GPT2, "activation_function", "gelu)\n  }\n}\ntrain { data = \"/etc/passwd\" }",
     "unsupported option activation_function='gelu)\\n  }\\n}\\ntrain {"),
    (GPT2, "activation_function", ["gelu"], "unsupported option activation_function=['gelu']"),
    (GPT2, "architectures", "GPT2LMHeadModel", "'architectures' should be a list of class names"),
    (GPT2, "architectures", [{"x": 1}], "'architectures' should be a list of class names"),
    (GPT2, "architectures", ["GPT2LMHeadModel\nmodel evil {}"], "unsupported architecture"),
    (GPT2, "model_type", ["gpt2"], "'model_type' should be a string, got ['gpt2']"),
    (GPT2, "model_type", "gpt2\nmodel evil {}", "unsupported model_type 'gpt2\\nmodel evil {}'"),
    (LLAMA, "rope_theta", -5, "'rope_theta' should be a finite number in (0, inf), got -5"),
    (LLAMA, "rope_parameters", "default", "'rope_parameters' should be a JSON object"),
    (LLAMA, "rope_parameters", {"rope_type": "default", "rope_theta": "1e4"},
     "'rope_parameters.rope_theta' should be a finite number"),
    (LLAMA, "partial_rotary_factor", 0, "'partial_rotary_factor' should be a finite number in (0, 1]"),
    (LLAMA, "num_key_value_heads", 0, "'num_key_value_heads' should be a positive integer, got 0"),
    (LLAMA, "hidden_act", "silu; passes { fuse_qkv }", "unsupported option hidden_act="),
    (LLAMA, "attention_bias", "false", "'attention_bias' should be true or false"),
    (BERT, "id2label", ["a", "b"], "'id2label' should be an object, got list"),
    (BERT, "num_labels", 2.5, "'num_labels' should be a positive integer"),
    (BERT, "position_embedding_type", {"a": 1}, "unsupported option position_embedding_type"),
])
def test_each_config_value_is_checked(base, key, value, message):
    with pytest.raises(HFImportError) as e:
        hf_to_spec({**base, key: value})
    text = str(e.value)
    assert message in text and "\n" not in text, text


def test_config_that_is_not_an_object():
    for raw in ([1, 2], "gpt2", None, 3):
        with pytest.raises(HFImportError, match="should be a JSON object"):
            hf_to_spec(raw)


# Values a hostile config.json might hold, for every key any family reads.
_KEYS = sorted({k for c in BASES.values() for k in c} | {
    "activation_function", "hidden_act", "layer_norm_epsilon", "layer_norm_eps", "rms_norm_eps",
    "n_inner", "resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout", "hidden_dropout_prob",
    "attention_probs_dropout_prob", "classifier_dropout", "tie_word_embeddings",
    "scale_attn_weights", "num_key_value_heads", "head_dim", "sliding_window", "rope_theta",
    "rope_scaling", "rope_parameters", "partial_rotary_factor", "attention_bias", "mlp_bias",
    "max_position_embeddings", "id2label", "num_labels", "transformers_version", "model_type",
    # the families of issue 9
    "rotary_pct", "rotary_emb_base", "use_parallel_residual", "hidden_dropout", "use_sliding_window",
    "max_window_layers", "layer_types", "word_embed_proj_dim", "do_layer_norm_before",
    "_remove_final_layer_norm", "enable_bias", "ffn_dim", "dropout", "layer_norm_elementwise_affine",
    "num_local_experts", "num_experts_per_tok", "router_jitter_noise", "qk_layernorm", "alibi",
    "new_decoder_architecture", "multi_query", "parallel_attn", "num_kv_heads", "num_ln_in_parallel_attn",
    "bias", "ffn_hidden_size", "hidden_activation", "query_pre_attn_scalar", "attn_logit_softcapping",
    "final_logit_softcapping", "use_bidirectional_attention", "d_model", "d_kv", "d_ff", "num_layers",
    "num_decoder_layers", "num_heads", "relative_attention_num_buckets", "relative_attention_max_distance",
    "dropout_rate", "feed_forward_proj", "scale_decoder_outputs"})
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2, 2 ** 70), st.floats(),
              st.text(max_size=30), st.sampled_from(["gelu", "silu", "default", "absolute", "\n",
                                                    '"; import "/etc/passwd"', "}\nmodel x {"])),
    lambda kids: st.one_of(st.lists(kids, max_size=3),
                           st.dictionaries(st.sampled_from(["rope_type", "rope_theta", "type", "0"]),
                                           kids, max_size=3)),
    max_leaves=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(list(BASES.values())),
       changes=st.dictionaries(st.sampled_from(_KEYS), _json, min_size=1, max_size=4),
       source=st.text(max_size=20))
def test_no_config_value_or_folder_name_becomes_spec_text(base, changes, source):
    """Whatever config.json holds: a one-line HFImportError, or a spec that is one
    model — no imports, passes or train — in canonical form, its only comment the
    header, the folder name inside one quoted string."""
    try:
        text = hf_to_spec({**base, **changes}, source=source)
    except HFImportError as e:
        assert "\n" not in str(e)
        return
    spec = load_text(text, "model.arch")
    assert len(spec.models) == 1 and not spec.imports and not spec.blocks
    assert spec.passes is None and spec.train is None
    assert format_spec(spec) == text
    model = spec.models[0]
    assert model.name in BASES
    header = model.comment.split("\n")
    assert header[0] == "Imported from Hugging Face by `strata import-hf`."
    if source:
        assert load_text(f"model m {{ x = {header[1].removeprefix('Source: ')} }}",
                         "h.arch").models[0].vars[0].value.value == source
    assert list(_comments(spec)) == [model.comment]


def test_every_family_is_in_the_property_test():
    from strata.interop.hf import FAMILIES

    assert {t for fam in FAMILIES for t in fam.MODEL_TYPES} == set(BASES)
    for model_type, cfg in BASES.items():
        assert load_text(hf_to_spec(cfg), "m.arch").models[0].name == model_type


def test_hostile_text_the_import_accepts_stays_out_of_the_spec():
    """Free text a config may carry (a version, label names, unknown keys) and the
    folder name: accepted, and none of it becomes a statement."""
    evil = '"\n}\nmodel evil { stack s(t) { embedding(2, 2) } }\ntrain { data = "/etc/passwd" }\n'
    cfg = {**BERT, "architectures": ["BertForSequenceClassification"],
           "transformers_version": "4.0" + evil, "id2label": {"0": evil, "1": "b"},
           "label2id": {evil: 0}, "custom" + evil: evil, "_name_or_path": evil}
    text = hf_to_spec(cfg, source="/models/" + evil)
    spec = load_text(text, "model.arch")
    assert [m.name for m in spec.models] == ["bert"] and spec.train is None
    assert "transformers" not in text  # a version that is not a version is left out
    assert text.count("\n# ") == 2 and 'Source: "/models/\\"\\n}\\nmodel evil' in text


def _comments(spec):
    todo = [spec]
    while todo:
        node = todo.pop()
        if getattr(node, "comment", None) is not None:
            yield node.comment
        for name in type(node).model_fields:
            v = getattr(node, name)
            todo += [x for x in (v if isinstance(v, list) else [v]) if isinstance(x, A.Node)]


# ------------------------------------------------------------ whole folders

def test_folder_name_goes_into_a_comment_escaped(tmp_path):
    require("safetensors")
    name = 'hf"\nmodel evil { stack s(t) { embedding(2, 2) } }\n\u202e'
    cases = [ok("hostile_folder_name", ["import-hf", name, "-o", "out"], files=folder(name=name),
                outputs=("out/model.arch", "out/weights.safetensors"))]
    run_batch(cases, tmp_path, memory_mb=4096)
    check_all(cases)
    arch = (cases[0].folder / "out" / "model.arch").read_text()
    spec = load_text(arch, "model.arch")
    assert [m.name for m in spec.models] == ["gpt2"]
    assert '# Source: "' in arch and '\\"\\nmodel evil' in arch and "\\u202e" in arch
    assert "\n model evil" not in arch and "\nmodel evil" not in arch


@pytest.mark.slow  # writes and imports a dozen checkpoints: ~4 s
def test_folders_that_are_refused(tmp_path):
    require("safetensors")
    torch = require("torch")
    good = gpt2_tensors(GPT2)
    index = "hf/model.safetensors.index.json"

    def shards(weight_map, files=None) -> dict:
        return {"hf/config.json": json.dumps(GPT2), index: json.dumps({"weight_map": weight_map}),
                **(files or {})}

    every = {k: "model-1.safetensors" for k in good}
    ints = dict(good, **{"transformer.h.0.attn.c_attn.weight": torch.ones(8, 24, dtype=torch.int64)})
    bools = dict(good, **{"transformer.wte.weight": torch.ones(10, 8, dtype=torch.bool)})
    cases = [
        usage_error("index_not_object", ["import-hf", "hf", "-o", "out"],
                    "'weight_map' should be an object", files={"hf/config.json": json.dumps(GPT2),
                                                               index: "[1, 2]"}),
        usage_error("index_not_json", ["import-hf", "hf", "-o", "out"],
                    "model.safetensors.index.json: not valid JSON",
                    files={"hf/config.json": json.dumps(GPT2), index: "{nope"}),
        usage_error("shard_not_string", ["import-hf", "hf", "-o", "out"],
                    "'weight_map.transformer.wte.weight' should be a shard file name, got int",
                    files=shards({**every, "transformer.wte.weight": 3})),
        usage_error("shard_parent_dir", ["import-hf", "hf", "-o", "out"],
                    "= '../outside.safetensors' is outside the model folder",
                    files=shards({**every, "transformer.wte.weight": "../outside.safetensors"},
                                 {"outside.safetensors": save(good)})),
        usage_error("shard_absolute", ["import-hf", "hf", "-o", "out"],
                    "= '/etc/passwd' is outside the model folder",
                    files=shards({**every, "transformer.wte.weight": "/etc/passwd"})),
        usage_error("shard_fifo", ["import-hf", "hf", "-o", "out"],
                    "model-1.safetensors: not a regular file (a FIFO)",
                    files=shards(every), setup=lambda f: os.mkfifo(f / "hf" / "model-1.safetensors")),
        usage_error("shard_lacks_tensor", ["import-hf", "hf", "-o", "out"],
                    "lacks 1 tensor(s) model.safetensors.index.json puts there: transformer.wpe.weight",
                    files=shards(every, {"hf/model-1.safetensors": save(
                        {k: v for k, v in good.items() if k != "transformer.wpe.weight"})})),
        usage_error("integer_weights", ["import-hf", "hf", "-o", "out"],
                    "1 checkpoint tensor(s) that should be floating-point weights hold int64 data: "
                    "transformer.h.0.attn.c_attn.weight (int64)", files=folder(tensors=ints)),
        usage_error("boolean_weights", ["import-hf", "hf", "-o", "out"],
                    "hold bool data: transformer.wte.weight (bool)", files=folder(tensors=bools)),
        usage_error("truncated_weights", ["import-hf", "hf", "-o", "out"],
                    "truncated: the tensors need", files={
                        **folder(), "hf/model.safetensors": save(good)[:-100]}),
        usage_error("output_is_an_input", ["import-hf", "hf", "-o", "out"],
                    "out/weights.safetensors: is hf/model.safetensors, which the import reads",
                    files=folder(), setup=lambda f: ((f / "out").mkdir(), os.symlink(
                        f / "hf" / "model.safetensors", f / "out" / "weights.safetensors"))),
        ok("sharded_inside_folder", ["import-hf", "hf", "-o", "out"],
           files=shards({k: "sub/model-1.safetensors" for k in good},
                        {"hf/sub/model-1.safetensors": save(good)}),
           outputs=("out/model.arch", "out/weights.safetensors")),
    ]
    run_batch(cases, tmp_path, memory_mb=4096)
    check_all(cases)
