"""Which objective a model trains with, read from its heads (no torch here).

    lm_head on one stack            causal_lm   next-token prediction
    lm_head on a decoder with memory seq2seq    source -> target
    mlm_head (+ nsp_head branch)     mlm        masked LM (+ next-sentence prediction)
    classifier on a pooled [B, d]    classify   sequence classification

The main output decides; `objective=` picks another head the model has.

    >>> from strata.compiler import build_text
    >>> g = build_text("model m { stack s(ids) { "
    ...                "embedding(10, 8) as e; attention(2, causal=true); lm_head(tie=e) } }")
    >>> choose_objective(g).name
    'causal_lm'
"""

from __future__ import annotations

from dataclasses import dataclass

from strata.errors import Diagnostic, SpecError, UsageError

__all__ = ["OBJECTIVES", "Objective", "choose_objective", "model_limits"]

OBJECTIVES = ("causal_lm", "mlm", "seq2seq", "classify")


@dataclass(frozen=True)
class Objective:
    name: str                 # one of OBJECTIVES
    output: str = "output"    # the model output the loss reads
    nsp: str | None = None    # output of the nsp_head (mlm + next-sentence prediction)
    classes: int | None = None

    @property
    def uses(self) -> set[str]:
        return {self.output} | ({self.nsp} if self.nsp else set())


def _heads(g) -> dict[str, tuple[str, str, int]]:
    """output name -> (component kind, component path, rank of the head's input)."""
    comps = g.graph["components"]
    out = {}
    for name, node in g.graph["outputs"].items():
        path = g.nodes[node].get("component") or node
        kind = comps.get(path, {}).get("kind", g.nodes[node]["op"])
        ranks = [len(d["shape"]) for _, _, d in g.in_edges(node, data=True) if d.get("shape")]
        out[name] = (kind, path, ranks[0] if ranks else 3)
    return out


def _noncausal(g, stack: str | None = None) -> str | None:
    for path, c in g.graph["components"].items():
        if c["kind"] == "attention" and not c["options"].get("causal") \
                and (stack is None or path.startswith(stack + ".")):
            return path
    return None


def _located(g, path: str, message: str, hint: str) -> SpecError:
    span = g.graph["components"][path].get("span")
    return SpecError([Diagnostic(message, span, hint)])


def choose_objective(g, override: str | None = None) -> Objective:
    heads = _heads(g)
    stacks = g.graph["stacks"]
    seq2seq = len(stacks) > 1 and any(s["memory"] for s in stacks)
    found: dict[str, Objective] = {}
    nsp = next((n for n, (k, _, _) in heads.items() if k == "nsp_head"), None)
    for name, (kind, path, rank) in heads.items():
        if kind == "lm_head":
            obj = "seq2seq" if seq2seq else "causal_lm"
            found.setdefault(obj, Objective(obj, output=name))
        elif kind == "mlm_head":
            found.setdefault("mlm", Objective("mlm", output=name, nsp=nsp))
        elif kind == "classifier" and rank == 2:
            classes = g.graph["components"][path]["options"]["classes"]
            found.setdefault("classify", Objective("classify", output=name, classes=classes))
    if override is not None:
        if override not in OBJECTIVES:
            raise UsageError(f"unknown objective '{override}'; objectives: {', '.join(OBJECTIVES)}")
        if override not in found:
            have = ", ".join(found) or "none"
            raise UsageError(f"objective {override} needs a head this model lacks "
                             f"(it can train: {have})")
        chosen = found[override]
    else:
        main = heads.get("output", ("", "", 3))[0]
        order = {"lm_head": ("seq2seq", "causal_lm"), "mlm_head": ("mlm",),
                 "classifier": ("classify",)}.get(main, ())
        chosen = next((found[o] for o in order if o in found), None) \
            or next((found[o] for o in OBJECTIVES if o in found), None)
        if chosen is None:
            raise UsageError(f"model {g.graph['name']} has no head to train: end a stack with "
                             "lm_head (causal LM, seq2seq), mlm_head (masked LM, + nsp_head in a "
                             "branch for next-sentence prediction), or classifier after a pooler")
    if chosen.name == "causal_lm" and (bad := _noncausal(g)):
        raise _located(g, bad, f"causal_lm: the attention at {bad} is not causal, so the model "
                       "would see the tokens it is asked to predict",
                       "give it causal=true, or train a masked LM with mlm_head")
    if chosen.name == "seq2seq" and (bad := _noncausal(g, stacks[-1]["name"])):
        raise _located(g, bad, f"seq2seq: the decoder's self-attention at {bad} is not causal",
                       "give it causal=true")
    return chosen


def model_limits(g) -> tuple[int, int | None]:
    """(vocabulary every token embedding and vocabulary head holds, longest
    sequence its positions allow or None)."""
    vocab, ctx = [], []
    for c in g.graph["components"].values():
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
