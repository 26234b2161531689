"""strata/components/heads.py: the LM head's input scale (T5's d ** -0.5 before its
tied head) survives the low_rank pass."""

from __future__ import annotations

import pytest

from tests.optional import require

torch = require("torch")

import strata.api as api

SPEC = """model m {{
  d = 16
  stack s(tokens) {{ embedding(50, d) as embed; lm_head(50, scale=d ** -0.5, softcap=5) }}
}}
{passes}"""


@pytest.mark.parametrize("passes", ["", "passes { low_rank(4, on=lm_head) }"], ids=["plain", "low_rank"])
def test_lm_head_scale_multiplies_its_input(passes):
    model = api.compile(SPEC.format(passes=passes)).eval()
    assert "self.lm_head(x * self.config.d ** (-0.5))" in model.strata_source
    ids = torch.randint(0, 50, (1, 6))
    with torch.no_grad():
        h = model.s.embed(ids)
        want = 5 * torch.tanh(model.s.lm_head(h * 0.25) / 5)
        torch.testing.assert_close(model(ids), want, atol=1e-6, rtol=0)
