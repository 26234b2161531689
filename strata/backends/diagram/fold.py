"""Folding repeats: which instance of a repeat is drawn for each IR node.

A folded repeat is drawn once per variant (instances whose scopes compute the
same thing, `ir.repeat_groups`): the nodes of `decoder.h.7` are drawn as those
of `decoder.h.0`, which stands for all 12.  Unfolded, every instance stands for
itself.

    >>> from strata.compiler import build_text
    >>> g = build_text('''model m { stack s(ids) { embedding(10, 4)
    ...   repeat(3) { residual { layernorm; mlp(8) } } as h; lm_head(10) } }''')
    >>> fold = Fold(g, unfold=False)
    >>> fold("s.h.2.mlp.up"), fold.count["s.h.0"]
    ('s.h.0.mlp.up', 3)
"""

from __future__ import annotations

import networkx as nx

from strata.compiler import ir


class Fold:
    """Maps the nodes of repeat instances onto the instance drawn for them."""

    def __init__(self, g: nx.MultiDiGraph, unfold: bool, groups: list[dict] | None = None):
        """groups: `ir.repeat_groups(g)` when the caller has it already (a 70B
        model's signatures take ~0.1 s to compute)."""
        self.rep: dict[str, str] = {}       # instance path -> drawn instance path
        self.group: dict[str, str] = {}     # instance path -> repeat group path
        self.count: dict[str, int] = {}     # drawn instance -> how many it stands for
        self.uniform: dict[str, bool] = {}  # group -> one variant
        self.index: dict[str, int] = {}     # instance -> its position in the repeat
        self.members: dict[str, list[str]] = {}  # drawn instance -> the instances it stands for
        self.first: dict[str, str] = {}     # group -> its first instance
        for r in ir.repeat_groups(g) if groups is None else groups:
            self.uniform[r["path"]] = r["uniform"]
            self.first[r["path"]] = r["instances"][0]
            self.index.update((inst, i) for i, inst in enumerate(r["instances"]))
            for variant in r["variants"]:
                self.members[variant[0]] = variant
                for inst in variant:
                    self.group[inst] = r["path"]
                    self.rep[inst] = inst if unfold else variant[0]
                self.count[variant[0]] = 1 if unfold else len(variant)
            if unfold:
                for inst in r["instances"]:
                    self.count[inst] = 1
        self._cache: dict[str, str] = {}

    def __call__(self, n: str) -> str:
        """The path drawn for `n`: every repeat instance on its path replaced by
        the instance drawn for it (outermost first, so nested repeats fold too)."""
        hit = self._cache.get(n)
        if hit is not None:
            return hit
        out = n
        i = 0
        while True:
            i = out.find(".", i + 1)
            prefix = out if i < 0 else out[:i]
            r = self.rep.get(prefix)
            if r is not None and r != prefix:
                out = r + out[len(prefix):]
                i = len(r)
            if i < 0:
                break
        self._cache[n] = out
        return out

    def instances(self, n: str) -> dict[str, str]:
        """repeat group -> the instance of it that holds n."""
        out: dict[str, str] = {}
        if not self.group:
            return out
        i = n.find(".")
        while True:
            p = n if i < 0 else n[:i]
            group = self.group.get(p)
            if group is not None:
                out[group] = p
            if i < 0:
                return out
            i = n.find(".", i + 1)

    def crosses(self, u: str, v: str) -> bool:
        """u -> v is the layer-to-layer chain of a repeat that folding turns into a
        loop (same drawn instance) or a backward edge (to an earlier variant)."""
        iu = self.instances(u)
        if not iu:
            return False
        iv = self.instances(v)
        for g, inst in iu.items():
            if g in iv and iv[g] != inst:
                return self.index[self.rep[inst]] >= self.index[self.rep[iv[g]]]
        return False
