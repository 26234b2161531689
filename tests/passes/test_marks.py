"""A pass's marks on the IR (attrs it adds to a node) are read by name only in
the pass's own file; every other stage (the emitter, packed storage, QAT,
recovery, export, the other passes) calls the pass's class methods
(Quantize.scheme_of, LowRank.factor, LoRA.adapter, Pass.carried / holds)."""

from __future__ import annotations

import re
from pathlib import Path

from strata.compiler import build_text
from strata.passes import apply_passes
from strata.passes.pass_base import carried_marks, held_by
from strata.passes.low_rank import LowRank
from strata.passes.lora import LoRA
from strata.passes.quantize import Quantize

ROOT = Path(__file__).resolve().parents[2]
# mark -> the pass (module name under strata/passes/) that owns it
OWNER = {"quant": "quantize", "quant_scheme": "quantize", "quant_bits": "quantize", "group_size": "quantize",
         "qat": "quantize", "lora": "lora", "low_rank": "low_rank", "rank": "low_rank",
         "density": "prune", "prune_method": "prune"}
READ = re.compile(r"""attrs(?:"\]|'\])?\s*(?:\.get\(|\[)\s*["'](%s)["']""" % "|".join(OWNER))


def mark_reads(text: str, owner_of_file: str) -> list[str]:
    return [m[1] for m in READ.finditer(text) if OWNER[m[1]] != owner_of_file]


def test_marks_are_read_only_by_their_pass():
    found = [f"{p.relative_to(ROOT)}:{i}: {key}"
             for p in sorted((ROOT / "strata").rglob("*.py"))
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             for key in mark_reads(line, p.stem)]
    assert not found, "read these through the owning pass's class methods:\n" + "\n".join(found)


def test_the_check_sees_a_read():
    assert mark_reads('q = d["attrs"].get("quant_scheme")', "emit") == ["quant_scheme"]
    assert mark_reads('q = d["attrs"].get("quant_scheme")', "quantize") == []


SPEC = """model m {
  d = 64
  block layer { residual { layernorm; attention(2, causal=true) } residual { layernorm; mlp(4 * d) } }
  stack decoder(tokens) { embedding(50, d) as wte; repeat(2) layer as h; layernorm; lm_head(tie=wte) }
}
"""


def test_the_hooks_read_the_marks():
    g = apply_passes(build_text(SPEC + 'passes { low_rank(4, on="decoder.h.*.mlp.down") '
                                'quantize(int4_weight, on="decoder.h.*.mlp.up", group_size=32) '
                                'lora(2, on="decoder.h.*.attn.q") }'))
    a, up, q = (g.nodes[n].attrs for n in ("decoder.h.0.mlp.down.a", "decoder.h.0.mlp.up", "decoder.h.0.attn.q"))
    assert LowRank.factor(a) == "a" and LowRank.factor(up) is None
    assert Quantize.scheme_of(up) == ("int4_weight", 32) and Quantize.scheme_of(a) is None
    assert held_by(up) == "quantized" and held_by(a) is None
    assert LoRA.adapter(q)["rank"] == 2 and LoRA.adapter(up) is None
    assert {"quant_scheme", "density"} <= carried_marks()
