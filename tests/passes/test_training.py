"""strata train with the passes that change training: LoRA trains only the
adapters; quantize(qat=true) trains through fake quantization and ends on the
real kernels; a spec that quantizes trains in float."""

from __future__ import annotations

from tests.optional import require

torch = require("torch")
require("torchao")

import strata  # noqa: E402
from strata.api import compile  # noqa: E402
from strata.backends.torch.weights_file import checkpoint_shapes  # noqa: E402
from tests.train.helpers import GPT, text, write  # noqa: E402


def _spec(tmp_path, passes: str):
    return write(tmp_path / "g.arch", GPT.replace("passes { fuse_qkv }", f"passes {{ {passes} }}"))


def test_lora_trains_only_the_adapters(tmp_path, capsys):
    spec = _spec(tmp_path, 'fuse_qkv; lora(4, on="attention")')
    data = write(tmp_path / "a.txt", text())
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in compile(spec, passes=[]).state_dict().items()}
    run = strata.train(spec, data=str(data), out=tmp_path / "r", steps=8, eval_every=4)
    assert "lora: only the adapters train" in capsys.readouterr().err
    net = run.trained  # the module that trained (run.model is the run compiled: adapters merged)
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trained and all(".lora_" in n for n in trained)
    assert any(float(p.detach().abs().sum()) > 0 for n, p in net.named_parameters() if n.endswith("lora_b"))
    base = net.state_dict()
    assert torch.equal(base["decoder.h.0.mlp.up.weight"], start["decoder.h.0.mlp.up.weight"])  # frozen
    # the final weights are the spec's own names, adapters merged
    assert checkpoint_shapes(run.weights()) == {k: tuple(v.shape) for k, v in start.items()
                                                if k != "decoder.lm_head.weight"}


def test_qat_trains_through_fake_quantization_and_ends_quantized(tmp_path, capsys):
    spec = _spec(tmp_path, 'fuse_qkv; quantize(int8_dynamic, on="mlp", qat=true)')
    data = write(tmp_path / "a.txt", text())
    run = strata.train(spec, data=str(data), out=tmp_path / "r", steps=8, eval_every=4)
    assert "qat: 4 linears train with fake quantization" in capsys.readouterr().err
    kinds = {type(run.model.get_submodule(f"decoder.h.{i}.mlp.up")).__module__ for i in range(2)}
    assert kinds == {"torch.ao.nn.quantized.dynamic.modules.linear"}  # the real kernel after training
    x = torch.randint(0, 128, (1, 8))
    again = compile(spec, weights=run.weights()).eval()  # the saved floats, quantized on compile
    with torch.no_grad():
        torch.testing.assert_close(again(x), run.model.eval()(x), atol=1e-4, rtol=1e-4)


def test_a_quantizing_spec_trains_in_float(tmp_path):
    spec = write(tmp_path / "s.arch", GPT.replace("passes { fuse_qkv }", 'passes { quantize(int8_weight) }'))
    run = strata.train(spec, data=str(write(tmp_path / "a.txt", text())), out=tmp_path / "r", steps=4,
                       eval_every=4, progress=False)
    assert run.val_loss is not None
    assert type(run.trained.decoder.h[0].mlp.up.weight) is torch.nn.Parameter
    # what it generates with is the spec as compiled: int8 weights (strata generate's model)
    assert type(run.model.decoder.h[0].mlp.up.weight) is not torch.nn.Parameter


def test_compress_calibrates_on_text_with_the_runs_tokenizer(tmp_path):
    from strata.api import compress

    spec, data = _spec(tmp_path, "fuse_qkv"), write(tmp_path / "a.txt", text())
    run = strata.train(spec, data=str(data), out=tmp_path / "r", steps=4, eval_every=4, progress=False)
    r = compress(spec, tmp_path / "out", weights=run.weights(), passes=['prune(0.5, method=wanda, on="mlp")'],
                 calibration=str(data), tokenizer=str(run.path / "tokenizer.json")).report
    assert r["passes"][-1]["report"].startswith("prune (wanda): 8,192 weights zeroed in 4 linears")
    assert all(d == 0.5 for d in r["passes"][-1]["density"].values())


def test_a_spec_that_calibrates_trains_from_its_initialisation_and_resumes(tmp_path):
    """Wanda, SparseGPT and activation-aware low rank read activations: on the spec's
    initialisation (what training starts from) there is nothing trained to measure, so
    training takes the choice without them (magnitude masks, plain SVD) instead of
    refusing for want of calibration data; a resumed run's checkpoint loads without it."""
    data = str(write(tmp_path / "a.txt", text()))
    for i, p in enumerate(['prune(0.5, method=wanda, on="mlp")', 'prune(0.5, method=sparsegpt, on="mlp")',
                           'low_rank(4, activation_aware=true, on="mlp")']):
        spec = write(tmp_path / f"s{i}.arch", GPT.replace("passes { fuse_qkv }", f"passes {{ fuse_qkv; {p} }}"))
        run = strata.train(spec, data=data, out=tmp_path / f"r{i}", steps=2, eval_every=2, progress=False)
        assert run.val_loss is not None
        again = strata.train(spec, data=data, out=tmp_path / f"r{i}", steps=3, eval_every=3, resume=True,
                             progress=False)
        assert again.step == 3
    net = compile(tmp_path / "s0.arch")  # and compiled without weights, as for training
    up = net.decoder.h[0].mlp.up.weight
    assert float((up == 0).float().mean()) == 0.5
