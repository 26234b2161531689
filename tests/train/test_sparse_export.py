"""`strata export` of a pruned compress output (its linears in the sparse-bitmask
layout) of a spec that is no Hugging Face family, in a user's order: compress,
then export --to hf (custom code) and --to onnx.  Both were refused: the custom
code looked for the dense `.weight` the file no longer holds ("the compressed
checkpoint's is missing"), ONNX took the bitmask for quantized weights."""

from __future__ import annotations

from pathlib import Path

from tests.optional import require

torch = require("torch")

from strata.api import compile, compress, save_weights  # noqa: E402
from strata.cli import main  # noqa: E402
from tests.matrix_specs import PLAIN  # noqa: E402


def _compressed(tmp_path: Path) -> Path:
    Path(tmp_path / "p.arch").write_text(PLAIN)
    save_weights(compile(tmp_path / "p.arch"), tmp_path / "w.safetensors")
    compress(tmp_path / "p.arch", tmp_path / "c", weights=tmp_path / "w.safetensors", passes=["prune(0.5)"])
    assert (tmp_path / "c" / "weights.safetensors").exists()
    return tmp_path / "c"


def test_a_sparse_output_exports_as_custom_code_with_its_logits(tmp_path, capsys):
    transformers = require("transformers")
    c = _compressed(tmp_path)
    assert main(["export", str(c), "--to", "hf", "-o", str(tmp_path / "hf")]) == 0, capsys.readouterr().err
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", trust_remote_code=True).eval()
    ids = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, ours = hf(ids).logits, compile(c).eval()(ids)
    assert torch.equal(got, ours)


def test_a_sparse_output_exports_to_onnx(tmp_path, capsys):
    require("onnxscript")
    c = _compressed(tmp_path)
    assert main(["export", str(c), "--to", "onnx", "-o", str(tmp_path / "o")]) == 0, capsys.readouterr().err
    assert (tmp_path / "o" / "model.onnx").exists()
