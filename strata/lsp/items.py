"""One completion item, as plain data (the server makes the LSP type of it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Item:
    """label, kind (component, block, option, value, variable, pass, keyword),
    a one-line detail, documentation, and the text to insert."""

    label: str
    kind: str
    detail: str = ""
    doc: str = ""
    insert: str | None = None
