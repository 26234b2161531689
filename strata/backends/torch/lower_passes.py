"""The passes' marks on the IR, lowered into the generated file as tables and
steps a reader can see.  Each pass says what it needs in its own `lower` hook
(strata/passes/<name>.py); this module gives the hooks the means and puts what
they add in place:

    LOW_RANK = {"decoder.h.*.mlp.down": 64}          low_rank: build() factorizes
    LORA = {"decoder.h.*.attn.q": dict(rank=8, ...)} lora: build() adds adapters
    QUANTIZE = {"decoder.h.*.mlp.up": dict(scheme="int8_dynamic")}
                                                     quantize(model), after loading
    SPARSE_2_4 = ["decoder.h.0.mlp.up", ...]         sparsify(model), after loading

Tables of steps in build() come first, then those of the functions called once
weights are loaded, each group in the registry's order.  `*` stands for any
layer index (a pattern is collapsed only when every layer of the repeat carries
the same mark).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import strata.backends.torch.pysafe as pysafe
from strata.passes import REGISTRY, make_pass
from strata.passes._rewrite import fold_layers

__all__ = ["PassLowering", "lower_passes", "pass_lines"]


def pass_lines(g) -> list[str]:
    """One docstring line per applied pass: as the spec writes it, and where it is."""
    out = []
    for a in g.graph.get("applied", []):
        p = make_pass(a["name"], a["options"])
        out.append(f"    {pysafe.text(p.label())}  -- {p.where()}")
    return out


@dataclass
class PassLowering:
    """What the passes add to the generated file; the hooks' means to add it."""

    out: Any = None                                        # the emitter's output (runtime helpers)
    build_tables: list[str] = field(default_factory=list)  # module-level constants of build() steps
    build_steps: list[str] = field(default_factory=list)   # lines of build() after the model is made
    after_tables: list[str] = field(default_factory=list)  # constants of the after-load functions
    after: list[str] = field(default_factory=list)         # functions after build()

    @property
    def tables(self) -> list[str]:
        return self.build_tables + self.after_tables

    def __bool__(self) -> bool:
        return bool(self.tables)

    # ------------------------------------------------------------ for the hooks
    literal = staticmethod(pysafe.literal)   # a Python literal of a value, safe in source
    patterns = staticmethod(fold_layers)     # {node: mark} -> {pattern with *: mark}

    def table(self, name: str, comment: str, rows: dict[str, str]) -> str:
        """`NAME = {  # comment` with one `"key": value,` line per row."""
        lines = [f"{name} = {{  # {comment}"]
        lines += [f"    {pysafe.literal(k)}: {v}," for k, v in rows.items()]
        return "\n".join(lines) + "\n}\n"

    def runtime(self, helpers: tuple[str, ...]) -> str | None:
        """Mark the runtime helpers (strata/backends/torch/runtime_passes.py) to copy
        into the file, in order; the last one's name (None: none needed)."""
        for h in helpers:
            self.out.runtime(h)
        return helpers[-1] if helpers else None

    def at_build(self, table: str, step: str, helpers: tuple[str, ...] = ()) -> None:
        """A table and lines of build() (`{fn}` in `step` names the last helper)."""
        fn = self.runtime(helpers)
        self.build_tables.append(table)
        self.build_steps.append(step.replace("{fn}", fn) if fn else step)

    def after_load(self, table: str, function: str, helpers: tuple[str, ...] = ()) -> None:
        """A table and a function to call once weights are loaded (`{fn}` as above)."""
        fn = self.runtime(helpers)
        self.after_tables.append(table)
        self.after.append(function.replace("{fn}", fn) if fn else function)


def lower_passes(g, out) -> PassLowering:
    """Tables and steps for the passes applied to `g`, helpers marked on `out`."""
    low = PassLowering(out)
    applied = {a["name"] for a in g.graph.get("applied", [])}
    for name, cls in REGISTRY.items():
        if name in applied:
            cls.lower(g, low)
    return low
