"""Tables a lower layer reads and a higher layer fills: today one, PASSES
(pass name -> its option schema), which the dsl and the compiler read to check
a spec's `passes { }` section, `strata schema` and the reference, while the
pass classes live two layers up in strata/passes/ (they rewrite the compiler's
graphs).

strata.passes registers every pass here as it is imported.  The first lookup
runs the loaders first: strata/__init__.py — which Python runs before any
strata module — adds the one that imports strata.passes.  So no lower layer
imports a higher one, a lookup works whichever module a program imported
first, and `strata check` pays for importing the passes only when a spec names
one.  Nothing but the standard library is imported here (it sits below the dsl).

    >>> PASSES["quantize"].positional
    ('scheme',)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PASSES", "PassSpec", "Plugins"]


@dataclass(frozen=True)
class PassSpec:
    """What a spec may write of a pass: its name, options schema (a pydantic
    model, strata.components.component_base.Options) and positional options."""

    name: str
    options: Any
    positional: tuple[str, ...]

    @property
    def doc(self) -> str:
        return (self.options.__doc__ or "").strip()


class Plugins(Mapping):
    """name -> entry, filled by `register`; `loaders` run once, at the first lookup."""

    def __init__(self) -> None:
        self._table: dict[str, Any] = {}
        self._loaders: list[Callable[[], None]] = []

    def register(self, name: str, entry: Any) -> None:
        self._table[name] = entry

    def unregister(self, name: str) -> None:
        self._table.pop(name, None)

    def add_loader(self, load: Callable[[], None]) -> None:
        self._loaders.append(load)

    def _load(self) -> dict[str, Any]:
        while self._loaders:  # popped first: a loader that looks up an entry does not run twice
            self._loaders.pop(0)()
        return self._table

    def __getitem__(self, name: str) -> Any:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


PASSES: Mapping[str, PassSpec] = Plugins()

# The graph-only rewrite of a spec's passes, g -> g' (strata.passes puts
# apply_passes here): the compiler's checks ask it whether a selector names a
# module an earlier pass makes, without importing the passes.
GRAPH_PASSES: list[Callable[[Any], Any]] = []

# What running a spec's passes on its graph refuses, g -> [Diagnostic] (strata.passes
# puts `refusals` here): `strata check` and the editor report it as the summary does.
PASS_CHECK: list[Callable[[Any], list]] = []
