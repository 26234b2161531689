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


def _config(cls: str, **kw):
    return getattr(_transformers(), cls)(**kw)


_DECODER = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=96,
                vocab_size=100)


def _t5(**kw):
    base = dict(vocab_size=100, d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4,
                relative_attention_num_buckets=8, relative_attention_max_distance=12,
                decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return _config("T5Config", **{**base, **kw})


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
    # issue 9: the families import-hf added
    "gpt_neox": ("GPTNeoXForCausalLM", lambda: _config("GPTNeoXConfig", **_DECODER, rotary_pct=0.25)),
    "gpt_neox_sequential": ("GPTNeoXForCausalLM", lambda: _config(
        "GPTNeoXConfig", **_DECODER, use_parallel_residual=False, attention_bias=False, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 5000.0, "partial_rotary_factor": 0.5})),
    "qwen2": ("Qwen2ForCausalLM", lambda: _config("Qwen2Config", **_DECODER, num_key_value_heads=2,
                                                  tie_word_embeddings=True)),
    "qwen2_window": ("Qwen2ForCausalLM", lambda: _config(
        "Qwen2Config", **{**_DECODER, "num_hidden_layers": 3}, num_key_value_heads=1, use_sliding_window=True,
        sliding_window=4, max_window_layers=1)),
    "opt": ("OPTForCausalLM", lambda: _config("OPTConfig", **_opt())),
    "opt_post_norm_projected": ("OPTForCausalLM", lambda: _config(
        "OPTConfig", **{**_opt(), "word_embed_proj_dim": 32}, do_layer_norm_before=False, enable_bias=False)),
    "mixtral": ("MixtralForCausalLM", lambda: _config("MixtralConfig", **_DECODER, num_key_value_heads=2,
                                                      num_local_experts=4, num_experts_per_tok=2)),
    "phi": ("PhiForCausalLM", lambda: _config("PhiConfig", **_DECODER, resid_pdrop=0.1)),
    "phi_gqa": ("PhiForCausalLM", lambda: _config("PhiConfig", **_DECODER, num_key_value_heads=2,
                                                  partial_rotary_factor=0.25, hidden_act="gelu")),
    "falcon": ("FalconForCausalLM", lambda: _config("FalconConfig", **_falcon())),
    "falcon_new_architecture": ("FalconForCausalLM", lambda: _config(
        "FalconConfig", **_falcon(), new_decoder_architecture=True, num_kv_heads=2, bias=True,
        tie_word_embeddings=False)),
    "falcon_sequential": ("FalconForCausalLM", lambda: _config(
        "FalconConfig", **_falcon(), parallel_attn=False, multi_query=False)),
    "gemma2": ("Gemma2ForCausalLM", lambda: _config(
        "Gemma2Config", **{**_DECODER, "num_hidden_layers": 3}, num_key_value_heads=2, head_dim=16,
        sliding_window=4, query_pre_attn_scalar=24, attn_logit_softcapping=5.0, final_logit_softcapping=3.0)),
    "t5": ("T5ForConditionalGeneration", lambda: _t5()),
    "t5_v1_1": ("T5ForConditionalGeneration", lambda: _t5(feed_forward_proj="gated-gelu",
                                                          tie_word_embeddings=False)),
    "t5_deeper_decoder": ("T5ForConditionalGeneration", lambda: _t5(num_decoder_layers=3)),
}


def _opt():
    return dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, ffn_dim=96, vocab_size=100,
                max_position_embeddings=32, word_embed_proj_dim=64)


def _falcon():
    return dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, vocab_size=100)


def make_model(name: str):
    torch = require("torch")
    cls_name, config = MODELS[name]
    torch.manual_seed(0)
    cfg = config()
    cfg._attn_implementation = "eager"  # the reference: plain softmax attention
    model = getattr(_transformers(), cls_name)(cfg)
    # Random init leaves LayerNorm at (1, 0) and biases at 0: perturb everything so
    # that a swapped or dropped tensor shows in the logits.  Where a tied embedding
    # outweighs the layers, greedy decoding repeats one token: those models' layers get
    # more noise (T5's embedding, std 1, is shrunk instead), so generation tests see
    # varied tokens.
    layers = NOISE.get(name, 0.05)
    with torch.no_grad():
        for n, p in model.named_parameters():
            fixed = any(w in n for w in ("shared", "embed", "wte", "wpe", "norm", "ln_", "layernorm"))
            p.add_(torch.randn_like(p) * (0.05 if fixed else layers))
        if cls_name.startswith("T5"):
            model.get_input_embeddings().weight.mul_(0.1)
    return model.eval()


NOISE = {"gpt2": 0.3, "llama_tied_bias": 0.3, "opt": 0.3, "falcon": 0.3}
