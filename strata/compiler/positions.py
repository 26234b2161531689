"""Where a model's positions end: the position components made for a longest
sequence, `ctx` (learned: a table of ctx rows, past which there is no row to
read; sinusoidal: computed for any position, but trained within ctx).  One rule
for every reader: the limits training and generation keep to
(strata.train.limits) and the check the generated model's `generate` makes
(strata.backends.torch.model).

    >>> from strata.compiler import build_text
    >>> position_limits(build_text("model m { stack s(ids) { embedding(10, 8) as e; "
    ...                            "position(learned, 16) as wpe; lm_head(tie=e) } }"))
    [PositionLimit(path='s.wpe', stack='s', kind='learned', ctx=16)]
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PositionLimit", "position_limits"]


@dataclass(frozen=True)
class PositionLimit:
    path: str    # the position component (`decoder.wpe`)
    stack: str   # the stack it is in
    kind: str    # learned | sinusoidal
    ctx: int     # the longest sequence it is made for


def position_limits(g) -> list[PositionLimit]:
    """The learned and sinusoidal position components of IR `g` with their ctx
    (rotary, ALiBi, relative and none set no limit)."""
    out = []
    for path, c in g.graph.components.items():
        o = c["options"]
        if c["kind"] == "position" and o.get("ctx") and o["kind"] in ("learned", "sinusoidal"):
            out.append(PositionLimit(path, path.split(".")[0], o["kind"], o["ctx"]))
    return out
