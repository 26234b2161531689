"""`strata import-hf`: success output and one-line errors with exit codes, no tracebacks."""

from __future__ import annotations

import json

from strata.cli import main
from tests.optional import require


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err, text):
    assert code in (1, 2)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("strata: error:") and text in lines[0], err


def test_missing_dir(tmp_path, capsys):
    code, _, err = run(["import-hf", str(tmp_path / "nope"), "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "no such folder")


def test_missing_config(tmp_path, capsys):
    code, _, err = run(["import-hf", str(tmp_path), "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "no config.json")


def test_bad_json(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{nope")
    code, _, err = run(["import-hf", str(tmp_path), "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "not valid JSON")


def test_unsupported_model_type(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    code, _, err = run(["import-hf", str(tmp_path), "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "unsupported model_type 'mamba'")


def test_unsupported_rope_scaling(tmp_path, capsys):
    cfg = {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_attention_heads": 2,
           "num_hidden_layers": 1, "intermediate_size": 16,
           "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    code, _, err = run(["import-hf", str(tmp_path), "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "rope_scaling type 'yarn'")


def test_pickle_only_folder_refused(tmp_path, capsys):
    cfg = {"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 10,
           "n_positions": 4}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    code, _, err = run(["import-hf", str(tmp_path), "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "only pickle weights (pytorch_model.bin)")
    assert not (tmp_path / "o").exists()


def test_corrupt_safetensors(tmp_path, capsys):
    require("torch")
    cfg = {"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 10,
           "n_positions": 4}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    code, _, err = run(["import-hf", str(tmp_path), "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "cannot read safetensors")


def test_success(hf_folder, tmp_path, capsys):
    folder, _ = hf_folder("gpt2")
    out = tmp_path / "out"
    code, stdout, _ = run(["import-hf", str(folder), "-o", str(out)], capsys)
    assert code == 0 and "model.arch" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["model.arch", "weights.safetensors"]
    assert main(["check", str(out / "model.arch")]) == 0


def test_files_already_in_out_are_replaced_only_with_overwrite(hf_folder, tmp_path, capsys):
    """import-hf -o DIR replaced the user's own model.arch there without a word."""
    folder, _ = hf_folder("gpt2")
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.arch").write_text("# mine\n")
    code, _, err = run(["import-hf", str(folder), "-o", str(out)], capsys)
    _assert_one_line_error(code, err, "model.arch exists: --overwrite replaces it")
    assert (out / "model.arch").read_text() == "# mine\n" and not (out / "weights.safetensors").exists()
    code, _, _ = run(["import-hf", str(folder), "-o", str(out), "--overwrite"], capsys)
    assert code == 0 and main(["check", str(out / "model.arch")]) == 0


def test_never_imports_transformers(hf_folder, tmp_path):
    """transformers is a test dependency only; hf_to_spec does not even need torch."""
    import subprocess
    import sys

    folder, _ = hf_folder("llama_gqa")
    code = (
        "import json, sys\n"
        "from strata.interop import hf_to_spec, import_hf\n"
        f"hf_to_spec(json.load(open({str(folder / 'config.json')!r})))\n"
        "assert 'torch' not in sys.modules, 'hf_to_spec imported torch'\n"
        f"import_hf({str(folder)!r}, {str(tmp_path / 'out')!r})\n"
        "assert 'transformers' not in sys.modules, 'import_hf imported transformers'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
