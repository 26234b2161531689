"""distill: record the teacher this (student) model trains against.

g.graph["distill"] = {teacher, temperature, alpha, weights, teacher_name,
teacher_parameters}.  The teacher is a spec path (relative to this spec's
file) or the name of another model in the same file; when it builds, its name
and parameter count are recorded so diagrams can draw "teacher → student".
The graph itself is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from strata.errors import SpecError, UsageError

from strata.passes._rewrite import copy_graph, recount


def _spec_file(g: nx.MultiDiGraph) -> str | None:
    for s in g.graph["stacks"]:
        span = s.get("span")
        if span is not None and getattr(span, "file", None):
            return span.file
    return None


def _teacher(g: nx.MultiDiGraph, teacher: str) -> tuple[str | None, int | None]:
    from strata.compiler import build_file

    here = _spec_file(g)
    try:
        if teacher.endswith((".arch", ".yaml", ".yml")):
            path = Path(teacher)
            if not path.is_absolute() and here:
                path = Path(here).parent / path
            t = build_file(path)
        elif here and Path(here).exists():
            t = build_file(here, model=teacher)
        else:
            return None, None
    except (SpecError, UsageError):  # the teacher's own mistakes show when it is checked itself
        return None, None
    return t.graph["name"], t.graph["parameters"]


@dataclass(frozen=True)
class Distill:
    teacher: str
    temperature: float = 2.0
    alpha: float = 0.5
    weights: str | None = None
    name: str = "distill"

    def run(self, graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
        g = copy_graph(graph)
        name, params = _teacher(g, self.teacher)
        g.graph["distill"] = {"teacher": self.teacher, "temperature": self.temperature,
                              "alpha": self.alpha, "weights": self.weights,
                              "teacher_name": name, "teacher_parameters": params}
        return recount(g)
