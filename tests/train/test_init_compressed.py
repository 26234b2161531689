"""`strata train --init OUT/` from a compress output, in a user's order: train a
spec, compress it with low_rank (and low_rank + int8), then train from the
output, both the compressed spec and the spec it came from.  The output's
tensors are its model's own (factors, integers); --init reads them as the
float weights they stand for, so every weight loads (it used to leave the
factored layers at random, or refuse the packed ones)."""

from __future__ import annotations

from pathlib import Path

from tests.optional import require

torch = require("torch")

from safetensors.torch import load_file  # noqa: E402

from strata.cli import main  # noqa: E402
from tests.matrix_specs import PLAIN  # noqa: E402


def _init_line(err: str) -> str:
    return next(line for line in err.splitlines() if line.startswith("init: "))


def test_train_from_a_low_rank_compress_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN + "train {\n  tokenizer = char\n  batch = 2\n  context = 16\n}\n")
    assert main(["train", "p.arch", "--out", "r", "--steps", "1", "-q"]) == 0
    assert main(["compress", "r", "--pass", 'low_rank(8, on="mlp")', "--pass", "quantize(int8_weight)",
                 "-o", "small"]) == 0
    capsys.readouterr()
    # the spec it came from (the compressed spec loaded before too)
    assert main(["train", "p.arch", "--init", "small", "--out", "t", "--steps", "1",
                 "--set", "optimizer=sgd(lr=1e-12)"]) == 0
    cap = capsys.readouterr()
    line = _init_line(cap.out + cap.err)
    loaded, of = line.split(": ")[2].split(" weights")[0].split(" of ")
    assert loaded == of and "new:" not in line, line
    assert line.endswith("(read as float: integers dequantized, low-rank factors multiplied back)"), line
    # lr ~ 0: the trained weights are the init's; in the spec's names the int8 factors multiply back
    w, f = load_file("t/model.safetensors"), load_file("small/weights.safetensors")
    n = "decoder.h.0.mlp.up"
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

    # int8_weight as compressed-tensors' pack-quantized: 4 integers to an int32
    a, b = (unpack_from_int32(f[f"{n}.{x}.weight_packed"], 8, torch.Size(f[f"{n}.{x}.weight_shape"].tolist()))
            .float() * f[f"{n}.{x}.weight_scale"] for x in "ab")
    assert torch.allclose(w[f"{n}.weight"], b @ a, atol=1e-5)


def test_a_compress_output_that_does_not_fit_is_named_in_the_error(tmp_path, monkeypatch, capsys):
    """--init from a structured-pruned output into the unpruned spec: the error
    named '<state dict>', not the file the user gave."""
    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN + "train {\n  tokenizer = char\n  batch = 2\n  context = 16\n}\n")
    assert main(["train", "p.arch", "--out", "r", "--steps", "1", "-q"]) == 0
    assert main(["compress", "r", "--pass", 'prune(0.5, method=structured, on="mlp")', "-o", "small"]) == 0
    capsys.readouterr()
    assert main(["train", "p.arch", "--init", "small", "--out", "t", "--steps", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert "small/weights.safetensors: the checkpoint does not fit the model" in err, err
    assert "<state dict>" not in err
    # the way out names the compressed spec, not "the spec the weights came from" (p.arch, say)
    assert "train small/model.arch (the compressed model's own sizes)" in err, err
    assert len(err.strip().splitlines()) == 1


def test_train_from_a_sparse_compress_output_says_it_reads_float(tmp_path, monkeypatch, capsys):
    """A pruned output's linears are sparse-bitmask tensors: --init makes them
    dense (checked here against the bitmask read with numpy), and its `init:`
    line says the file was read as float (it said only "36 of 36 weights")."""
    import numpy as np

    from strata.api import compile, compress, save_weights

    monkeypatch.chdir(tmp_path)
    Path("p.arch").write_text(PLAIN + "train {\n  tokenizer = char\n  batch = 2\n  context = 16\n}\n")
    save_weights(compile("p.arch"), "w.safetensors")
    compress("p.arch", "small", weights="w.safetensors", passes=["prune(0.5)"])
    capsys.readouterr()
    assert main(["train", "p.arch", "--init", "small", "--out", "t", "--steps", "1",
                 "--set", "optimizer=sgd(lr=1e-12)"]) == 0
    cap = capsys.readouterr()
    assert "(read as float: sparse-bitmask weights made dense)" in _init_line(cap.out + cap.err)
    w, f = load_file("t/model.safetensors"), load_file("small/weights.safetensors")
    n = "decoder.h.0.mlp.up"
    rows, cols = f[f"{n}.shape"].tolist()
    mask = np.unpackbits(f[f"{n}.bitmask"].numpy(), axis=1, bitorder="little")[:, :cols].astype(bool)
    dense = torch.zeros(rows, cols)
    dense[torch.from_numpy(mask)] = f[f"{n}.compressed"]
    assert torch.allclose(w[f"{n}.weight"], dense, atol=1e-9)
