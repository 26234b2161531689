"""What a model's embeddings and positions allow its data (no torch here).

    >>> from strata.compiler import build_text
    >>> model_limits(build_text("model m { stack s(ids) { embedding(10, 8) as e; "
    ...                         "position(learned, 16); attention(2, causal=true); lm_head(tie=e) } }"))
    (10, 16)
"""

from __future__ import annotations

from strata.errors import UsageError

__all__ = ["model_limits"]


def model_limits(g) -> tuple[int, int | None]:
    """(vocabulary every token embedding and vocabulary head holds, longest
    sequence its positions allow or None)."""
    vocab, ctx = [], []
    for c in g.graph.components.values():
        o = c["options"]
        if c["kind"] == "embedding":
            vocab.append(o["vocab"])
        elif c["kind"] in ("lm_head", "mlm_head") and o.get("vocab"):
            vocab.append(o["vocab"])
        elif c["kind"] == "position" and o.get("ctx") and o["kind"] in ("learned", "sinusoidal"):
            ctx.append(o["ctx"])
    if not vocab:
        raise UsageError(f"model {g.graph['name']} has no token embedding to train")
    return min(vocab), (min(ctx) if ctx else None)
