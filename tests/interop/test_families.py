"""The families of issue 9 (GPT-NeoX, Qwen2, OPT, Mixtral, Phi, Falcon, Gemma 2,
T5): their published sizes from config.json alone, their weight layouts (fused and
interleaved projections, stacked experts, OPT's offset table, T5's shared
embedding and own head), and the config keys that refuse an import."""

from __future__ import annotations

import json

import pytest

from tests.optional import require

from strata.compiler import build_text
from strata.interop import HFImportError, hf_to_spec, import_hf

torch = require("torch")
st = require("safetensors.torch")
transformers = require("transformers")

import strata.api as api

# The published configurations (the HF config classes fill in the rest).
PUBLISHED = {
    "pythia-160m": ("GPTNeoXConfig", dict(vocab_size=50304, hidden_size=768, num_hidden_layers=12,
                                          num_attention_heads=12, intermediate_size=3072, rotary_pct=0.25,
                                          tie_word_embeddings=False), 162_322_944),
    "qwen2-0.5b": ("Qwen2Config", dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                                       num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                                       tie_word_embeddings=True), 494_032_768),
    "qwen2-7b": ("Qwen2Config", dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                                     num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                                     tie_word_embeddings=False), 7_615_616_512),
    "opt-125m": ("OPTConfig", dict(vocab_size=50272, hidden_size=768, num_hidden_layers=12, ffn_dim=3072,
                                   num_attention_heads=12, max_position_embeddings=2048,
                                   word_embed_proj_dim=768), 125_239_296),
    "opt-350m": ("OPTConfig", dict(vocab_size=50272, hidden_size=1024, num_hidden_layers=24, ffn_dim=4096,
                                   num_attention_heads=16, word_embed_proj_dim=512,
                                   do_layer_norm_before=False), 331_196_416),
    "mixtral-8x7b": ("MixtralConfig", dict(max_position_embeddings=32768), 46_702_792_704),
    "phi-2": ("PhiConfig", dict(vocab_size=51200, hidden_size=2560, intermediate_size=10240,
                                num_hidden_layers=32, num_attention_heads=32, partial_rotary_factor=0.4),
              2_779_683_840),
    "falcon-7b": ("FalconConfig", dict(vocab_size=65024, hidden_size=4544, num_hidden_layers=32,
                                       num_attention_heads=71), 6_921_720_704),
    "gemma-2-2b": ("Gemma2Config", {}, 2_614_341_888),
    "gemma-2-9b": ("Gemma2Config", dict(hidden_size=3584, intermediate_size=14336, num_hidden_layers=42,
                                        num_attention_heads=16, num_key_value_heads=8), 9_241_705_984),
    "t5-small": ("T5Config", {}, 60_506_624),
}
CAUSAL = {"GPTNeoXConfig": "GPTNeoXForCausalLM", "Qwen2Config": "Qwen2ForCausalLM",
          "OPTConfig": "OPTForCausalLM", "MixtralConfig": "MixtralForCausalLM", "PhiConfig": "PhiForCausalLM",
          "FalconConfig": "FalconForCausalLM", "Gemma2Config": "Gemma2ForCausalLM",
          "T5Config": "T5ForConditionalGeneration"}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_sizes_from_config_alone(name):
    """The spec import-hf writes from a published config.json has the published count,
    which is also what transformers builds (on the meta device)."""
    cls, kw, count = PUBLISHED[name]
    config = getattr(transformers, cls)(**kw, architectures=[CAUSAL[cls]])
    g = build_text(hf_to_spec(config.to_dict()))
    assert g.graph["parameters"] == count
    with torch.device("meta"):
        model = getattr(transformers, CAUSAL[cls])(config)
    assert model.num_parameters() == count


def test_shipped_specs_are_what_import_hf_writes():
    """specs/*.arch of the new families and the imports of the same configs build the
    same state_dict shapes (names aside: the shipped specs name a few modules otherwise)."""
    from strata.compiler import build_file
    from strata.compiler.ir import state_dict_shapes

    pairs = {"pythia_160m": "pythia-160m", "qwen2_0_5b": "qwen2-0.5b", "opt_125m": "opt-125m",
             "mixtral_8x7b": "mixtral-8x7b", "phi_2": "phi-2", "falcon_7b": "falcon-7b",
             "gemma2_2b": "gemma-2-2b", "t5_small": "t5-small"}
    for spec, name in pairs.items():
        cls, kw, _ = PUBLISHED[name]
        config = getattr(transformers, cls)(**kw, architectures=[CAUSAL[cls]]).to_dict()
        shipped = sorted(state_dict_shapes(build_file(f"specs/{spec}.arch")).values())
        imported = sorted(state_dict_shapes(build_text(hf_to_spec(config))).values())
        assert shipped == imported, spec


def test_gpt_neox_qkv_rows_interleave_per_head(imported):
    arch, weights, model = imported("gpt_neox")
    t = st.load_file(str(weights))
    qkv = model.gpt_neox.layers[1].attention.query_key_value.weight.detach()  # [3d, d]
    heads, hd = 4, 16
    per_head = qkv.view(heads, 3, hd, -1)
    for j, name in enumerate("qkv"):
        assert torch.equal(t[f"decoder.layers.1.attn.{name}.weight"], per_head[:, j].reshape(heads * hd, -1))
    assert "parallel {" in arch.read_text() and "fraction=0.25" in arch.read_text()


@pytest.mark.parametrize("name, kv", [("falcon", 1), ("falcon_new_architecture", 2), ("falcon_sequential", 4)])
def test_falcon_qkv_layouts(name, kv, imported):
    arch, weights, model = imported(name)
    t = st.load_file(str(weights))
    hd = 16
    assert t["decoder.layers.0.attn.k.weight"].shape == (kv * hd, 64)
    text = arch.read_text()
    assert ("kv_heads" in text) == (kv != 4)
    assert ("ln_attn" in text) == (name == "falcon_new_architecture")
    assert ("parallel" in text) == (name != "falcon_sequential")


def test_opt_position_table_has_two_extra_rows(imported):
    arch, weights, model = imported("opt")
    assert "position(learned, ctx, offset=2) as embed_positions" in arch.read_text()
    t = st.load_file(str(weights))
    assert t["decoder.embed_positions.weight"].shape == (32 + 2, 64)
    text = imported("opt_post_norm_projected")[0].read_text()
    assert "linear(d, bias=false) as project_in" in text and "linear(width, bias=false) as project_out" in text


def test_mixtral_stacked_experts_layout(hf_folder, tmp_path):
    """transformers >= 5's own modules hold experts stacked (`mlp.experts.gate_up_proj`);
    a checkpoint in that layout imports to the same weights as save_pretrained's."""
    folder, model = hf_folder("mixtral")
    stacked = tmp_path / "stacked"
    stacked.mkdir()
    (stacked / "config.json").write_text((folder / "config.json").read_text())
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert "model.layers.0.mlp.experts.gate_up_proj" in state
    st.save_file(state, str(stacked / "model.safetensors"))
    _, a = import_hf(folder, tmp_path / "a")
    _, b = import_hf(stacked, tmp_path / "b")
    ta, tb = st.load_file(str(a)), st.load_file(str(b))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    gate_up = state["model.layers.1.mlp.experts.gate_up_proj"][3]
    assert torch.equal(tb["decoder.layers.1.moe.experts.3.up.weight"], gate_up[96:])


def test_t5_shared_embedding_and_head(imported, hf_folder, tmp_path):
    arch, weights, model = imported("t5")
    text = arch.read_text()
    assert "lm_head(tie=encoder.embed, scale=d ** -0.5)" in text
    assert "position(relative, buckets=buckets, max_distance=max_distance) as rel_pos" in text
    t = st.load_file(str(weights))
    assert torch.equal(t["decoder.rel_pos.weight"],
                       model.decoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight)
    assert "lm_head(tie=encoder.embed)" in imported("t5_v1_1")[0].read_text()  # not scaled
    # a checkpoint with its own head (T5 v1.1 as published) gets an untied one
    folder, model = hf_folder("t5_v1_1")
    own = tmp_path / "own"
    own.mkdir()
    (own / "config.json").write_text((folder / "config.json").read_text())
    tensors = st.load_file(str(folder / "model.safetensors"))
    tensors["lm_head.weight"] = torch.randn(100, 64)
    st.save_file(tensors, str(own / "model.safetensors"))
    arch, weights = import_hf(own, tmp_path / "out")
    assert "lm_head(vocab)" in arch.read_text()
    assert torch.equal(st.load_file(str(weights))["decoder.lm_head.weight"], tensors["lm_head.weight"])


def test_t5_encoder_model(tmp_path):
    from tests.interop.models import _t5

    torch.manual_seed(0)
    model = transformers.T5EncoderModel(_t5()).eval()
    model.save_pretrained(tmp_path / "hf")
    arch, weights = import_hf(tmp_path / "hf", tmp_path / "out")
    assert "stack decoder" not in arch.read_text()
    ours = api.compile(arch, weights=weights).eval()
    ids = torch.randint(0, 100, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), model(ids).last_hidden_state, atol=1e-4, rtol=0)


def test_gemma2_window_and_scale(imported):
    text = imported("gemma2")[0].read_text()
    assert "window=window if i % 2 == 0 else none" in text and "repeat(depth, i) layer as layers" in text
    assert "scale=query_scalar ** -0.5" in text and "lm_head(tie=embed, softcap=final_softcap)" in text
    assert "rmsnorm(eps=eps, unit_offset=true) as post_feedforward_norm" in text


def test_qwen2_window_from_max_window_layers(imported):
    text = imported("qwen2_window")[0].read_text()
    assert "window=window if i >= 1 else none" in text and "out_bias=false" in text


BASE = {"vocab_size": 10, "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 2,
        "intermediate_size": 12}


@pytest.mark.parametrize("config, message", [
    ({**BASE, "model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2,
      "router_jitter_noise": 0.1}, "router_jitter_noise=0.1"),
    ({**BASE, "model_type": "mixtral", "num_local_experts": 2, "num_experts_per_tok": 3},
     "'num_experts_per_tok' should be a positive integer (at most 2)"),
    ({**BASE, "model_type": "phi", "qk_layernorm": True}, "qk_layernorm=True"),
    ({**BASE, "model_type": "falcon", "alibi": True}, "alibi=True"),
    ({**BASE, "model_type": "falcon", "new_decoder_architecture": True, "parallel_attn": False},
     "parallel_attn=False"),
    ({**BASE, "model_type": "gemma2", "head_dim": 4, "use_bidirectional_attention": True},
     "use_bidirectional_attention=True"),
    ({**BASE, "model_type": "qwen2", "use_sliding_window": True, "sliding_window": 4,
      "layer_types": ["sliding_attention", "full_attention"] * 4 + ["full_attention"]},
     "'layer_types' should list 'full_attention' or 'sliding_attention' for each of the 2 layers"),
    ({**BASE, "model_type": "qwen2", "num_hidden_layers": 20, "use_sliding_window": True, "sliding_window": 4,
      "layer_types": ["sliding_attention"] * 3 + ["full_attention"] * 2 + ["sliding_attention"] * 15},
     "unsupported option layer_types"),
    ({**BASE, "model_type": "opt", "ffn_dim": 12, "max_position_embeddings": 8,
      "layer_norm_elementwise_affine": False}, "layer_norm_elementwise_affine=False"),
    ({"model_type": "t5", "vocab_size": 10, "d_model": 8, "d_kv": 4, "d_ff": 12, "num_layers": 1,
      "num_heads": 2, "feed_forward_proj": "gated-relu"}, "unsupported option feed_forward_proj='gated-relu'"),
    ({"model_type": "t5", "vocab_size": 10, "d_model": 8, "d_kv": 4, "d_ff": 12, "num_layers": 1,
      "num_heads": 2, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 8},
     "relative_attention_max_distance (8) should exceed"),
])
def test_refused_with_the_key_that_blocks(config, message):
    with pytest.raises(HFImportError) as e:
        hf_to_spec(config)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_refusal_comes_before_reading_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**BASE, "model_type": "phi", "qk_layernorm": True}))
    with pytest.raises(HFImportError, match="qk_layernorm"):
        import_hf(tmp_path, tmp_path / "out")  # no weights there: refused first
