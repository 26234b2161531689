"""What a model's embeddings and positions allow its data (no torch here).

    >>> from strata.compiler import build_text
    >>> model_limits(build_text("model m { stack s(ids) { embedding(10, 8) as e; "
    ...                         "position(learned, 16); attention(2, causal=true); lm_head(tie=e) } }"))
    (10, 16)
"""

from __future__ import annotations

from strata.compiler.positions import position_limits
from strata.errors import UsageError

__all__ = ["model_limits", "step_memory"]


def model_limits(g) -> tuple[int, int | None]:
    """(vocabulary every token embedding and vocabulary head holds, longest
    sequence its positions allow or None)."""
    vocab, ctx = [], [p.ctx for p in position_limits(g)]
    for c in g.graph.components.values():
        o = c["options"]
        if c["kind"] == "embedding":
            vocab.append(o["vocab"])
        elif c["kind"] in ("lm_head", "mlm_head") and o.get("vocab"):
            vocab.append(o["vocab"])
    if not vocab:
        raise UsageError(f"model {g.graph['name']} has no token embedding to train")
    return min(vocab), (min(ctx) if ctx else None)


def step_memory(g, batch: int, context: int, world: int = 1) -> int:
    """Bytes one training step on one process needs at the least: the weights'
    training state (float32 weights, gradients and AdamW's two moments: 16 bytes a
    parameter), and one micro-batch's token ids and embedded tokens (int64 ids,
    float32 states of the widest token embedding).  Every real step needs more, so
    a step this estimate does not fit cannot fit (`batch = 10**9` is refused before
    it is allocated).

        >>> from strata.compiler import build_text
        >>> step_memory(build_text("model m { stack s(ids) { embedding(10, 8) } }"), batch=4, context=16)
        3840
    """
    dims = [c["options"]["dim"] for c in g.graph.components.values() if c["kind"] == "embedding"]
    rows = -(-batch // world)  # this process's share of the batch
    return 16 * g.graph["parameters"] + rows * context * (8 + 4 * max(dims, default=0))
