"""Tiny random Hugging Face models for the interop tests, built with
`transformers` (a test dependency only; strata never imports it)."""

from __future__ import annotations

from tests.optional import require


def _transformers():
    return require("transformers")


def _gpt2(**kw):
    return _transformers().GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100,
                                      n_positions=32, bos_token_id=0, eos_token_id=0, **kw)


def _llama(**kw):
    base = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=96,
                vocab_size=100, max_position_embeddings=64)
    base.update(kw)
    return _transformers().LlamaConfig(**base)


def _mistral(**kw):
    base = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=96, vocab_size=100, max_position_embeddings=64, sliding_window=4)
    base.update(kw)
    return _transformers().MistralConfig(**base)


def _bert(**kw):
    base = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=96,
                vocab_size=100, max_position_embeddings=32, type_vocab_size=2)
    base.update(kw)
    return _transformers().BertConfig(**base)


# name -> (model class name, config factory)
MODELS = {
    "gpt2": ("GPT2LMHeadModel", lambda: _gpt2()),
    "gpt2_base_relu": ("GPT2Model", lambda: _gpt2(activation_function="relu", n_inner=80)),
    "gpt2_untied_unscaled": ("GPT2LMHeadModel", lambda: _gpt2(
        tie_word_embeddings=False, scale_attn_weights=False, layer_norm_epsilon=1e-6)),
    "llama_gqa": ("LlamaForCausalLM", lambda: _llama(
        num_key_value_heads=2, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0})),
    "llama_tied_bias": ("LlamaForCausalLM", lambda: _llama(
        num_key_value_heads=1, head_dim=24, tie_word_embeddings=True, attention_bias=True,
        mlp_bias=True, rms_norm_eps=1e-5)),
    "mistral": ("MistralForCausalLM", lambda: _mistral()),
    "bert_pretraining": ("BertForPreTraining", lambda: _bert()),
    "bert_base": ("BertModel", lambda: _bert(hidden_act="gelu_new", layer_norm_eps=1e-6)),
    "bert_mlm_untied": ("BertForMaskedLM", lambda: _bert(tie_word_embeddings=False, type_vocab_size=3)),
}


def make_model(name: str):
    torch = require("torch")
    cls_name, config = MODELS[name]
    torch.manual_seed(0)
    cfg = config()
    cfg._attn_implementation = "eager"  # the reference: plain softmax attention
    model = getattr(_transformers(), cls_name)(cfg)
    # Random init leaves LayerNorm at (1, 0) and biases at 0: perturb everything so
    # that a swapped or dropped tensor shows in the logits.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()
