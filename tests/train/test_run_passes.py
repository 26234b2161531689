"""The Run that `strata.train` returns is the model as its spec compiles it — the
float weights, then the spec's passes (quantization, pruning) — so its
`generate` and `evaluate` give what `strata generate RUN` / `strata eval RUN`
give, compiled once per Run (strata/train/run_folder.py: RunFolder.compiled)."""

from __future__ import annotations

import json

from tests.optional import require

torch = require("torch")
require("torchao")

import pytest  # noqa: E402

import strata  # noqa: E402
from strata.cli import main  # noqa: E402
from strata.train.run_folder import RunFolder  # noqa: E402
from tests.train.helpers import GPT, text, write  # noqa: E402


def _train(tmp_path, passes: str):
    spec = write(tmp_path / "s.arch", GPT.replace("passes { fuse_qkv }", f"passes {{ fuse_qkv; {passes} }}"))
    data = write(tmp_path / "d.txt", text())
    return strata.train(spec, data=str(data), out=tmp_path / "r", steps=120, eval_every=60, progress=False)


@pytest.mark.parametrize("passes", ["quantize(int8_dynamic)", "prune(0.5)"])
def test_the_trained_run_generates_and_evaluates_as_the_commands_do(tmp_path, capsys, monkeypatch, passes):
    run = _train(tmp_path, passes)
    compiles = []
    real = RunFolder.load_model
    monkeypatch.setattr(RunFolder, "load_model", lambda self, *a, **k: compiles.append(a) or real(self, *a, **k))
    greedy = run.generate("the ", tokens=20, temperature=0)
    loss = run.evaluate()["loss"]
    assert run.generate("the ", tokens=20, temperature=0) == greedy
    assert len(compiles) == 1  # once for the Run, not per call
    assert main(["generate", str(run.path), "--prompt", "the ", "--tokens", "20", "--temperature", "0", "-q"]) == 0
    assert capsys.readouterr().out == greedy + "\n"
    assert main(["eval", str(run.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] == loss
    x = torch.randint(0, 60, (2, 12))
    with torch.no_grad():  # the quantized / pruned model, not the float one that trained
        assert torch.equal(run.model(x), strata.open_model(run.path).model(x))
        assert torch.equal(run.model(x), strata.compile(run.path)(x))
