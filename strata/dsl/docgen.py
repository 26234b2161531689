"""Generate the component / pass / train reference of docs/language.md from the
registry, so the documentation cannot drift from the schemas.

    python -m strata.dsl.docgen            # print the reference
    python -m strata.dsl.docgen --write    # refresh it inside docs/language.md
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

from pydantic import BaseModel

from strata.dsl.registry import COMPONENTS, PASSES, TrainConfig

BEGIN, END = "<!-- registry:begin -->", "<!-- registry:end -->"


def _type(ann) -> str:
    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in typing.get_args(ann))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        parts = [_type(a) for a in typing.get_args(ann) if a is not type(None)]
        return " \\| ".join(parts) + (" \\| none" if type(None) in typing.get_args(ann) else "")
    if origin is tuple:
        return "(" + ", ".join(_type(a) for a in typing.get_args(ann)) + ")"
    if origin is typing.Annotated:
        return _type(typing.get_args(ann)[0])
    name = getattr(ann, "__name__", str(ann))
    return {"PositiveInt": "int > 0", "PositiveFloat": "float > 0", "str": "name"}.get(name, name)


def _options(schema: type[BaseModel], positional: tuple[str, ...]) -> list[str]:
    rows = ["| option | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, f in schema.model_fields.items():
        ann = _type(f.annotation)
        for m in f.metadata:  # PositiveInt & co. arrive as constraints
            if getattr(m, "gt", None) == 0:
                ann = ann.replace("int", "int > 0", 1).replace("float", "float > 0", 1)
        if f.is_required():
            default = "required"
        elif f.default_factory is not None:
            default = str(f.default_factory())
        else:
            v = f.default
            default = "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        pos = f" (positional {positional.index(name) + 1})" if name in positional else ""
        rows.append(f"| `{name}`{pos} | {ann} | {default} | {f.description or ''} |")
    return rows


def reference() -> str:
    out = ["### Components", ""]
    for c in COMPONENTS.values():
        sig = ", ".join(c.positional)
        doc = " ".join(c.doc.split())
        out += [f"#### `{c.name}" + (f"({sig})" if sig else "") + "`", "",
                f"{doc} Default module name: `{c.default_name}`.", ""]
        out += _options(c.options, c.positional) + [""]
    out += ["### Passes", ""]
    for p in PASSES.values():
        out += [f"#### `{p.name}`", "", " ".join(p.doc.split()), ""] + _options(p.options, p.positional) + [""]
    out += ["### Train settings", "", (TrainConfig.__doc__ or "").strip(), ""]
    out += _options(TrainConfig, ()) + [""]
    return "\n".join(out)


def refresh(path: Path) -> bool:
    """Rewrite the generated part of `path`; True if it changed."""
    text = path.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + reference() + "\n" + text[end:]
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    if "--write" in sys.argv:
        doc = Path(__file__).resolve().parents[2] / "docs" / "language.md"
        print("updated" if refresh(doc) else "up to date", doc)
    else:
        print(reference())
