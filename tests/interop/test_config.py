"""hf_to_spec: config.json options -> spec text, and the options it refuses.
Needs neither torch nor transformers."""

from __future__ import annotations

import pytest

from strata.compiler import build_text
from strata.interop import HFImportError, hf_to_spec

LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 100,
         "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
         "num_hidden_layers": 2, "intermediate_size": 96, "rms_norm_eps": 1e-5,
         "max_position_embeddings": 128}
GPT2 = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2, "n_embd": 64,
        "n_head": 4, "vocab_size": 100, "n_positions": 32}
BERT = {"model_type": "bert", "architectures": ["BertForMaskedLM"], "vocab_size": 100,
        "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
        "intermediate_size": 96, "max_position_embeddings": 32, "type_vocab_size": 2}


def build(config):
    text = hf_to_spec(config)
    return text, build_text(text)


def test_llama_rope_forms_agree():
    old, _ = build({**LLAMA, "rope_theta": 500000.0, "rope_scaling": None})
    new, _ = build({**LLAMA, "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}})
    assert old == new and "position(rotary, base=500000)" in new


def test_llama_old_rope_scaling_default_is_accepted():
    text, _ = build({**LLAMA, "rope_theta": 1e6, "rope_scaling": {"rope_type": "default"}})
    assert "base=1000000" in text


@pytest.mark.parametrize("where", ["top", "rope_parameters"])
def test_partial_rotary(where):
    cfg = dict(LLAMA)
    if where == "top":
        cfg["partial_rotary_factor"] = 0.5
    else:
        cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0,
                                  "partial_rotary_factor": 0.5}
    text, g = build(cfg)
    assert "position(rotary, base=10000, fraction=0.5)" in text
    assert g.nodes["decoder.layers.0.attn.core"]["attrs"]["rope"]["dims"] == 8


def test_llama_gqa_head_dim_bias_tie():
    text, g = build({**LLAMA, "num_key_value_heads": 2, "head_dim": 32, "attention_bias": True,
                     "mlp_bias": True, "tie_word_embeddings": True})
    assert "attention(heads, kv_heads=kv_heads, head_dim=head_dim, causal=true, bias=true)" in text
    assert "mlp(hidden, act=swiglu, bias=true)" in text
    assert g.nodes["decoder.layers.0.attn.k"]["params"]["weight"] == (64, 64)
    assert g.nodes["decoder.layers.0.attn.o"]["params"]["bias"] == (64,)
    assert g.nodes["decoder.lm_head"]["tied"] == {"weight": "decoder.embed.weight"}


def test_llama_gelu_is_geglu():
    assert "act=geglu" in hf_to_spec({**LLAMA, "hidden_act": "gelu"})


def test_mistral_window_and_no_window():
    cfg = {**LLAMA, "model_type": "mistral", "architectures": ["MistralForCausalLM"],
           "num_key_value_heads": 2, "sliding_window": 4096}
    text, g = build(cfg)
    assert "window   = 4096" in text and g.nodes["decoder.layers.1.attn.core"]["attrs"]["window"] == 4096
    text, g = build({**cfg, "sliding_window": None})
    assert "window" not in text


def test_llama_ignores_sliding_window():
    assert "window" not in hf_to_spec({**LLAMA, "sliding_window": 16})


def test_gpt2_options():
    text, g = build({**GPT2, "activation_function": "gelu", "n_inner": 100,
                     "layer_norm_epsilon": 1e-6, "scale_attn_weights": False,
                     "embd_pdrop": 0.0, "tie_word_embeddings": False})
    assert "act=gelu)" in text and "hidden  = 100" in text and "eps     = 1e-06" in text
    assert "scale=1" in text and "dropout(p_embd)" not in text and "lm_head(vocab)" in text
    assert g.nodes["decoder.h.0.attn.core"]["attrs"]["scale"] == 1


def test_gpt2_real_size_parameter_count():
    _, g = build({**GPT2, "n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257,
                  "n_positions": 1024})
    assert g.graph["parameters"] == 124_439_808  # GPT-2 small


def test_bert_base_parameter_count():
    _, g = build({**BERT, "architectures": ["BertModel"], "vocab_size": 30522, "hidden_size": 768,
                  "num_attention_heads": 12, "num_hidden_layers": 12, "intermediate_size": 3072,
                  "max_position_embeddings": 512})
    assert g.graph["parameters"] == 109_482_240  # bert-base-uncased, BertModel


def test_llama2_7b_parameter_count():
    _, g = build({**LLAMA, "vocab_size": 32000, "hidden_size": 4096, "num_attention_heads": 32,
                  "num_key_value_heads": 32, "num_hidden_layers": 32, "intermediate_size": 11008})
    assert g.graph["parameters"] == 6_738_415_616


def test_mistral_7b_parameter_count():
    _, g = build({**LLAMA, "model_type": "mistral", "architectures": ["MistralForCausalLM"],
                  "vocab_size": 32000, "hidden_size": 4096, "num_attention_heads": 32,
                  "num_key_value_heads": 8, "num_hidden_layers": 32, "intermediate_size": 14336,
                  "sliding_window": 4096})
    assert g.graph["parameters"] == 7_241_732_096


def test_bert_heads_from_architecture():
    text, g = build({**BERT, "architectures": ["BertForPreTraining"]})
    assert set(g.graph["outputs"]) == {"output", "nsp"}
    text, g = build({**BERT, "architectures": ["BertForSequenceClassification"],
                     "id2label": {"0": "a", "1": "b", "2": "c"}})
    assert g.nodes["encoder.classifier"]["params"]["weight"] == (3, 64)


@pytest.mark.parametrize("config, message", [
    ({**LLAMA, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling type 'linear'"),
    ({**LLAMA, "rope_scaling": {"type": "dynamic", "factor": 2.0}}, "rope_scaling type 'dynamic'"),
    ({**LLAMA, "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}},
     "rope_parameters.rope_type='llama3'"),
    ({**LLAMA, "hidden_act": "quick_gelu"}, "hidden_act='quick_gelu'"),
    ({**LLAMA, "num_key_value_heads": 3}, "num_key_value_heads (3) does not divide"),
    ({**LLAMA, "architectures": ["LlamaForSequenceClassification"]}, "unsupported architecture"),
    ({**GPT2, "scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
    ({**GPT2, "activation_function": "quick_gelu"}, "activation_function='quick_gelu'"),
    ({**GPT2, "n_head": 5}, "n_head (5) does not divide n_embd (64)"),
    ({**BERT, "position_embedding_type": "relative_key"}, "position_embedding_type"),
    ({**BERT, "is_decoder": True}, "is_decoder=True"),
    ({**GPT2, "vocab_size": None}, "has no 'vocab_size'"),
    ({**GPT2, "n_layer": "2"}, "'n_layer' should be a positive integer"),
    ({"model_type": "mamba"}, "unsupported model_type 'mamba': strata imports bert, falcon, gemma2, gpt2, "
     "gpt_neox, llama, mistral, mixtral, opt, phi, qwen2, t5"),
    ({"n_layer": 2}, "no 'model_type'"),
])
def test_refused(config, message):
    with pytest.raises(HFImportError) as e:
        hf_to_spec(config)
    assert message in str(e.value) and "\n" not in str(e.value)
