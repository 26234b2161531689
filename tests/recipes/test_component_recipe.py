"""The "add a component" recipe of docs/architecture.md, done: a new component
is one `Component` in one file (here, this test) and one `register` call, and
then a spec can use it, and check, summary, the generated file, training and
the diagram handle it, with nothing else in strata touched.

The component, `layerscale` (CaiT's LayerScale), multiplies each feature by a
learned factor: y = x * gamma, gamma [d] (or one factor, scalar=true), so a
residual branch can start small and grow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

import strata
from strata.components import COMPONENTS, Component, Lowered, Options, register
from strata.components.component_base import hidden
from tests.optional import require
from tests.train.helpers import GPT, text, write


class LayerScaleOptions(Options):
    """Multiply each feature by a learned factor (CaiT's LayerScale)."""

    scalar: bool = Field(False, description="one factor for all features")


def elaborate(b, u):
    """One `mul` op of the stream by its parameter gamma [d] (or [1])."""
    d = hidden(u.x, "layerscale", u.span)
    return b.op(u.path, "mul", [u.x], u.x.shape, u.sc, comp=u.path, kind="layerscale",
                attrs={"scalar": u.o.scalar}, params={"gamma": (1 if u.o.scalar else d,)}, span=u.span,
                sym=u.x.sym)


SOURCE = '''\
class {name}(nn.Module):
    """y = x * gamma: each feature scaled by a learned factor (CaiT's LayerScale)."""

    def __init__(self, d):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * self.gamma  # (B, T, d)
'''


def lower(ctx, c):
    """`self.<name> = LayerScale(d)`, called on its input."""
    size = c.node()["params"]["gamma"][0]
    return Lowered(f"{ctx.define('LayerScale', SOURCE)}({ctx.arg(size)})", f"{c.module}({c.ins[0]})")


LAYERSCALE = Component("layerscale", LayerScaleOptions, (), "scale", "scale", elaborate, lower,
                       lambda o: "LayerScale", lambda o: "one factor" if o.get("scalar") else None,
                       attrs={"scalar": "one factor for all features"})


@pytest.fixture
def layerscale():
    register(LAYERSCALE)  # the one registry line (strata/components/__init__.py holds the built-in ones')
    yield LAYERSCALE
    COMPONENTS.pop(LAYERSCALE.name)


def _spec(tmp_path, use: str = "layerscale") -> Path:
    return write(tmp_path / "g.arch", GPT.replace("mlp(4 * d) }", f"mlp(4 * d); {use} }}"))


def test_a_new_component_goes_through_every_stage(layerscale, tmp_path):
    torch = require("torch")
    spec = str(_spec(tmp_path))
    plain = strata.check(str(write(tmp_path / "plain.arch", GPT)))["parameters"]
    assert strata.check(spec)["parameters"] == plain + 2 * 32                    # check: 2 layers' gamma
    bad = str(_spec(tmp_path, "layerscale(scalar=3)"))
    with pytest.raises(strata.SpecError, match=r"g.arch:\d+:\d+: error: option 'scalar' of 'layerscale'"):
        strata.check(bad)
    spec = str(_spec(tmp_path))
    s = strata.summary(spec)                                                    # summary (cost)
    assert s["parameters"] == plain + 2 * 32
    source = strata.generate_source(spec)                                       # compile
    assert "class LayerScale(nn.Module):" in source and "self.scale = LayerScale(32)" in source
    net = strata.compile(spec)
    assert net.decoder.h[1].scale.gamma.shape == (32,)
    assert "LayerScale" in strata.diagram(spec, level="op").source             # diagram
    run = strata.train(spec, data=str(write(tmp_path / "a.txt", text())), out=tmp_path / "r", steps=3,
                       eval_every=3, progress=False)                            # train
    gamma = run.model.state_dict()["decoder.h.1.scale.gamma"]
    assert not torch.equal(gamma, torch.ones(32))                               # it learned
