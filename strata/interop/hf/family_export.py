"""Export a strata spec + weights as a Hugging Face folder of one of the families
`import-hf` knows: the importer run backwards.

    spec ──match (which family config re-imports to this very spec?)──► config.json
    strata tensors ──family.mapping, inverted (weights.unconvert)──► model.safetensors

A spec *is* a family when some config of that family imports to the same spec
(the same statements, options and variables; comments aside).  The config is
found by search, not by a second table of rules: the spec's variables fill the
keys the family module names in `EXPORT_KEYS`, and each key of its
`EXPORT_CHOICES` takes the candidate that brings the re-imported spec closest to
the target (greedy, one key at a time; every option changes its own lines).
The importer stays the one place that says what a config key means; a spec no
config reproduces is not that family, and export says which lines differ.
Never imports transformers; torch only where tensors are handled.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from strata.dsl import ast as A
from strata.dsl.formatter import format_spec
from strata.interop.hf.config import NULL, Config, HFImportError
from strata.interop.hf.families import FAMILIES, spec_text
from strata.interop.hf.checkpoint_reader import unconvert

MAX_TRIES = 2000
ROUNDS = 3  # re-imports one match may run (each is a few milliseconds)


@dataclass
class FamilyMatch:
    family: object          # the family module (strata.interop.hf.gpt2, ...)
    config: dict            # config.json, without transformers' own bookkeeping
    layout: dict            # the family's layout: heads, tied, checkpoint prefix


def _canonical(text: str) -> list[str]:
    """A spec's model, formatted, comments dropped: what two specs must share."""
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def model_text(model) -> str:
    """The formatted text of one model definition (an AST `ModelDef`)."""
    return format_spec(A.SpecFile(models=[model.model_copy(update={"comment": None})]))


def rotary_facts(g) -> dict:
    """The rotary base and fraction of the first attention (None when unrotated)."""
    for _, a in g.nodes(data=True):
        if a.get("op") == "attention" and a.attrs.get("rope"):
            rope, hd = a.attrs["rope"], a.attrs["head_dim"]
            return {"base": float(rope["base"]), "fraction": rope["dims"] / hd}
    return {"base": None, "fraction": None}


def model_facts(g) -> dict:
    """What a family's EXPORT_CHOICES may read beside the variables: the rotary facts,
    and the class counts of the classifiers (a literal in the spec, `classifier(3)`,
    that a config says in `num_labels`)."""
    classes = sorted({c["options"]["classes"] for c in g.graph.components.values()
                      if c["kind"] == "classifier"})
    return {**rotary_facts(g), "classes": classes}


class _FloatKeys(Config):
    """A Config that notes which top-level keys the importer reads as numbers
    (`float`, `probability`): export writes them as floats (3.0, not the 3 a
    spec's arithmetic gives), as transformers' typed configs insist."""

    def __init__(self, raw, where: str = ""):
        super().__init__(raw, where)
        self.floats: set[str] = set()

    def float(self, *names, **kw):
        self.floats.update(names)
        return super().float(*names, **kw)


def _as_floats(fam, config: dict, lay: dict) -> dict:
    cfg = _FloatKeys(config)
    spec_text(cfg, lay)
    cfg.floats -= set(getattr(fam, "EXPORT_INTS", ()))  # numbers the importer reads but HF types int
    return {k: float(v) if k in cfg.floats and isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in config.items()}


def _reimport(fam, config: dict) -> tuple[list[str] | None, dict | None]:
    try:
        cfg = Config(config)
        lay = export_layout(fam, cfg)
        return _canonical(spec_text(cfg, lay)), lay
    except HFImportError:
        return None, None


def _distance(got: list[str] | None, want: list[str]) -> int:
    if got is None:
        return 1 << 30
    sm = difflib.SequenceMatcher(a=got, b=want, autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in sm.get_opcodes() if tag != "equal")


def export_layout(fam, cfg: Config) -> dict:
    """The family's layout as transformers' `save_pretrained` writes it: a model
    with a head keeps its base model under the family's prefix."""
    lay = fam.layout(cfg, None)
    prefixes = getattr(fam, "EXPORT_PREFIX", None)  # (with a head, the base model alone)
    if prefixes is not None and "prefix" in lay:
        arch = cfg.architecture or ""
        base = arch.endswith("Model") and not arch.endswith("LMHeadModel")
        lay["prefix"] = prefixes[1] if base else prefixes[0]
    lay.update(getattr(fam, "EXPORT_LAYOUT", {}))
    return lay


def match_family(model, variables: dict, facts: dict) -> FamilyMatch | str:
    """The family config that imports to exactly this model, or why there is none."""
    want = _canonical(model_text(model))
    facts = {**facts, "model_type": model.name}
    fams = [f for f in FAMILIES if model.name in f.MODEL_TYPES]
    if not fams:
        return (f"model {model.name!r} is not named after a family import-hf knows "
                f"({', '.join(t for f in FAMILIES for t in f.MODEL_TYPES)})")
    fam = fams[0]
    keys = fam.EXPORT_KEYS
    unknown = sorted(set(variables) - set(keys) - set(getattr(fam, "EXPORT_FREE", ())))
    if unknown:
        return f"variable(s) {', '.join(unknown)} have no {model.name} config key"
    config = {"model_type": model.name}
    config.update({keys[v]: val for v, val in variables.items() if v in keys})
    # a key whose variable the spec lacks: the family default, or 0 (a dropout the
    # import leaves out when it is 0), or null (an option the config turns off)
    choices = {k: [None, 0.0, NULL] for v, k in keys.items() if v not in variables}
    choices.update(fam.EXPORT_CHOICES)
    tries = 0
    for _ in range(ROUNDS):  # options interact (a head and its tie): go round until nothing moves
        before = dict(config)
        for key, candidates in choices.items():
            options = candidates(variables, facts) if callable(candidates) else candidates
            scored = []
            for value in options:
                trial = dict(config)
                pairs = zip(key, value) if isinstance(key, tuple) else [(key, value)]
                for k, val in pairs:  # a tuple of keys takes a tuple of values together
                    if val is None:
                        trial.pop(k, None)
                    else:
                        trial[k] = None if val is NULL else val
                got, _ = _reimport(fam, trial)
                tries += 1
                scored.append((_distance(got, want), len(scored), trial))
                if tries > MAX_TRIES:
                    break
            if scored:
                config = min(scored, key=lambda s: s[:2])[2]
        if config == before or _reimport(fam, config)[0] == want:
            break
    got, lay = _reimport(fam, config)
    if got != want:
        diff = [ln.strip() for ln in difflib.unified_diff(got or [], want, lineterm="", n=0)
                if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
        return (f"no {model.name} config gives this spec (closest differs at: "
                f"{'; '.join(diff[:3])}{' ...' if len(diff) > 3 else ''})")
    return FamilyMatch(fam, _as_floats(fam, config, lay), lay)


def hf_tensors(match: FamilyMatch, tensors: dict) -> dict:
    """strata's state dict -> the family's own tensor names and layouts."""
    m = match.family.mapping(Config(match.config), match.layout, set())
    out = unconvert(tensors, m)
    # tensors transformers saves twice (one Parameter under two names): the copy too
    copies = getattr(match.family, "export_copies", None)
    for theirs, source in (copies(match.config) if copies else {}).items():
        if source in out:
            out[theirs] = out[source].clone()
    return out


def architecture(match: FamilyMatch) -> str:
    """The class name config.json's `architectures` records."""
    arch = match.config.get("architectures")
    if arch:
        return arch[0]
    return next(iter(match.family.ARCHITECTURES))
