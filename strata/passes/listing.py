"""`strata passes`: every pass with its options, from the registry.

    >>> "quantize(scheme" in describe_passes()
    True
"""

from __future__ import annotations

import textwrap

from strata.compiler.options import _literal_words
from strata.passes import REGISTRY

__all__ = ["describe_passes"]


def _default(f) -> str:
    if f.is_required():
        return "required"
    v = f.default
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def describe_passes() -> str:
    """One block per pass: its call form, what it does, its options."""
    out = []
    for name, cls in REGISTRY.items():
        fields = cls.options.model_fields
        sig = ", ".join(list(cls.positional) + [f"{k}=" for k in fields if k not in cls.positional])
        out.append(f"{name}({sig})")
        out += textwrap.wrap(" ".join(cls.doc().split()), 88, initial_indent="    ", subsequent_indent="    ")
        for k, f in fields.items():
            words = _literal_words(cls.options, k)
            kind = " | ".join(map(str, words)) if words else ""
            desc = f.description or ""
            line = f"      {k:<17} {_default(f):<10} {kind}{'  ' if kind and desc else ''}{desc}"
            out.append(line.rstrip())
        out.append("")
    out.append('Write them in a spec\'s passes { } section, or pass --pass \'quantize(int8_dynamic, on="mlp")\'')
    out.append("to compile, summary, diagram and compress; docs/passes.md says what each guarantees.")
    return "\n".join(out) + "\n"
