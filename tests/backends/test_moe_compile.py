"""torch.compile and the mixture of experts (torch 2.13): `fullgraph=True` traces
the data-dependent routing (`torch.where` over the chosen experts) into one graph;
without it, dynamo splits the model at each `torch.where` instead."""

from __future__ import annotations

import pytest

from tests.optional import require

torch = require("torch")

import strata.api as api

SPEC = """model m { d = 32
  block layer { residual { rmsnorm; attention(4, kv_heads=2, causal=true, bias=false) }
                residual { rmsnorm; moe(48, 4, 2, shared=1) } }
  stack decoder(tokens) { embedding(64, d) as embed; position(rotary); repeat(2) layer as layers
                          rmsnorm; lm_head(64) } }"""


@pytest.mark.slow
def test_moe_compiles_to_one_graph_with_fullgraph():
    import torch._dynamo

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = api.compile(SPEC)
    ids = torch.randint(0, 64, (2, 16))
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    out = torch.compile(model, fullgraph=True, backend=backend)(ids)
    assert len(graphs) == 1
    torch.testing.assert_close(out, model(ids))
    explain = torch._dynamo.explain(model)(ids)  # the default mode breaks at the routing
    assert explain.graph_break_count > 0
    assert all("nonzero" in b.reason for b in explain.break_reasons)
