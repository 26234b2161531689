"""What elaboration carries while it walks a stack: the value flowing through
it (`Tensor`), the stack's own state, and the scope (stack or block instance)
statements are named in."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from strata.compiler.evaluate import Env

__all__ = ["Scope", "StackState", "Tensor"]


class Tensor(NamedTuple):
    node: str
    shape: tuple
    dtype: str
    # Each dimension in the spec's symbols (strata.compiler.symbolic): ("axis", "B"),
    # ("var", "d"), ... or None where it has no symbolic form.
    sym: tuple = ()


@dataclass
class StackState:
    name: str
    seq: str                                       # the sequence symbol: T, S, ...
    positions: dict = field(default_factory=lambda: {"type": "none"})
    inputs: dict[str, Tensor] = field(default_factory=dict)
    memory: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Scope:
    path: str
    env: Env
    stack: StackState
    plan: dict[str, int] = field(default_factory=dict)     # default name -> how many uses
    counters: Counter = field(default_factory=Counter)
    used: dict[str, object] = field(default_factory=dict)  # name -> span of its first use
    blocks_active: tuple[str, ...] = ()

    def join(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name
