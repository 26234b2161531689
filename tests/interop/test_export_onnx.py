"""`strata export --to onnx`: ONNX Runtime's outputs are strata's (1e-4) with and
without the cache, `strata generate OUT --runtime onnx` writes strata's greedy
text, and --int8 files run."""

from __future__ import annotations

import json

import numpy as np
import pytest

import strata
from strata.cli import main
from tests.optional import require
from tests.train.helpers import GPT, text, write

torch = require("torch")
require("onnxruntime")
require("onnxscript")

pytestmark = pytest.mark.slow  # each export traces the model twice (about 20 s on 2 busy cores)

ONE_LAYER = GPT.replace("repeat(2)", "repeat(1)")


def doc_commands() -> list[list[str]]:
    """The commands docs/interop.md's ONNX section shows."""
    import re
    import shlex
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "interop.md").read_text()
    section = doc[doc.index("### ONNX"):doc.index("## Families and options")]
    return [shlex.split(ln) for block in re.findall(r"```onnx\n(.*?)```", section, re.S)
            for ln in block.splitlines()]


@pytest.fixture(scope="module")
def run_and_export(tmp_path_factory):
    """A 1-layer run at runs/tiny, exported by the docs' own command (run in its folder)."""
    import contextlib

    tmp = tmp_path_factory.mktemp("onnx")
    data = write(tmp / "d.txt", text(400))
    run = strata.train(write(tmp / "g.arch", ONE_LAYER), data=str(data), out=tmp / "runs" / "tiny", steps=2,
                       progress=False)
    export = doc_commands()[0]
    assert export[:2] == ["strata", "export"]
    with contextlib.chdir(tmp):
        assert main(export[1:]) == 0
    return run, tmp / export[export.index("-o") + 1]


def test_outputs_match_with_and_without_cache(run_and_export):
    from strata.train.onnx_runtime import OnnxModel

    run, out = run_and_export
    info = json.loads((out / "onnx.json").read_text())
    assert info["causal"] and info["layers"] == 1
    ort = OnnxModel(out)
    net = run.model
    ids = torch.randint(0, 60, (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = net(ids).numpy()
    logits, past = ort.forward(ids[:, :-1].numpy())  # batch 3, 10 positions: dynamic axes
    np.testing.assert_allclose(logits, want[:, :-1], atol=1e-4, rtol=0)
    step, present = ort.decode(ids[:, -1:].numpy(), past)  # the last position from the cache
    np.testing.assert_allclose(step[:, 0], want[:, -1], atol=1e-4, rtol=0)
    assert present[0].shape[2] == 11
    one, _ = ort.forward(ids[:1, :1].numpy())  # a one-token prompt
    np.testing.assert_allclose(one[:, 0], want[:1, 0], atol=1e-4, rtol=0)


def test_generate_runtime_onnx_is_strata_greedy(run_and_export, capsys):
    run, out = run_and_export
    args = ["--prompt", "the cat", "--tokens", "12", "--temperature", "0", "-q"]
    assert main(["generate", str(run.path), *args]) == 0
    want = capsys.readouterr().out
    assert main(["generate", str(out), "--runtime", "onnx", *args]) == 0
    assert capsys.readouterr().out == want


def test_int8(run_and_export, tmp_path):
    """--int8's step on a copy of the float export (a second export costs 20 s):
    the weights shrink to int8 and the files still run and decode."""
    import shutil

    import onnx

    from strata.train.export_onnx import DECODER, MODEL, quantize_int8
    from strata.train.onnx_runtime import OnnxModel

    run, out = run_and_export
    q = shutil.copytree(out, tmp_path / "q")
    quantize_int8(q, [MODEL, DECODER])
    assert any(t.data_type == onnx.TensorProto.INT8 for t in onnx.load(str(q / MODEL)).graph.initializer)
    seq = OnnxModel(q).greedy(np.array([[5, 6, 7]]), 4)
    assert seq.shape == (1, 7)


def test_onnx_runtime_refusals(run_and_export, tmp_path, capsys):
    run, out = run_and_export
    assert main(["generate", str(out), "--runtime", "onnx", "--temperature", "0.8"]) != 0
    assert "greedily" in capsys.readouterr().err
    # --temperature not given is greedy there (was: refused, for generate's default of 0.8)
    assert main(["generate", str(out), "--runtime", "onnx", "--prompt", "the", "--tokens", "4"]) == 0
    greedy = capsys.readouterr().out
    assert main(["generate", str(out), "--runtime", "onnx", "--prompt", "the", "--tokens", "4",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().out == greedy
    assert main(["generate", str(run.path), "--runtime", "onnx", "--temperature", "0"]) != 0
    assert "not a strata ONNX export" in capsys.readouterr().err
    assert main(["export", str(run.path), "--to", "hf", "--int8", "-o", str(tmp_path / "x")]) != 0
    assert "--int8" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_docs_onnx_commands_run(run_and_export, monkeypatch, capsys):
    """The docs' generate command, in the folder the fixture ran their export in."""
    run, out = run_and_export
    generate = doc_commands()[1]
    assert generate[:2] == ["strata", "generate"]
    monkeypatch.chdir(out.parents[1])
    capsys.readouterr()
    assert main(generate[1:]) == 0
    assert capsys.readouterr().out.startswith("the cat")


def test_export_into_an_existing_folder_keeps_the_external_data(run_and_export, tmp_path, capsys):
    """Into a folder that already exists (made by the user, or an earlier export)
    model.onnx.data once never landed: the files did not run."""
    run, _ = run_and_export
    out = tmp_path / "made"
    out.mkdir()
    assert main(["export", str(run.path), "--to", "onnx", "-o", str(out)]) == 0
    assert (out / "model.onnx.data").is_file() and (out / "decoder_with_past.onnx.data").is_file()
    capsys.readouterr()
    assert main(["generate", str(out), "--runtime", "onnx", "--tokens", "3", "--temperature", "0", "-q"]) == 0


def test_a_damaged_export_is_one_line(run_and_export, tmp_path, capsys):
    """Each of these once reached ONNX Runtime and ended in an internal error (a
    FIFO would have hung its open)."""
    import os
    import shutil

    _, out = run_and_export

    def garbage(f):
        (f / "model.onnx").write_text("junk")

    def tokenizer_too_large(f):
        tok = json.loads((f / "tokenizer.json").read_text())
        tok["chars"] = "".join(chr(0x100 + i) for i in range(300))
        (f / "tokenizer.json").write_text(json.dumps(tok))

    def layers(f):
        info = json.loads((f / "onnx.json").read_text())
        (f / "onnx.json").write_text(json.dumps({**info, "layers": 3}))

    cases = {
        "garbage": (garbage, "model.onnx: ONNX Runtime cannot load it ("),
        "no_data": (lambda f: (f / "model.onnx.data").unlink(), "model.onnx: ONNX Runtime cannot load it ("),
        "fifo": (lambda f: ((f / "decoder_with_past.onnx").unlink(), os.mkfifo(f / "decoder_with_past.onnx")),
                 "decoder_with_past.onnx: not a regular file (a FIFO)"),
        "layers": (layers, "its inputs are not the 3 layers' keys and values onnx.json names"),
        "layers_text": (lambda f: (f / "onnx.json").write_text(json.dumps(
            {**json.loads((f / "onnx.json").read_text()), "layers": "1"})), "onnx.json: damaged"),
        "tokenizer": (tokenizer_too_large, "tokenizer.json: 300 ids; the model's vocabulary holds"),
    }
    for name, (damage, message) in cases.items():
        f = shutil.copytree(out, tmp_path / name)
        damage(f)
        code = main(["generate", str(f), "--runtime", "onnx", "--tokens", "2", "--temperature", "0", "-q"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("strata: error: ") and message in err, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)
