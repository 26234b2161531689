"""distill: record the teacher this (student) model trains against.

g.graph.distill = {teacher, temperature, alpha, weights, teacher_name,
teacher_parameters}.  The teacher is a spec path (relative to this spec's
file) or the name of another model in the same file; when it builds, its name
and parameter count are recorded so diagrams can draw "teacher → student".
The graph itself is unchanged; `strata train` runs the distillation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, PositiveFloat

from strata.compiler import build_file
from strata.compiler.paths import located
from strata.components.component_base import Options
from strata.errors import SpecError, UsageError
from strata.passes._rewrite import copy_graph
from strata.passes.pass_base import Pass

if TYPE_CHECKING:
    import networkx as nx


class DistillOptions(Options):
    """Train this (student) model against a teacher spec's logits."""

    teacher: str = Field(description="a spec file (relative to this one) or a model of this file")
    temperature: PositiveFloat = Field(2.0, description="softens both distributions")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the distillation loss against the task's")
    weights: str | None = Field(None, description="teacher weights: a run folder, a compress output "
                                "folder or a .safetensors file")

    paths = {"teacher": (".arch", ".yaml", ".yml"), "weights": ()}


def _teacher(g: "nx.MultiDiGraph", teacher: str) -> tuple[str | None, int | None]:
    here = g.graph.file
    try:
        if teacher.endswith((".arch", ".yaml", ".yml")):
            t = build_file(located(teacher, g))
        elif here and Path(here).exists():
            t = build_file(here, model=teacher)
        else:
            return None, None
    except (SpecError, UsageError):  # the teacher's own mistakes show when it is checked itself
        return None, None
    return t.graph.name, t.graph.parameters


class Distill(Pass):
    name = "distill"
    options = DistillOptions
    lowered = "strata train distills"
    positional = ("teacher",)

    def run(self, graph: "nx.MultiDiGraph", ctx=None) -> "nx.MultiDiGraph":
        g = copy_graph(graph)
        o = self.o
        # a check keeps no report: the teacher is not built for it (one more spec per keystroke)
        name, params = (None, None) if ctx is not None and ctx.checking else _teacher(g, o.teacher)
        g.graph.distill = {"teacher": o.teacher, "temperature": o.temperature,
                              "alpha": o.alpha, "weights": o.weights,
                              "teacher_name": name, "teacher_parameters": params}
        return self.done(g, {"teacher_name": name, "teacher_parameters": params})

    def report(self, record: dict) -> str:
        who = record["teacher_name"] or self.o.teacher
        return f"distill: trains against {who} (temperature {self.o.temperature}, alpha {self.o.alpha})"
