"""import_hf on tiny random Hugging Face checkpoints: the spec builds, every
tensor lands under a strata name with the spec's shape, parameter counts agree."""

from __future__ import annotations

import json

import pytest

from strata.compiler import build_file
from strata.compiler.ir import state_dict_shapes
from strata.interop import HFImportError, import_hf
from tests.interop.models import MODELS
from tests.optional import require

torch = require("torch")
st = require("safetensors.torch")


def hf_parameters(model) -> int:
    """HF's parameter count less tensors its forward never reads: an untied
    BertForMaskedLM keeps a dead `cls.predictions.bias` beside decoder.bias."""
    n = model.num_parameters()
    pred = getattr(getattr(model, "cls", None), "predictions", None)
    if pred is not None and pred.bias is not pred.decoder.bias:
        n -= pred.bias.numel()
    return n


def _tied_keys(g) -> set[str]:
    return {f"{n}.{k}" for n, d in g.nodes(data=True) for k in d["tied"]}


@pytest.mark.parametrize("name", list(MODELS))
def test_import_builds_and_matches(name, imported):
    arch, weights, model = imported(name)
    g = build_file(arch)
    assert arch.read_text().startswith("# Imported from Hugging Face")
    tensors = st.load_file(str(weights))
    expected = state_dict_shapes(g)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == expected
    # Tied parameters are stored once, under the name that owns them.
    assert not _tied_keys(g) & set(tensors)
    assert g.graph["parameters"] == hf_parameters(model)
    assert sum(t.numel() for t in tensors.values()) == hf_parameters(model)


def test_gpt2_conv1d_transposed_and_split(imported):
    arch, weights, model = imported("gpt2")
    t = st.load_file(str(weights))
    c_attn = model.transformer.h[1].attn.c_attn.weight.detach()  # [in, 3 out]
    d = c_attn.shape[0]
    for j, name in enumerate("qkv"):
        assert torch.equal(t[f"decoder.h.1.attn.{name}.weight"], c_attn[:, j * d:(j + 1) * d].T)
    assert torch.equal(t["decoder.h.1.mlp.up.weight"], model.transformer.h[1].mlp.c_fc.weight.T)
    assert "lm_head(tie=wte)" in arch.read_text()


def test_gpt2_base_model_has_no_head(imported):
    arch, _, _ = imported("gpt2_base_relu")
    text = arch.read_text()
    assert "lm_head" not in text and "act=relu" in text and "hidden  = 80" in text


def test_llama_spec_options(imported):
    text = imported("llama_gqa")[0].read_text()
    assert "kv_heads = 2" in text and "base=500000" in text and "lm_head(vocab)" in text
    text = imported("llama_tied_bias")[0].read_text()
    assert "head_dim=head_dim" in text and "bias=true" in text and "lm_head(tie=embed)" in text
    assert "eps      = 1e-05" in text


def test_mistral_window(imported):
    assert "window=window" in imported("mistral")[0].read_text()


def test_bert_heads(imported):
    pre = imported("bert_pretraining")[0].read_text()
    assert "nsp_head" in pre and "mlm_head(tie=word_embeddings" in pre
    base = imported("bert_base")[0].read_text()
    assert "branch { pooler } as pooled" in base and "mlm_head" not in base
    assert "act=gelu_tanh" in base
    mlm = imported("bert_mlm_untied")[0].read_text()
    assert "mlm_head(vocab" in mlm and "pooler" not in mlm and "types  = 3" in mlm


def test_sharded_checkpoint(hf_folder, tmp_path):
    folder, model = hf_folder("llama_gqa", max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").is_file()
    _, weights = import_hf(folder, tmp_path)
    t = st.load_file(str(weights))
    assert torch.equal(t["decoder.layers.1.attn.k.weight"],
                       model.model.layers[1].self_attn.k_proj.weight)


def test_dtype_option(hf_folder, tmp_path):
    folder, _ = hf_folder("gpt2")
    _, weights = import_hf(folder, tmp_path, dtype="bfloat16")
    assert all(v.dtype == torch.bfloat16 for v in st.load_file(str(weights)).values())


def test_old_rope_theta_form(hf_folder, tmp_path):
    import shutil

    folder, _ = hf_folder("llama_gqa")
    copy = tmp_path / "old"
    shutil.copytree(folder, copy)
    cfg = json.loads((copy / "config.json").read_text())
    del cfg["rope_parameters"]
    cfg.update(rope_theta=250000.0, rope_scaling=None)
    (copy / "config.json").write_text(json.dumps(cfg))
    arch, _ = import_hf(copy, tmp_path / "out")
    assert "position(rotary, base=250000)" in arch.read_text()


def test_mismatched_checkpoint_is_refused_before_writing(hf_folder, tmp_path):
    import shutil

    folder, _ = hf_folder("gpt2")
    copy = tmp_path / "bad"
    shutil.copytree(folder, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["n_inner"] = 128  # the checkpoint's MLP is 256 wide
    (copy / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    with pytest.raises(HFImportError, match="does not match the generated spec: shape of decoder"):
        import_hf(copy, out)
    assert not out.exists() or not any(out.iterdir())


def test_unmapped_tensor_is_refused(hf_folder, tmp_path):
    import shutil

    folder, _ = hf_folder("llama_gqa")
    copy = tmp_path / "extra"
    shutil.copytree(folder, copy)
    t = st.load_file(str(copy / "model.safetensors"))
    t["model.layers.0.self_attn.extra.weight"] = torch.zeros(2)
    st.save_file(t, str(copy / "model.safetensors"))
    with pytest.raises(HFImportError, match="no place in the spec: model.layers.0.self_attn.extra"):
        import_hf(copy, tmp_path / "out")


def test_bf16_checkpoint_keeps_its_dtype(tmp_path):
    from tests.interop.models import make_model

    model = make_model("mistral").to(torch.bfloat16)
    model.save_pretrained(tmp_path / "hf")
    _, weights = import_hf(tmp_path / "hf", tmp_path / "out")
    t = st.load_file(str(weights))
    assert all(v.dtype == torch.bfloat16 for v in t.values())
    assert torch.equal(t["decoder.layers.0.mlp.gate.weight"], model.model.layers[0].mlp.gate_proj.weight)


def test_tf_era_layernorm_names(hf_folder, tmp_path):
    """Old BERT conversions name LayerNorm parameters gamma / beta."""
    import shutil

    folder, model = hf_folder("bert_base")
    copy = tmp_path / "tf"
    shutil.copytree(folder, copy)
    t = st.load_file(str(copy / "model.safetensors"))
    t = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
         for k, v in t.items()}
    st.save_file(t, str(copy / "model.safetensors"))
    _, weights = import_hf(copy, tmp_path / "out")
    got = st.load_file(str(weights))
    assert torch.equal(got["encoder.layer.1.output_norm.bias"], model.encoder.layer[1].output.LayerNorm.bias)
