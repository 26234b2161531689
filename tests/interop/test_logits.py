"""Numerical equivalence: a Hugging Face model and its strata import, compiled
by strata's torch backend, give the same outputs (fp32, eval mode, 1e-4)."""

from __future__ import annotations

import inspect

import pytest

from strata import api
from tests.interop.models import MODELS
from tests.optional import require

torch = require("torch")

ATOL = 1e-4
T = 12  # longer than the Mistral test model's sliding window (4)


def hf_outputs(name, model, ids, token_types, tgt=None):
    """The HF outputs, keyed by the strata output (branch) names the import gives them."""
    if tgt is not None:  # an encoder-decoder (T5)
        return {"output": model(input_ids=ids, decoder_input_ids=tgt).logits}
    if not name.startswith("bert"):
        out = model(ids)
        return {"output": out.logits if hasattr(out, "logits") else out.last_hidden_state}
    out = model(ids, token_type_ids=token_types)
    if hasattr(out, "prediction_logits"):  # BertForPreTraining
        return {"output": out.prediction_logits, "nsp": out.seq_relationship_logits}
    if hasattr(out, "logits"):  # BertForMaskedLM
        return {"output": out.logits}
    return {"output": out.last_hidden_state, "pooled": out.pooler_output}


@pytest.mark.parametrize("name", list(MODELS))
def test_outputs_match_hf(name, imported):
    arch, weights, model = imported(name)
    ours = api.compile(arch, weights=weights).eval()
    if name.startswith("bert"):  # the segment ids reach the model (they did not once)
        assert "token_type_ids" in inspect.signature(ours.forward).parameters
    torch.manual_seed(1)
    ids = torch.randint(0, 100, (2, T))
    token_types = torch.randint(0, 2, (2, T))
    kw = {"token_type_ids": token_types} if name.startswith("bert") else {}
    tgt = torch.randint(0, 100, (2, T - 3)) if model.config.is_encoder_decoder else None
    with torch.no_grad():
        want = hf_outputs(name, model, ids, token_types, tgt)
        got = ours(ids, *([] if tgt is None else [tgt]), return_dict=True, **kw)
    assert set(want) <= set(got)
    for key, ref in want.items():
        assert got[key].shape == ref.shape, key
        torch.testing.assert_close(got[key], ref, atol=ATOL, rtol=0, msg=f"{name}: {key}")


def test_mistral_window_matters(imported):
    """The test sequence is longer than the window, so the window is exercised:
    the same weights without it give different logits."""
    arch, weights, model = imported("mistral")
    text = arch.read_text().replace("window=window, ", "")
    no_window = arch.with_name("no_window.arch")
    no_window.write_text(text)
    ours = api.compile(no_window, weights=weights).eval()
    ids = torch.randint(0, 100, (1, T))
    with torch.no_grad():
        assert not torch.allclose(ours(ids), model(ids).logits, atol=1e-3)
