"""Objectives, one module each, and the registry the rest of training asks.

    causal_lm.py   next-token prediction (lm_head on one stack)
    masked_lm.py   masked LM, + next-sentence prediction (mlm_head, nsp_head)
    seq2seq.py     source -> target (lm_head on a decoder with memory)
    classify.py    sequence classification (classifier on a pooled [B, d])
    distillation.py distillation: a teacher's logits, wrapped around any of them
    objective.py   what an objective declares; loss.py: its losses for one model

Adding an objective is one module (a subclass of `TextObjective` or
`ExampleObjective`) and one `register` line (tests/train/test_objective_recipe.py
does it in one file).  The choice, from the model's heads:

    >>> from strata.compiler import build_text
    >>> g = build_text("model m { stack s(ids) { "
    ...                "embedding(10, 8) as e; attention(2, causal=true); lm_head(tie=e) } }")
    >>> choose_objective(g).name
    'causal_lm'
"""

from __future__ import annotations

from strata.errors import UsageError
from strata.train.objectives.objective import ExampleObjective, Objective, TextObjective, heads_of
from strata.train.objectives.causal_lm import CausalLM
from strata.train.objectives.classify import Classify
from strata.train.objectives.loss import Loss
from strata.train.objectives.masked_lm import MaskedLM
from strata.train.objectives.seq2seq import Seq2Seq

__all__ = ["OBJECTIVES", "Objective", "TextObjective", "ExampleObjective", "Loss", "register",
           "objective_class", "objective_from_json", "choose_objective",
           "CausalLM", "MaskedLM", "Seq2Seq", "Classify"]

OBJECTIVES: dict[str, type[Objective]] = {}   # name -> class, in the order of preference


def register(cls: type[Objective]) -> type[Objective]:
    """Make an objective known to `strata train` (a class decorator too)."""
    if not cls.name or cls.name in OBJECTIVES and OBJECTIVES[cls.name] is not cls:
        raise ValueError(f"objective name {cls.name!r} is empty or taken")
    OBJECTIVES[cls.name] = cls
    return cls


register(CausalLM)
register(MaskedLM)
register(Seq2Seq)
register(Classify)


def objective_class(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise UsageError(f"unknown objective '{name}'; objectives: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def objective_from_json(d: dict) -> Objective:
    """The objective run.json records ({"name", "output", ...})."""
    return objective_class(d["name"]).from_json(d)


def choose_objective(g, override: str | None = None) -> Objective:
    """The objective a model trains with: the one its main output's head trains
    (else the first the heads allow), or `override` when the heads allow it."""
    heads = heads_of(g)
    found = {name: obj for name, cls in OBJECTIVES.items() if (obj := cls.detect(g, heads)) is not None}
    if override is not None:
        objective_class(override)
        if override not in found:
            have = ", ".join(found) or "none"
            raise UsageError(f"objective {override} needs a head this model lacks "
                             f"(it can train: {have})")
        chosen = found[override]
    else:
        main = heads.get("output", ("", "", 3))[0]
        chosen = next((o for o in found.values() if o.head == main), None) \
            or next(iter(found.values()), None)
        if chosen is None:
            hints = [cls.hint for cls in OBJECTIVES.values()]
            raise UsageError(f"model {g.graph['name']} has no head to train: end a stack with "
                             + ", ".join(hints[:-1]) + ", or " + hints[-1])
    chosen.check(g)
    return chosen
