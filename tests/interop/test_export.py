"""`strata export --to hf`: import-hf run backwards.  Each family's tiny random
model (tests/interop/models.py) goes HF -> import-hf -> export: the tensors come
back bit for bit, the config re-imports to the same spec, transformers loads the
folder alone and its logits and greedy tokens are strata's."""

from __future__ import annotations

import json

import pytest

from strata import api
from strata.cli import main
from strata.interop import hf_to_spec
from tests.interop.models import MODELS
from tests.optional import require

torch = require("torch")
transformers = require("transformers")
from safetensors.torch import load_file

EXPORTED = list(MODELS)
# one of each family for the (slower) transformers load: logits and greedy tokens
LOADED = ["gpt2_untied_unscaled", "llama_tied_bias", "mistral", "bert_pretraining", "bert_mlm_untied", "gpt_neox_sequential",
          "qwen2_window", "opt_post_norm_projected", "mixtral", "phi_gqa", "falcon_new_architecture",
          "gemma2", "t5_v1_1"]


@pytest.fixture(scope="module")
def exported(imported, tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            arch, weights, model = imported(name)
            out = api.export(arch, tmp_path_factory.mktemp(f"{name}_hf") / "hf", weights=weights)
            cache[name] = (arch, weights, model, out)
        return cache[name]

    return get


def _body(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if not ln.startswith("#")]


@pytest.mark.parametrize("name", EXPORTED)
def test_import_export_round_trip(name, exported, hf_folder):
    _, _, _, out = exported(name)
    src, _ = hf_folder(name)
    theirs, ours = load_file(src / "model.safetensors"), load_file(out / "model.safetensors")
    assert sorted(ours) == sorted(theirs)
    # an untied BERT masked-LM head's cls.predictions.bias is saved but unused (the
    # forward reads decoder.bias): the import drops it, the export writes the used one
    dead = {"cls.predictions.bias"} if name == "bert_mlm_untied" else set()
    for k in set(theirs) - dead:
        assert ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]), k
    # every config key strata reads says the same: both configs import to one spec
    original, written = (json.loads((f / "config.json").read_text()) for f in (src, out))
    assert _body(hf_to_spec(written)) == _body(hf_to_spec(original))
    assert written["model_type"] == original["model_type"]
    assert written["architectures"] == original["architectures"]


def _hf_class(model):
    cfg = model.config
    if cfg.is_encoder_decoder:
        return transformers.AutoModelForSeq2SeqLM
    return getattr(transformers, type(model).__name__)


@pytest.mark.parametrize("name", LOADED)
def test_transformers_loads_the_export(name, exported):
    arch, weights, model, out = exported(name)
    hf = _hf_class(model).from_pretrained(out).eval()
    ours = api.compile(arch, weights=weights).eval()
    torch.manual_seed(2)
    ids = torch.randint(3, 100, (2, 10))
    with torch.no_grad():
        if hf.config.is_encoder_decoder:
            tgt = torch.randint(3, 100, (2, 6))
            want, got = ours(ids, tgt, return_dict=True)["output"], hf(input_ids=ids, decoder_input_ids=tgt).logits
        elif name.startswith("bert"):
            want = ours(ids, return_dict=True)["output"]
            out = hf(ids)
            got = out.prediction_logits if hasattr(out, "prediction_logits") else out.logits
        else:
            want, got = ours(ids, return_dict=True)["output"], hf(ids).logits
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
        if hf.config.is_encoder_decoder or name.startswith("bert"):
            return
        # greedy decoding: transformers' generate() picks strata's tokens
        seq = ids[:1]
        for _ in range(6):
            nxt = ours(seq, return_dict=True)["output"][:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], 1)
        gen = hf.generate(ids[:1], max_new_tokens=6, do_sample=False)
        assert gen.tolist() == seq.tolist()


def test_no_longer_a_family_becomes_custom_code(tmp_path, imported, capsys):
    """A Llama with an option no Llama config has (qk_norm) is not silently
    dropped to a plain Llama: it goes out as custom code, and still matches."""
    arch, weights, _ = imported("llama_gqa")
    other = tmp_path / "m.arch"
    other.write_text(arch.read_text().replace("attention(heads", "attention(heads, qk_norm=true"))
    torch.manual_seed(0)
    net = api.compile(other).eval()
    api.save_weights(net, tmp_path / "w.safetensors")
    assert main(["export", str(other), "--weights", str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "o")]) == 0
    assert "trust_remote_code" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "config.json").read_text())["model_type"] == "strata"
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "o", trust_remote_code=True).eval()
    ids = torch.randint(0, 100, (1, 8))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, net(ids), atol=1e-5, rtol=0)


def test_cli_export(tmp_path, imported, capsys):
    arch, weights, _ = imported("gpt2")
    assert main(["export", str(arch), "--weights", str(weights), "-o", str(tmp_path / "hf")]) == 0
    assert "config.json" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "hf").iterdir()} == {
        "config.json", "model.safetensors", "generation_config.json"}


def test_docs_export_commands_run(tmp_path, hf_folder, monkeypatch):
    """The commands docs/interop.md's Export section shows, run as written."""
    import re
    import shlex
    import shutil
    from pathlib import Path

    require("compressed_tensors")  # the quantized example's export
    text = (Path(__file__).resolve().parents[2] / "docs" / "interop.md").read_text()
    section = text[text.index("## Export"):text.index("## Families and options")]
    commands = [ln for block in re.findall(r"```sh\n(.*?)```", section, re.S) for ln in block.splitlines()]
    assert commands
    for name, folder in (("gpt2", "gpt2"), ("llama_gqa", "llama")):
        src, _ = hf_folder(name)
        shutil.copytree(src, tmp_path / "hf" / folder)
    monkeypatch.chdir(tmp_path)
    for cmd in commands:
        argv = shlex.split(cmd)
        assert argv[0] == "strata" and main(argv[1:]) == 0, cmd
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "gpt2-hf")
    assert type(model).__name__ == "GPT2LMHeadModel"
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "llama-w8a8-hf")
    config = json.loads((tmp_path / "out" / "llama-w8a8-hf" / "config.json").read_text())
    assert type(model).__name__ == "LlamaForCausalLM" and config["quantization_config"]["format"] == "int-quantized"


def test_a_classifier_of_three_classes_stays_a_bert_folder(tmp_path):
    """A BERT sequence classifier with other than 2 labels (MNLI's 3) exported as
    custom code: the classes are a literal in the spec (`classifier(3)`), and no
    config the search tried said num_labels, so none re-imported to the spec."""
    from strata.interop import import_hf
    from tests.interop.models import _bert

    torch.manual_seed(0)
    src = tmp_path / "hf"
    transformers.BertForSequenceClassification(_bert(num_labels=3)).save_pretrained(src)
    arch, weights = import_hf(src, tmp_path / "imported")
    assert "classifier(3)" in arch.read_text()
    out = api.export(arch, tmp_path / "export", weights=weights)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and config["num_labels"] == 3
    assert not (out / "modeling_strata.py").exists()
    theirs, ours = load_file(src / "model.safetensors"), load_file(out / "model.safetensors")
    assert sorted(ours) == sorted(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert _body(hf_to_spec(config)) == _body(arch.read_text())
