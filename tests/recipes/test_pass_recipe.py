"""The "add a pass" recipe of docs/architecture.md, done: a new pass is one
class in one file (here, this test) and one `register` call, and then every
stage handles it — check, the summary's cost, the generated file, training and
the diagram — with nothing else in strata touched.

The pass, `freeze(on)`, keeps the selected linears' weights as they are while
the rest of the model trains.  It uses every hook a pass has beyond its
rewrite: its line and its table and build() step in the generated file, its
badge on diagram boxes, its effect on the cost (the trainable count) and what
training does with it.

A second test guards the other half of the design: the stages that used to keep
tables or branches keyed by pass names name no pass.
"""

from __future__ import annotations

import re
from math import prod
from pathlib import Path

import pytest
from pydantic import Field

import strata
from strata.components.component_base import Options
from strata.passes import REGISTRY, Pass, PassError, register, unregister
from strata.passes._rewrite import copy_graph, weight_linears
from tests.optional import require
from tests.train.helpers import GPT, text, write

ROOT = Path(__file__).resolve().parents[2]


class FreezeOptions(Options):
    """Keep the selected linears' weights as they are while the rest trains."""

    on: str = Field(description="module path glob or component kind")


class Freeze(Pass):
    name = "freeze"
    options = FreezeOptions
    positional = ("on",)
    lowered = "FROZEN; build() freezes them"
    marks = {"frozen": "keeps its weights while the rest trains"}  # what it leaves on nodes

    def run(self, graph, ctx=None):
        g = copy_graph(graph)
        nodes = weight_linears(g, self.o.on)
        if not nodes:
            raise PassError(f"{self.label()}: the selection holds no linear of its own")
        for n in nodes:
            g.nodes[n]["attrs"]["frozen"] = True
        return self.done(g, {"linears": nodes})

    def report(self, record: dict) -> str:
        return f"freeze: {len(record['linears'])} linears keep their weights"

    @staticmethod
    def frozen(g) -> list[str]:
        return [n for n, d in g.nodes(data=True) if d["attrs"].get("frozen")]

    @classmethod
    def lower(cls, g, low) -> None:
        rows = "".join(f"    {low.literal(n)},\n" for n in cls.frozen(g))
        low.at_build("FROZEN = {  # freeze: these linears keep their weights\n" + rows + "}\n",
                     "    for name, p in model.named_parameters():\n"
                     "        p.requires_grad_(name.rpartition('.')[0] not in FROZEN)")

    @classmethod
    def badges(cls, attrs: dict) -> list[str]:
        return ["frozen"] if attrs.get("frozen") else []

    @classmethod
    def trainable(cls, g) -> int | None:
        frozen = set(cls.frozen(g))
        return sum(prod(s) for n, d in g.nodes(data=True) if n not in frozen for s in d["params"].values())

    @classmethod
    def prepare_training(cls, net, kit) -> list[str]:
        frozen = set(cls.frozen(net.strata_graph))
        n = 0
        for name, p in net.named_parameters():
            if name.rpartition(".")[0] in frozen:
                p.requires_grad_(False)
                n += p.numel()
        return [f"freeze: {n:,} parameters keep their values"]


@pytest.fixture
def freeze():
    register(Freeze)  # the one registry line (strata/passes/__init__.py holds the built-in ones')
    yield Freeze
    unregister(Freeze)


def _spec(tmp_path) -> Path:
    return write(tmp_path / "g.arch", GPT.replace("passes { fuse_qkv }", 'passes { fuse_qkv; freeze(on="mlp") }'))


def test_a_new_pass_goes_through_every_stage(freeze, tmp_path, capsys):
    torch = require("torch")
    spec = _spec(tmp_path)
    assert strata.check(str(spec))["name"] == "tiny_gpt"                        # check
    bad = write(tmp_path / "bad.arch", spec.read_text().replace('"mlp"', '"nowhere"'))
    with pytest.raises(strata.SpecError, match=r"bad.arch:15:\d+: error: pass 'freeze': selector"):
        strata.check(str(bad))
    with pytest.raises(strata.SpecError, match="option 'on' of 'freeze' should be a valid string"):  # its schema
        strata.check(str(write(tmp_path / "bad2.arch", spec.read_text().replace('on="mlp"', "on=1"))))
    s = strata.summary(str(spec))                                             # cost
    assert s["trainable_parameters"] == s["parameters"] - 2 * (32 * 128 + 128 + 128 * 32 + 32)  # 2 mlps
    source = strata.generate_source(str(spec))                                # compile
    assert r'freeze(\"mlp\")  -- FROZEN; build() freezes them' in source  # its docstring line
    assert '"decoder.h.0.mlp.up",' in source and "not in FROZEN" in source
    net = strata.compile(str(spec))
    assert not net.decoder.h[0].mlp.up.weight.requires_grad and net.decoder.h[0].attn.qkv.weight.requires_grad
    assert "frozen" in strata.diagram(str(spec), after_passes=True).source      # diagram
    data = write(tmp_path / "a.txt", text())                                  # train
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in strata.compile(str(spec), passes=[]).state_dict().items()}
    run = strata.train(str(spec), data=str(data), out=tmp_path / "r", steps=3, eval_every=3)
    assert "freeze: " in capsys.readouterr().err
    after = run.model.state_dict()
    assert torch.equal(after["decoder.h.1.mlp.down.weight"], start["decoder.h.1.mlp.down.weight"])
    assert not torch.equal(after["decoder.h.1.attn.o.weight"], start["decoder.h.1.attn.o.weight"])


# Node attributes the built-in passes set (strata/passes/<name>.py reads and writes them).
MARKS = ("quant", "quant_scheme", "quant_bits", "qat", "group_size", "density", "prune_method", "low_rank",
         "rank", "lora", "fused", "sparse_2_4")


def test_no_stage_names_a_pass():
    """The stages that kept tables or branches keyed by pass names or by the marks
    passes leave (the generated file's tables, compress, training, diagram badges,
    cost) name none now: they ask the pass's hooks."""
    names = re.compile(rf"[\"'](?:{'|'.join(REGISTRY)})[\"']")
    marks = re.compile(rf"[\"'](?:{'|'.join(MARKS)})[\"']")
    files = ["strata/backends/torch/lower_passes.py", "strata/backends/torch/workflows/compress.py",
             "strata/backends/torch/workflows/training.py",
             "strata/compiler/cost.py"]
    assert [f for f in files if names.search((ROOT / f).read_text())] == []
    # diagrams read the distillation teacher (g.graph["distill"], the IR's record of it) and compile
    # runs the generated file's after-load functions by name (quantize, sparsify): no mark either
    assert [f for f in files + ["strata/backends/diagram/labels.py", "strata/backends/torch/compile.py"]
            if marks.search((ROOT / f).read_text())] == []
