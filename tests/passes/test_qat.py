"""QAT: prepare fake-quantizes the qat=true linears, a minimal loop trains
through them, convert swaps in the real kernels; the quantized model then
computes what the fake-quantized one did."""

from __future__ import annotations

import pytest

from tests.optional import require
from tests.passes.helpers import LLAMA, ids, spec_file, sqnr, torch, weights

require("torchao")

from strata.api import compile, save_weights  # noqa: E402
from strata.backends.torch.weights_file import checkpoint_shapes  # noqa: E402
from strata.backends.torch.workflows.qat import convert_qat, prepare_qat  # noqa: E402


@pytest.mark.parametrize("scheme", ["int8_dynamic", "int4_weight", "int4_weight, group_size=channel"])
def test_prepare_train_convert(tmp_path, scheme):
    spec = spec_file(tmp_path, LLAMA)
    w = weights(tmp_path, spec)
    p = f'quantize({scheme}, on="mlp", qat=true)' if scheme != "int4_weight" else \
        f'quantize({scheme}, on="mlp", group_size=32, qat=true)'
    net = compile(spec, passes=[p], weights=w, quantize=False)
    assert type(net.decoder.layers[0].mlp.up).__name__ == "Linear"
    prepare_qat(net)
    assert type(net.decoder.layers[0].mlp.up).__name__ == "FakeQuantizedLinear"
    assert type(net.decoder.layers[0].attn.q).__name__ == "Linear"  # not selected
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    x = ids(96, rows=4, length=17)
    losses = []
    for _ in range(6):
        out = net(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, 96), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    save_weights(net, tmp_path / "during.safetensors")  # checkpoints keep the spec's names
    assert checkpoint_shapes(tmp_path / "during.safetensors") == checkpoint_shapes(w)
    net.eval()
    with torch.no_grad():
        fake = net(x)
    convert_qat(net)
    assert net.quantization and "mlp" not in str(type(net.decoder.layers[0].mlp.up))
    with torch.no_grad():
        real = net(x)
    assert sqnr(fake, real) > (30 if scheme == "int8_dynamic" else 25)


def test_prepare_needs_a_qat_pass(tmp_path):
    spec = spec_file(tmp_path, LLAMA)
    net = compile(spec, passes=["quantize(int8_weight)"], quantize=False)
    with pytest.raises(ValueError, match="qat=true"):
        prepare_qat(net)


def test_a_linear_fused_after_qat_trains_fake_quantized_too(tmp_path):
    """fuse_qkv after quantize(qat=true): the fused q, k, v linear keeps the qat
    mark (Quantize.carried), so prepare fake-quantizes it like the others."""
    spec = spec_file(tmp_path, LLAMA)
    net = compile(spec, passes=["quantize(int8_weight, qat=true)", "fuse_qkv"], quantize=False)
    node = net.strata_graph.nodes["decoder.layers.0.attn.qkv"]
    assert node.attrs["qat"] and node.attrs["quant_scheme"] == "int8_weight"
    prepare_qat(net)
    assert type(net.decoder.layers[0].attn.qkv).__name__ == "FakeQuantizedLinear"
    assert type(net.decoder.layers[0].mlp.up).__name__ == "FakeQuantizedLinear"
