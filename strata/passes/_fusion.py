"""What the two fusion passes share: the record of what was fused and the
exact weight transform, concatenation one way and splitting back.

    record = {"fused": {"a.qkv": {"parts": ["a.q", "a.k", "a.v"], "sizes": [64, 16, 16]}},
              "adapted": ["b.q", ...]}   # projections with LoRA adapters, left unfused
    convert: a.q.weight [64, d], a.k.weight [16, d], a.v.weight [16, d] -> a.qkv.weight [96, d]
    revert:  a.qkv.weight [96, d] -> the three parts (bias likewise)
"""

from __future__ import annotations

from strata.passes.lora import left_alone
from strata.passes.pass_base import Pass

SUFFIXES = ("weight", "bias")


class FusionPass(Pass):
    """A pass that stacks linears reading one tensor into one matmul."""

    what = "projections"

    def convert(self, record: dict, state: dict, ctx) -> dict:
        import torch  # lazy: torch

        out = dict(state)
        for node, f in record["fused"].items():
            for suffix in SUFFIXES:
                keys = [f"{p}.{suffix}" for p in f["parts"]]
                if all(k in out for k in keys):
                    out[f"{node}.{suffix}"] = torch.cat([out.pop(k) for k in keys], dim=0)
        return out

    def revert(self, record: dict, state: dict) -> dict:
        out = dict(state)
        for node, f in record["fused"].items():
            for suffix in SUFFIXES:
                t = out.pop(f"{node}.{suffix}", None)
                if t is None:
                    continue
                for part, piece in zip(f["parts"], t.split(f["sizes"], dim=0)):
                    out[f"{part}.{suffix}"] = piece.clone()
        return out

    def report(self, record: dict) -> str:
        n = len(record["fused"])
        parts = sum(len(f["parts"]) for f in record["fused"].values())
        # the adapters are per projection (A [r, in], B [out, r] each): one stacked matmul holds none
        return (f"{self.name}: fused {parts} {self.what} into {n} matmul{'s' * (n != 1)}"
                + left_alone(record.get("adapted", []), "a fused matmul holds no adapters of its parts"))

    def details(self, record: dict) -> dict:
        """The projections left unfused for their adapters, for report.json."""
        return {"adapted": record["adapted"]} if record.get("adapted") else {}

    @classmethod
    def badges(cls, attrs: dict) -> list[str]:
        return [f"fused {'+'.join(attrs['fused'])}"] if attrs.get("fused") else []
