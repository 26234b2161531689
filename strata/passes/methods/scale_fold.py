"""Where a per-input-channel scale s can be moved out of a linear exactly: into
the norm that feeds it.  A norm's output y = x_hat * w (+ b) divided by s,
times linears whose weights are multiplied by s column-wise, computes exactly
what it did before:  (W diag(s)) (y / s) = W y.

A norm qualifies when every node reading it is a plain linear whose weight is
its own (not tied, no adapters, not factored): q / k / v after the attention
norm, gate / up after the MLP norm (and all of them under a parallel block).
Anything else reading the norm (a residual, a head tied to the embedding)
would see the divided output, so such a linear is skipped, with the reason.

The same holds between two linears when the second's input channels are the
first's output channels, each passed on linearly (AWQ scales these too):
down after up in a gated MLP (y = act(gate) * up, linear in up's rows) and
o after v in attention with as many key/value heads as heads (softmax(q k) v
mixes v's rows, never its channels).  Up's / v's rows (and bias) are divided
by s, down's / o's columns multiplied by it.

In code::

    groups, skipped = norm_groups(g, ["decoder.h.0.attn.q", ...], state)
    pairs = linear_pairs(g, ["decoder.h.0.mlp.down", ...], state)  # {down: up}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.passes.lora import LoRA
from strata.passes.low_rank import LowRank

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["apply_pair", "apply_scale", "linear_pairs", "norm_groups", "unpaired_reason"]


def _foldable(g, n, state) -> bool:
    d = g.nodes[n]
    return (d["op"] == "linear" and f"{n}.weight" in state and not d.get("tied")
            and not LoRA.adapter(d["attrs"]) and not LowRank.factor(d["attrs"]))


def norm_groups(g: "nx.MultiDiGraph", nodes: list[str], state: dict
                ) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({norm: every linear reading it}, {linear: why its scale cannot be folded})
    for the linears `nodes`."""
    groups: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    for n in nodes:
        preds = list(g.predecessors(n))
        norm = preds[0] if len(preds) == 1 else None
        if norm is None or g.nodes[norm].op != "norm":
            skipped[n] = "its input is not a norm's output (no scale to fold into)"
        elif f"{norm}.weight" not in state:
            skipped[n] = "the norm before it has no weight"
        elif not all(_foldable(g, r, state) for r in g.successors(norm)):
            skipped[n] = "the norm before it also feeds something other than plain linears"
        elif norm not in groups:
            groups[norm] = sorted(set(g.successors(norm)))
    return groups, skipped


def apply_scale(g, state: dict, norm: str, linears: list[str], s) -> None:
    """Multiply the linears' weight columns by s [in] and divide the norm's
    weight (and bias) by it, in `state` (in place); a unit-offset norm
    (y = x_hat * (1 + w)) has its offset kept."""
    offset = 1.0 if g.nodes[norm].attrs.get("unit_offset") else 0.0
    w = state[f"{norm}.weight"]
    state[f"{norm}.weight"] = ((w.double() + offset) / s - offset).to(w.dtype)
    if f"{norm}.bias" in state:
        b = state[f"{norm}.bias"]
        state[f"{norm}.bias"] = (b.double() / s).to(b.dtype)
    for n in linears:
        W = state[f"{n}.weight"]
        state[f"{n}.weight"] = (W.double() * s[None, :]).to(W.dtype)


def unpaired_reason(g, n: str) -> str | None:
    """Why `n`, reading an attention's output, has no producer to fold a scale
    into (None when that is not why): under GQA v's rows serve several heads."""
    preds = list(g.predecessors(n))
    if len(preds) == 1 and g.nodes[preds[0]]["op"] == "attention":
        a = g.nodes[preds[0]]["attrs"]
        if a.get("kv_heads", a.get("heads")) != a.get("heads"):
            return (f"its input is attention with {a.get('kv_heads')} key/value heads for {a.get('heads')} "
                    "heads: each row of v serves several heads, so no scale folds into it")
    return None


def _producer(g, n: str) -> str | None:
    """The linear whose output channels are `n`'s input channels one for one, or None."""
    preds = list(g.predecessors(n))
    if len(preds) != 1 or list(g.successors(preds[0])) != [n]:
        return None
    p, d = preds[0], g.nodes[preds[0]]
    if d["op"] == "mul":
        role = "up"
    elif d["op"] == "attention" and d["attrs"].get("kv_heads", d["attrs"].get("heads")) == d["attrs"].get("heads"):
        role = "v"
    else:
        return None
    ups = [u for u in g.predecessors(p) if g.nodes[u].op == "linear" and g.nodes[u].attrs.get("role") == role]
    if len(ups) != 1 or list(g.successors(ups[0])) != [p]:
        return None
    return ups[0]


def linear_pairs(g: "nx.MultiDiGraph", nodes: list[str], state: dict) -> dict[str, str]:
    """{consumer: producer} for the linears `nodes` whose input scale folds into
    the linear before them (down <- up, o <- v)."""
    pairs = {}
    for n in nodes:
        p = _producer(g, n) if _foldable(g, n, state) else None
        if p is not None and _foldable(g, p, state) and \
                state[f"{p}.weight"].shape[0] == state[f"{n}.weight"].shape[1]:
            pairs[n] = p
    return pairs


def apply_pair(state: dict, producer: str, consumer: str, s) -> None:
    """Divide the producer's rows (and bias) by s [channels], multiply the
    consumer's columns by it, in `state` (in place)."""
    W = state[f"{producer}.weight"]
    state[f"{producer}.weight"] = (W.double() / s[:, None]).to(W.dtype)
    if f"{producer}.bias" in state:
        b = state[f"{producer}.bias"]
        state[f"{producer}.bias"] = (b.double() / s).to(b.dtype)
    W = state[f"{consumer}.weight"]
    state[f"{consumer}.weight"] = (W.double() * s[None, :]).to(W.dtype)
